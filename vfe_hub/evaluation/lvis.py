"""LVIS box and mask AP, computed exactly as the official ``lvis`` 0.5.3 API (``LVISResults`` + ``LVISEval``).

The reference is ``lvis/eval.py`` and ``lvis/results.py`` of the ``lvis`` 0.5.3 package (lvis-dataset/lvis-api).
:func:`evaluate` returns the numbers of ``LVISEval(gt, LVISResults(gt, results, max_dets), iou_type).run()``,
``get_results()``, bit for bit (checked against the official code in the tests), with the matching and the
accumulation vectorised over images, categories, area ranges and IoU thresholds. Conventions:

* **Ground truth.** Annotations whose image is not in ``images``, whose category is not in ``categories``, or
  whose ``area`` is not in ``(0, inf)`` are left out (``LVIS.get_ann_ids`` with an area range ``[0, inf]``). An
  annotation with a true ``ignore`` field is ignored in every area range; ``iscrowd`` plays no part.
* **Detections per image.** Per image, only the ``max_dets`` highest-scoring results are kept, ties in input
  order (``LVISResults.limit_dets_per_image``, a stable sort), before any other filter.
* **Results of unknown categories**, whose ``category_id`` is not among the ground truth's ``categories``: taken
  as ``LVISResults`` takes them (it neither asserts nor filters), so they count toward their image's ``max_dets``
  and may push results of known categories out; ``LVISEval._prepare`` then leaves them out (``get_ann_ids`` with
  the ground truth's category ids). One warning gives their number and the first of them (many such results
  usually mean 0-based class indices); ``strict=True`` refuses them with a :class:`~vfe_hub.errors.DatasetError`.
* **Areas of results.** When results carry a ``bbox``, the area of each is ``w * h`` of its box, also for segm
  evaluation; when none does, it is the area of its mask, and the box is the mask's bounding box (``toBbox``),
  as ``LVISResults`` sets them. Results with an area outside ``(0, inf)`` are then left out.
* **Federated rules.** An image is evaluated for a category only if the category is positive (has a
  ground-truth annotation) or in the image's ``neg_category_ids``; results of other categories of that image are
  dropped. Unmatched results of a category in the image's ``not_exhaustive_category_ids`` are ignored.
* **IoU.** Boxes ``[x, y, w, h]``: ``pycocotools``' ``bbIou`` in float64, ``w = min(x1 + w1, x2 + w2) -
  max(x1, x2)`` (and ``h``), 0 unless both are positive, ``inter / (area1 + area2 - inter)`` with the areas
  ``w * h`` of the boxes; reproduced here in numpy with the same operations in the same order, hence the same
  bits. Masks: ``pycocotools.mask.iou`` itself, on the RLEs of ``LVIS.ann_to_rle``
  (:func:`~.lvis_data.to_rle`), without crowd regions.
* **Matching** (``evaluate_img``), per image, category, area range and IoU threshold 0.5:0.05:0.95: results in
  descending score, ties in input order; each takes the unmatched ground truth of highest IoU ``>= threshold``,
  regular ones before those ignored in the area range (ignored: ``ignore`` set, or area outside the range, bounds
  included in the range), the last in file order on equal IoU. A result matched to an ignored annotation is
  ignored; an unmatched result whose area is outside the range, or of a not-exhaustive category, is ignored.
  Like the original, a match to an annotation whose id reads as 0 counts as no match (it keeps the matched
  annotation id, as a number, in a float array: :attr:`~.lvis_data.LvisGroundTruth.ann_ids`).
* **Accumulation** (``accumulate``), per category and area range with at least one regular annotation:
  results of all images in descending score, ties by image id then input order; cumulative true and false
  positives, ``precision = tp / (fp + tp + eps)`` made non-increasing from the right, read at the first position
  whose recall ``tp / n_gt`` reaches each of the 101 recall thresholds 0:0.01:1 (0 past the end); recall is
  the final ``tp / n_gt``. Other categories hold -1.
* **Summary** (``summarize``): the mean of the entries > -1 of the precision (AP) or recall (AR) array slice,
  -1 if there is none. APr, APc and APf use the categories of ``frequency`` ``r``, ``c`` and ``f``; the area
  ranges are all ``[0, 1e10]``, small ``[0, 32**2]``, medium ``[32**2, 96**2]``, large ``[96**2, 1e10]``.

Returned keys, fractions in [0, 1] or -1: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``APr``,
``APc``, ``APf``, ``AR@N``, ``ARs@N``, ``ARm@N``, ``ARl@N`` with ``N = max_dets``.

Where the original accepts an input silently or fails obscurely, :class:`~vfe_hub.errors.DatasetError` is
raised instead (the original's behaviour in brackets): results of image ids outside the ground truth (an
assertion), without ``segmentation`` for ``iou_type="segm"`` (the box
is evaluated as a polygon), with a NaN score or a non-finite box (erratic), and results of which only some carry
a ``bbox`` (a ``KeyError`` or a mix of box and mask areas). Empty results make the original fail
(``LVISResults`` reads ``results[0]``); here they give what its accumulation gives without detections: 0 for
every AP and AR with ground truth, -1 where there is none.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pycocotools.mask as mask_utils

from ..errors import DatasetError
from ..progress import progress_bar
from .lvis_data import FREQUENCIES, LvisGroundTruth, Source, to_rle

log = logging.getLogger(__name__)

IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
#: The thresholds of ``lvis.eval.Params``, built the same way (the same float64 values).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: Area ranges ``name: (lo, hi)``, both bounds inside the range.
AREA_RANGES: dict[str, tuple[float, float]] = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2),
                                               "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
_AREA_LO = np.array([lo for lo, _ in AREA_RANGES.values()])[:, None]
_AREA_HI = np.array([hi for _, hi in AREA_RANGES.values()])[:, None]
_PAIR_CHUNK = 1 << 20  # (detection, annotation) box pairs whose IoU is computed at once; never changes results
_AREA_CHUNK = 255

#: Results: LVIS result dicts, or the path of a JSON list of them.
Results = Union[str, os.PathLike, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Slices:
    """The ranges an LVIS-style evaluation is summarised over (LVIS: the area ranges), each with its own ignore rules.

    ``ignored_truth(gt, index)`` gives ``(A, G)``: whether each of the annotations at positions ``index`` of
    ``gt.annotations`` is outside each of the ``A`` slices (the annotation's ``ignore`` flag is added to it);
    ``ignored_results(area)`` gives ``(A, D)``: whether an unmatched result of area ``w * h`` is ignored in each slice.
    """

    names: tuple[str, ...]
    ignored_truth: Callable[[LvisGroundTruth, np.ndarray], np.ndarray]
    ignored_results: Callable[[np.ndarray], np.ndarray]


def outside_areas(area: np.ndarray) -> np.ndarray:
    """``(4, N)``: ``area`` outside each of :data:`AREA_RANGES` (bounds inside the range)."""
    return (area < _AREA_LO) | (area > _AREA_HI)


#: The slices of LVIS: the area ranges, for annotations (the file's ``area``) and results (``w * h``) alike.
AREA_SLICES = Slices(tuple(AREA_RANGES), lambda gt, index: outside_areas(gt.ann_areas[index]), outside_areas)


def evaluate(ground_truth: LvisGroundTruth | Source, results: Results, iou_type: str = "bbox",
             max_dets: int = 300, progress: bool | None = None, *, strict: bool = False) -> dict[str, float]:
    """LVIS AP and AR of ``results`` as the official ``LVISEval`` computes them (module docstring for the rules).

    ``ground_truth`` is a :class:`~.lvis_data.LvisGroundTruth` (load it once to evaluate several times), the path
    of an LVIS v0.5 or v1 JSON, or its parsed dict. ``results`` are result dicts (``image_id``, ``category_id``,
    ``score``, ``bbox`` ``[x, y, w, h]``, and for ``iou_type="segm"`` a ``segmentation``: an RLE dict whose
    ``counts`` is str or bytes, or polygons) or the path of a JSON list of them. ``max_dets`` results per image
    are kept (LVIS: 300). Results whose category is not in the ground truth count toward that cap and are then
    left out, as in ``LVISResults``/``LVISEval``, with a warning; ``strict=True`` refuses them. Raises
    :class:`~vfe_hub.errors.DatasetError` for an unknown ``iou_type``, a ground truth that is not LVIS, and the
    results listed in the module docstring.
    """
    if iou_type not in IOU_TYPES:
        raise DatasetError(f"iou_type={iou_type!r} is not an LVIS evaluation; use 'bbox' (boxes) or 'segm' "
                           f"(masks).")
    if isinstance(max_dets, bool) or not isinstance(max_dets, (int, np.integer)) or max_dets < 1:
        raise ValueError(f"max_dets={max_dets!r}: expected a positive number of results per image (LVIS uses "
                         f"300).")
    start = time.perf_counter()
    gt = ground_truth if isinstance(ground_truth, LvisGroundTruth) else LvisGroundTruth.load(ground_truth)
    records = result_list(results)
    precision, recall, frequency_groups = precision_recall_by_slice(gt, records, AREA_SLICES, iou_type,
                                                                    int(max_dets), progress, strict=strict)
    scores = _summarize(precision, recall, frequency_groups, int(max_dets))
    log.info("LVIS %s AP %.4f (APr %.4f, APc %.4f, APf %.4f): %d results, %d images, %.1f s", iou_type,
             scores["AP"], scores["APr"], scores["APc"], scores["APf"], len(records), len(gt.image_ids),
             time.perf_counter() - start)
    return scores


def precision_recall_by_slice(gt: LvisGroundTruth, results: Sequence[Mapping[str, Any]], slices: Slices,
                              iou_type: str = "bbox", max_dets: int = 300, progress: bool | None = None, *,
                              strict: bool = False) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``LVISEval``'s ``evaluate`` and ``accumulate`` with the ranges ``slices``: precision ``(T, 101, K, A)`` over
    :data:`IOU_THRESHOLDS`, the 101 recall thresholds, the categories (sorted ids) and the slices, recall ``(T, K,
    A)``, -1 where a category has no regular annotation in a slice, and the category indices of frequency r, c, f.
    Results of unknown categories: :func:`category_positions` (``strict``).
    """
    truth = _Truth.build(gt, slices)
    dets = _Detections.read(results, gt, truth, iou_type, max_dets, slices, strict)
    pairs = (_mask_pairs if iou_type == "segm" else _box_pairs)(truth, dets, progress)
    candidates, match = _match(truth, dets, *pairs)
    precision, recall = _accumulate(truth, dets, candidates, match)
    log.debug("%d of %d results evaluated", len(dets.pair), dets.num_results)
    return precision, recall, truth.frequency_groups


# ---------------------------------------------------------------------------------------------------------------
# Inputs, flattened
# ---------------------------------------------------------------------------------------------------------------

def positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The position of each of ``ids`` in ``sorted_ids``, -1 where absent."""
    if not len(sorted_ids):
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    found = sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == ids
    return np.where(found, pos, -1)


@dataclass
class _Truth:
    """The evaluated annotations, sorted by pair (image index * categories + category index), file order within."""

    gt: LvisGroundTruth
    num_images: int
    num_categories: int
    pair: np.ndarray  # (G,) nondecreasing
    category: np.ndarray  # (G,) category index
    boxes: np.ndarray  # (G, 4) float64
    ids: np.ndarray  # (G,) annotation ids as numbers (float64, :attr:`LvisGroundTruth.ann_ids`)
    index: np.ndarray  # (G,) position in gt.annotations
    ignored: np.ndarray  # (A, G) ignored in each slice
    evaluated_pairs: np.ndarray  # sorted pairs that are positive or negative
    not_exhaustive_pairs: np.ndarray  # sorted
    frequency_groups: list[np.ndarray]  # category indices of r, c, f

    @classmethod
    def build(cls, gt: LvisGroundTruth, slices: Slices) -> _Truth:
        num_categories = len(gt.category_ids)
        image = positions(gt.image_ids, gt.ann_image_ids)
        category = positions(gt.category_ids, gt.ann_category_ids)
        area = gt.ann_areas
        index = np.flatnonzero((image >= 0) & (category >= 0) & (area > 0) & (area < np.inf))
        pair = image[index] * num_categories + category[index]
        order = np.argsort(pair, kind="stable")
        index, pair = index[order], pair[order]
        ignored = gt.ann_ignore[index] | slices.ignored_truth(gt, index)
        frequency = np.array([gt.categories[int(c)]["frequency"] for c in gt.category_ids])
        return cls(gt, len(gt.image_ids), num_categories, pair, category[index], gt.ann_boxes[index],
                   gt.ann_ids[index], index, ignored, np.union1d(pair, _label_pairs(gt, gt.neg_category_ids)),
                   _label_pairs(gt, gt.not_exhaustive_category_ids),
                   [np.flatnonzero(frequency == f) for f in FREQUENCIES])

    def image_size(self, image: int) -> tuple[int, int]:
        """``(height, width)`` of the image of index ``image``."""
        info = self.gt.images[int(self.gt.image_ids[image])]
        return info["height"], info["width"]


def _label_pairs(gt: LvisGroundTruth, labels: dict[int, frozenset[int]]) -> np.ndarray:
    """The sorted pairs ``(image, category)`` of per-image category sets; unknown categories are left out."""
    counts = [len(labels[int(i)]) for i in gt.image_ids]
    category_ids = np.array([c for i in gt.image_ids for c in labels[int(i)]], dtype=np.int64)
    image = np.repeat(np.arange(len(gt.image_ids)), counts)
    category = positions(gt.category_ids, category_ids)
    known = category >= 0
    return np.unique(image[known] * len(gt.category_ids) + category[known])


@dataclass
class _Detections:
    """The evaluated results, sorted by pair, descending score, input order (the order of ``evaluate_img``)."""

    num_results: int
    pair: np.ndarray  # (D,) nondecreasing
    image: np.ndarray  # (D,) image index
    category: np.ndarray  # (D,) category index
    score: np.ndarray  # (D,) float64
    source: np.ndarray  # (D,) position in the results
    boxes: np.ndarray  # (D, 4) float64
    unmatched_ignored: np.ndarray  # (A, D) ignored when unmatched: outside the slice or not exhaustive
    segmentations: list[Any] | None  # (D,) masks of segm evaluation, as given or as RLE

    @classmethod
    def read(cls, results: Sequence[Mapping[str, Any]], gt: LvisGroundTruth, truth: _Truth, iou_type: str,
             max_dets: int, slices: Slices, strict: bool) -> _Detections:
        image_ids, category_ids, score = _result_fields(results)
        image = known_ids(gt.image_ids, image_ids, "image_id", gt.source, "is not an image of the ground truth: "
                          "results must come from the split of the annotation file")
        category = category_positions(gt.category_ids, category_ids, gt.source, "LVIS category ids", strict)
        check_scores(score, image_ids)
        if iou_type == "segm":
            _check_segmentations(results)
        source = top_per_image(image, score, max_dets)
        kept = [results[i] for i in source]
        boxes, area, masks = _boxes_and_areas(kept, image[source], truth)
        pair = image[source] * truth.num_categories + category[source]
        evaluated = (category[source] >= 0) & (area > 0) & (area < np.inf) & np.isin(pair, truth.evaluated_pairs)
        order = np.flatnonzero(evaluated)
        order = order[np.lexsort((source[order], -score[source][order], pair[order]))]
        pair, source, area = pair[order], source[order], area[order]
        unmatched_ignored = slices.ignored_results(area) | np.isin(pair, truth.not_exhaustive_pairs)
        segmentations = None
        if iou_type == "segm":
            given = masks if masks is not None else [r["segmentation"] for r in kept]
            segmentations = [given[j] for j in order]
        return cls(len(results), pair, image[source], category[source], score[source], source, boxes[order],
                   unmatched_ignored, segmentations)


def result_list(results: Results, kind: str = "LVIS result dicts (image_id, category_id, score, bbox or "
                                                "segmentation)") -> Sequence[Mapping[str, Any]]:
    """``results`` as a list of dicts, read from JSON if it is a path; :class:`DatasetError` naming ``kind`` else."""
    if isinstance(results, (str, os.PathLike)):
        path = Path(results)
        try:
            with open(path) as f:
                results = json.load(f)
        except (OSError, ValueError) as e:
            raise DatasetError(f"Cannot read the results file {path} as JSON ({type(e).__name__}: {e}).") from e
    if isinstance(results, (str, bytes, Mapping)) or not isinstance(results, Sequence):
        raise DatasetError(f"Results must be a list of {kind} or the path of a JSON list of them, not "
                           f"{type(results).__name__}.")
    return results


def _result_fields(results: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        fields = (np.array([r["image_id"] for r in results], dtype=np.int64),
                  np.array([r["category_id"] for r in results], dtype=np.int64),
                  np.array([r["score"] for r in results], dtype=np.float64))
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"Results must be LVIS result dicts with image_id, category_id and score "
                           f"({type(e).__name__}: {e}).") from e
    if any(f.shape != (len(results),) for f in fields):
        raise DatasetError("Results must have one number each as image_id, category_id and score.")
    return fields


def known_ids(sorted_ids: np.ndarray, ids: np.ndarray, key: str, source: str, why: str) -> np.ndarray:
    """The positions of ``ids`` in ``sorted_ids``; :class:`DatasetError` naming the first results entry whose ``key``
    is not there, ``why`` it matters and the ground truth ``source``."""
    position = positions(sorted_ids, ids)
    bad = np.flatnonzero(position < 0)
    if len(bad):
        raise DatasetError(f"Results entry {bad[0]} has {key} {ids[bad[0]]}, which {why} ({source}: "
                           f"{len(sorted_ids)} {key.split('_')[0]}s); {len(bad)} entries have unknown {key}s.")
    return position


#: what the official toolkits do with results of categories the ground truth lacks (:func:`category_positions`)
LEFT_OUT = "As in the official toolkit, they count toward the cap of results per image and are then left out."


def category_positions(sorted_ids: np.ndarray, ids: np.ndarray, source: str, needed: str, strict: bool,
                       fate: str = LEFT_OUT) -> np.ndarray:
    """The position of each result's category id in ``sorted_ids``, -1 for an id that is not a category of the
    ground truth ``source``.

    The official toolkits (``LVISResults``, ``TaoResults``, the TETA code) accept such results; what they do with
    them is ``fate`` (:data:`LEFT_OUT`: they count toward the per-image cap of results, then the evaluation leaves
    them out). So do the callers here, after one warning with their number, the first of them and their ``fate``.
    ``strict=True`` refuses them instead (:class:`DatasetError` naming the first entry and the ids results need,
    ``needed``).
    """
    why = f"is not a category of the ground truth: results need {needed} (not 0-based class indices)"
    if strict:
        return known_ids(sorted_ids, ids, "category_id", source, why)
    position = positions(sorted_ids, ids)
    unknown = np.flatnonzero(position < 0)
    if len(unknown):
        log.warning("%d of %d results have a category_id that is not a category of %s (%d distinct ids), e.g. entry "
                    "%d: category_id %d. %s Many such results usually mean 0-based class indices instead of %s; "
                    "strict=True refuses them.", len(unknown), len(ids), source, len(np.unique(ids[unknown])),
                    unknown[0], ids[unknown[0]], fate, needed)
    return position


def check_scores(score: np.ndarray, image_ids: np.ndarray) -> None:
    """:class:`DatasetError` naming the first results entry with a NaN score."""
    bad = np.flatnonzero(np.isnan(score))
    if len(bad):
        raise DatasetError(f"Results entry {bad[0]} (image_id {image_ids[bad[0]]}) has a NaN score; {len(bad)} "
                           f"entries do. Scores must be numbers.")


def _check_segmentations(results: Sequence[Mapping[str, Any]]) -> None:
    missing = [i for i, r in enumerate(results) if "segmentation" not in r]
    if missing:
        raise DatasetError(f"Results entry {missing[0]} (image_id {results[missing[0]]['image_id']}) has no "
                           f"'segmentation'; {len(missing)} entries lack one. iou_type='segm' needs a mask per "
                           f"result (an RLE dict or polygons); evaluate boxes with iou_type='bbox'.")


def top_per_image(image: np.ndarray, score: np.ndarray, max_dets: int) -> np.ndarray:
    """The positions of the ``max_dets`` best results of each image (ties in input order), in input order."""
    if not len(image) or np.bincount(image).max() <= max_dets:
        return np.arange(len(image))
    order = np.lexsort((np.arange(len(image)), -score, image))
    grouped = image[order]
    rank = np.arange(len(order)) - np.searchsorted(grouped, grouped, "left")
    return np.sort(order[rank < max_dets])


def _boxes_and_areas(kept: list[Mapping[str, Any]], image: np.ndarray, truth: _Truth
                     ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]] | None]:
    """Boxes and areas of the kept results as ``LVISResults`` sets them, and their RLEs if made from masks."""
    with_box = np.array(["bbox" in r for r in kept], dtype=bool)
    if with_box.all():
        boxes = box_array(kept)
        return boxes, boxes[:, 2] * boxes[:, 3], None
    if with_box.any():
        first = int(np.flatnonzero(~with_box)[0])
        raise DatasetError(f"A result of image_id {kept[first]['image_id']} has no 'bbox' while others have one; "
                           f"give every result a bbox, or none (the boxes then come from the masks).")
    no_mask = [r for r in kept if "segmentation" not in r]
    if no_mask:
        raise DatasetError(f"A result of image_id {no_mask[0]['image_id']} has neither 'bbox' nor "
                           f"'segmentation'.")
    masks = [to_rle(r["segmentation"], *truth.image_size(i), f"a result of image_id {r['image_id']}")
             for r, i in zip(kept, image)]
    return mask_utils.toBbox(masks).reshape(-1, 4), _mask_areas(masks), masks


def _mask_areas(masks: list[dict[str, Any]]) -> np.ndarray:
    """``pycocotools.mask.area`` in float64, 255 masks per call: for more, pycocotools 2.0.11 fails on numpy 2
    (it builds ``np.array((n,), dtype=np.uint8)``)."""
    chunks = [mask_utils.area(masks[i:i + _AREA_CHUNK]) for i in range(0, len(masks), _AREA_CHUNK)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def box_array(kept: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The ``bbox`` of each result as ``(N, 4)`` float64; :class:`DatasetError` if one is not 4 finite numbers."""
    try:
        boxes = np.array([r["bbox"] for r in kept], dtype=np.float64).reshape(len(kept), 4)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"Every result bbox must be [x, y, w, h] ({type(e).__name__}: {e}).") from e
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if len(bad):
        raise DatasetError(f"A result of image_id {kept[bad[0]]['image_id']} has the non-finite bbox "
                           f"{boxes[bad[0]].tolist()}; {len(bad)} results do.")
    return boxes


# ---------------------------------------------------------------------------------------------------------------
# IoU of (detection, annotation) pairs of one image and category
# ---------------------------------------------------------------------------------------------------------------

def box_iou(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``[x, y, w, h]`` boxes, the same float64 operations as ``pycocotools``' ``bbIou``."""
    w = np.minimum(dt[:, 2] + dt[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(dt[:, 0], gt[:, 0])
    h = np.minimum(dt[:, 3] + dt[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(dt[:, 1], gt[:, 1])
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iou = inter / (dt[:, 2] * dt[:, 3] + gt[:, 2] * gt[:, 3] - inter)
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _gt_ranges(truth: _Truth, pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first annotation and the number of annotations of each pair."""
    first = np.searchsorted(truth.pair, pair, "left")
    return first, np.searchsorted(truth.pair, pair, "right") - first


def _box_pairs(truth: _Truth, dets: _Detections, progress: bool | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(detection, annotation, IoU)`` of the pairs of one image and category with IoU >= 0.5."""
    first, count = _gt_ranges(truth, dets.pair)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    with progress_bar(total=truth.num_images, desc="LVIS bbox IoU", unit="image", progress=progress) as bar:
        for detections, images in _image_batches(dets.image, count, truth.num_images):
            d = np.repeat(np.arange(detections.start, detections.stop), count[detections])
            offset = np.arange(len(d)) - np.repeat(np.cumsum(count[detections]) - count[detections],
                                                   count[detections])
            g = first[d] + offset
            iou = box_iou(dets.boxes[d], truth.boxes[g])
            keep = iou >= IOU_THRESHOLDS[0]
            found.append((d[keep], g[keep], iou[keep]))
            bar.update(images)
    return _concatenate(found)


def _image_batches(image: np.ndarray, count: np.ndarray, num_images: int) -> Iterator[tuple[slice, int]]:
    """Runs of whole images (a detection slice, a number of images) of at most ``_PAIR_CHUNK`` pairs, or one image."""
    ends = np.searchsorted(image, np.arange(num_images), "right")
    pairs_to = np.concatenate([[0], np.cumsum(count)])[ends]
    start = 0
    while start < num_images:
        before = int(pairs_to[start - 1]) if start else 0
        stop = max(int(np.searchsorted(pairs_to, before + _PAIR_CHUNK, "right")), start + 1)
        yield slice(int(ends[start - 1]) if start else 0, int(ends[stop - 1])), stop - start
        start = stop


def _mask_pairs(truth: _Truth, dets: _Detections, progress: bool | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`_box_pairs` for masks: ``pycocotools.mask.iou`` per image and category."""
    pairs = np.intersect1d(dets.pair, truth.pair)
    det_first = np.searchsorted(dets.pair, pairs, "left")
    det_stop = np.searchsorted(dets.pair, pairs, "right")
    gt_first, gt_count = _gt_ranges(truth, pairs)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    with progress_bar(total=truth.num_images, desc="LVIS segm IoU", unit="image", progress=progress) as bar:
        for p, d0, d1, g0, n in zip(pairs, det_first, det_stop, gt_first, gt_count):
            image = int(p) // truth.num_categories
            height, width = truth.image_size(image)
            what = f"a result of image_id {truth.gt.image_ids[image]}"
            dt = [to_rle(dets.segmentations[j], height, width, what) for j in range(d0, d1)]
            gt = [truth.gt.mask(int(i)) for i in truth.index[g0:g0 + n]]
            iou = np.asarray(mask_utils.iou(dt, gt, [0] * int(n)), dtype=np.float64).reshape(d1 - d0, n)
            d, g = np.nonzero(iou >= IOU_THRESHOLDS[0])
            found.append((d + d0, g + g0, iou[d, g]))
            bar.update(image + 1 - bar.n)
        bar.update(truth.num_images - bar.n)
    return _concatenate(found)


def _concatenate(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return tuple(np.concatenate(column) for column in zip(*found))


# ---------------------------------------------------------------------------------------------------------------
# Matching and accumulation
# ---------------------------------------------------------------------------------------------------------------

def _match(truth: _Truth, dets: _Detections, det: np.ndarray, gt: np.ndarray, iou: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """``evaluate_img``'s greedy matching for every area range and IoU threshold at once (:func:`greedy_match`)."""
    return greedy_match(dets.pair, det, gt, iou, truth.ignored, IOU_THRESHOLDS)


def greedy_match(group: np.ndarray, det: np.ndarray, gt: np.ndarray, iou: np.ndarray, ignored: np.ndarray,
                 thresholds: np.ndarray, claims: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The COCO-style greedy matching of detections to ground truth, for every range and threshold at once.

    ``group`` ``(D,)`` is the nondecreasing group (image and category, or video and category) of each detection,
    detections in matching order (descending score) within a group. ``det``, ``gt``, ``iou`` ``(E,)`` are the
    (detection, ground truth) pairs of one group with IoU ``>= thresholds.min()``, ground truth indexed in its
    matching order within the group. ``ignored`` ``(A, G)`` flags the ground truth ignored in each of ``A``
    ranges; ``claims`` ``(D,)`` whether a detection's match takes its ground truth out of later matching (default:
    all do). Each detection takes the free ground truth of highest IoU ``>= threshold``, regular ones before
    ignored ones, the last in order on equal IoU.

    Only detections with a pair (candidates) can match. Step ``s`` takes the ``s``-th candidate, in order, of
    every group at once: they share no ground truth, so they are independent. A candidate's pairs are sorted by
    (IoU, order), so its match is the last free pair above the threshold, among regular ground truth if any, else
    among ignored. Returns the candidates (detection indices) and the ground truth each matched,
    ``(A, T, candidates)``, -1 for none.
    """
    candidates, slot = np.unique(det, return_inverse=True)
    pair = group[candidates]
    step = (np.arange(len(candidates)) - np.searchsorted(pair, pair, "left"))[slot]
    order = np.lexsort((gt, iou, slot, step))
    slot, gt, iou, step = slot[order], gt[order], iou[order], step[order]
    bounds = np.searchsorted(step, np.arange(int(step.max(initial=-1)) + 2))
    num_ranges = ignored.shape[0]
    matched = np.zeros((num_ranges, len(thresholds), ignored.shape[1]), dtype=bool)
    match = np.full((num_ranges, len(thresholds), len(candidates)), -1, dtype=np.int32)
    above = iou[None, :] >= thresholds[:, None]  # (T, E)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        g = gt[lo:hi]
        starts = np.flatnonzero(np.concatenate([[True], slot[lo + 1:hi] != slot[lo:hi - 1]]))
        free = above[None, :, lo:hi] & ~matched[:, :, g]  # (A, T, n)
        ignored_here = ignored[:, None, g]
        local = np.arange(hi - lo)
        regular = np.maximum.reduceat(np.where(free & ~ignored_here, local, -1), starts, axis=2)
        fallback = np.maximum.reduceat(np.where(free & ignored_here, local, -1), starts, axis=2)
        best = np.where(regular >= 0, regular, fallback)
        a, t, k = np.nonzero(best >= 0)
        chosen = g[best[a, t, k]]
        chooser = slot[lo + starts[k]]
        match[a, t, chooser] = chosen
        taken = slice(None) if claims is None else claims[candidates[chooser]]
        matched[a[taken], t[taken], chosen[taken]] = True
    return candidates, match


def _accumulate(truth: _Truth, dets: _Detections, candidates: np.ndarray, match: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``accumulate``: precision ``(T, R, K, A)`` and recall ``(T, K, A)``, -1 where a category has no regular
    annotation in an area range."""
    num_areas, num_categories = truth.ignored.shape[0], truth.num_categories
    precision = np.full((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), num_categories, num_areas), -1.0)
    recall = np.full((len(IOU_THRESHOLDS), num_categories, num_areas), -1.0)
    num_gt = np.stack([np.bincount(truth.category[~truth.ignored[a]], minlength=num_categories)
                       for a in range(num_areas)], axis=1)  # (K, A)
    order = np.lexsort((dets.source, dets.image, -dets.score, dets.category))
    bounds = np.searchsorted(dets.category[order], np.arange(num_categories + 1))
    slot = np.full(len(dets.pair), -1, dtype=np.int64)
    slot[candidates] = np.arange(len(candidates))
    for k in np.flatnonzero(num_gt.any(axis=1)):
        areas = np.flatnonzero(num_gt[k] > 0)
        ids = order[bounds[k]:bounds[k + 1]]
        precision[:, :, k, areas], recall[:, k, areas] = _curves(truth, dets, match, slot[ids], ids, areas,
                                                                 num_gt[k, areas])
    return precision, recall


def _curves(truth: _Truth, dets: _Detections, match: np.ndarray, slot: np.ndarray, ids: np.ndarray,
            areas: np.ndarray, num_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision ``(T, R, areas)`` and recall ``(T, areas)`` of one category's detections ``ids`` (in score
    order)."""
    n = len(ids)
    matched = np.full((len(areas), len(IOU_THRESHOLDS), n), -1, dtype=np.int64)
    has = slot >= 0
    matched[:, :, has] = match[:, :, slot[has]][areas]
    hit = matched >= 0
    gt = np.where(hit, matched, 0)
    counted = hit & (truth.ids[gt] != 0)
    unmatched_ignored = dets.unmatched_ignored[:, ids][areas][:, None, :]
    ignored = (hit & truth.ignored[areas[:, None, None], gt]) | (~counted & unmatched_ignored)
    return precision_recall(counted, ignored, num_gt)


def precision_recall(counted: np.ndarray, ignored: np.ndarray, num_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official ``accumulate`` of one category: precision ``(T, R, A)`` at the 101 recall thresholds and recall
    ``(T, A)``.

    ``counted`` and ``ignored`` ``(A, T, n)`` flag, per range and IoU threshold, the category's detections (in
    descending score) that count as matched and those ignored; ``num_gt`` ``(A,)`` the regular ground truth of each
    range (> 0). True positives are counted and not ignored, false positives neither; ``precision = tp / (fp + tp +
    eps)`` made non-increasing from the right, read at the first position whose recall ``tp / n_gt`` reaches each
    recall threshold (0 past the end); recall is the final ``tp / n_gt`` (0 without detections).
    """
    num_ranges, num_thresholds, n = counted.shape
    if n == 0:
        return (np.zeros((num_thresholds, len(RECALL_THRESHOLDS), num_ranges)),
                np.zeros((num_thresholds, num_ranges)))
    tp = np.cumsum(counted & ~ignored, axis=2)
    tp_float = tp.astype(np.float64)
    fp_float = np.cumsum(~counted & ~ignored, axis=2).astype(np.float64)
    rc = tp_float / num_gt[:, None, None]
    pr = tp_float / (fp_float + tp_float + np.spacing(1))
    envelope = np.maximum.accumulate(pr[:, :, ::-1], axis=2)[:, :, ::-1]
    position = _recall_positions(tp, num_gt)
    at_recall = np.where(position < n, np.take_along_axis(envelope, np.minimum(position, n - 1), axis=2), 0.0)
    return at_recall.transpose(1, 2, 0), rc[:, :, -1].T


def _recall_positions(tp: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
    """``np.searchsorted(tp / n_gt, RECALL_THRESHOLDS, "left")`` for every row of ``tp`` ``(areas, T, n)``, in one call.

    The recall ``fl(j / n_gt)`` is nondecreasing in the integer ``j``, so ``recall < r`` exactly when ``j`` is
    below the first ``j`` whose recall reaches ``r``; that turns the search into one over integer counts, where
    rows can be offset to search them all at once.
    """
    need = np.stack([np.searchsorted(np.arange(g + 1) / g, RECALL_THRESHOLDS, "left") for g in num_gt])
    rows, n = tp.shape[0] * tp.shape[1], tp.shape[2]
    row = np.arange(rows).reshape(tp.shape[0], tp.shape[1], 1)
    stride = n + int(num_gt.max()) + 1
    found = np.searchsorted((tp + row * stride).ravel(), (need[:, None, :] + row * stride).ravel(), "left")
    return found.reshape(tp.shape[0], tp.shape[1], -1) - row * n


# ---------------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------------

def _summarize(precision: np.ndarray, recall: np.ndarray, frequency_groups: list[np.ndarray], max_dets: int
               ) -> dict[str, float]:
    """``summarize``: the same slices of the same arrays, so the means add the same values in the same order."""
    area = {name: [i] for i, name in enumerate(AREA_RANGES)}
    scores = {
        "AP": mean_defined(precision[:, :, :, area["all"]]),
        "AP50": mean_defined(precision[_threshold(0.50)][:, :, :, area["all"]]),
        "AP75": mean_defined(precision[_threshold(0.75)][:, :, :, area["all"]]),
        "APs": mean_defined(precision[:, :, :, area["small"]]),
        "APm": mean_defined(precision[:, :, :, area["medium"]]),
        "APl": mean_defined(precision[:, :, :, area["large"]]),
    }
    for name, group in zip(FREQUENCIES, frequency_groups):
        scores[f"AP{name}"] = mean_defined(precision[:, :, group, area["all"]])
    scores[f"AR@{max_dets}"] = mean_defined(recall[:, :, area["all"]])
    for name in ("small", "medium", "large"):
        scores[f"AR{name[0]}@{max_dets}"] = mean_defined(recall[:, :, area[name]])
    return scores


def _threshold(iou: float) -> np.ndarray:
    return np.where(iou == IOU_THRESHOLDS)[0]


def mean_defined(values: np.ndarray) -> float:
    """``np.mean`` of the entries > -1 in C order (the summaries of the official evaluators), -1 if none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0
