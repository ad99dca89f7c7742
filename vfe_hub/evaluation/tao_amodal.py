"""TAO-Amodal metrics, computed exactly as the official ``tools/eval_on_tao_amodal.py`` of TAO-Amodal computes them.

The reference is WesleyHsieh0806/TAO-Amodal (commit ``96e4971``): ``tools/eval_on_tao_amodal.py`` and
``tao_amodal/evaluation/{lvis_amodal,tao_amodal}``, copies of the ``lvis`` API and of the TAO toolkit with
visibility slices added. :func:`evaluate` returns, as fractions (the script prints percent; -1 where it prints
-100), its detection numbers ``AP``, ``AP50``, ``AP-HO``, ``AP-PO``, ``AP-HV``, ``AP-HP``, ``AP-OOF``, ``APr``,
``APc``, ``APf`` (keys with ``_`` for ``-``) and its tracking numbers ``TAO 3DmAP50``, ``TAO 3DmAP``, ``TAO
3DmAP50-HP``, ``TAO 3DmAP-HP`` (keys ``track_AP50``, ``track_AP``, ``track_AP50_HP``, ``track_AP_HP``). Both parts
run on the machinery of :mod:`.lvis` and :mod:`.tao` (the same rules, listed there), with these differences:

* **Detection** (``lvis_amodal.LVISEval``, per frame, IoU 0.5:0.05:0.95, 300 results per image): the area ranges
  are replaced by slices of the ground truth, the visibility ranges ``all`` [0, 1], ``HO`` [0, 0.1], ``PO`` [0.1,
  0.8], ``HV`` [0.8, 1], ``HP`` [0, 0.8] (bounds inside, so a visibility of exactly 0.1 or 0.8 is in two ranges;
  one outside [0, 1] is ignored even in ``all``, a NaN one is in every range) and ``OOF``, the annotations whose
  ``out_of_frame`` is true. An unmatched result is ignored only when its category is not exhaustively annotated in
  the image (or its area is outside [0, 1e10]): every slice is charged every false positive. ``APr``, ``APc``,
  ``APf`` use the ``all`` slice.
* **Tracking** (``tao_amodal.TaoEval``, 3D IoU, thresholds 0.5:0.05:0.95 instead of TAO's 0.5, 300 results per
  frame): a fifth area range, all areas, in which a ground-truth track is ignored unless strictly more than 5 of
  its evaluated frames (annotations with ``0 < area < inf``) have a visibility below 0.8 (``HP``). ``track_AP`` is
  the mean over the ten thresholds, ``track_AP50`` the value at 0.5.
* **Nothing is clipped**, neither results nor ground truth: boxes may leave the image; IoUs are those of the
  unclipped ``[x, y, w, h]`` boxes.
* **Ground truth**: one file for both parts, a TAO annotation file whose ``bbox`` is the amodal box (as
  :func:`to_lvis_v1` writes it), read as LVIS (:class:`~.lvis_data.LvisGroundTruth`: images with
  ``neg_category_ids``, ``not_exhaustive_category_ids``, ``height``, ``width``; categories with ``frequency``) and
  as TAO (:class:`~.tao_data.TaoGroundTruth`). An annotation's ``visibility`` defaults to 1.0 and its
  ``out_of_frame`` to false, the values :func:`to_lvis_v1` fills in (the official code needs both fields).

Quirks of the official script, reproduced:

* **Track ids shared by several videos** are renumbered before tracking (its ``make_track_ids_unique``, here
  :func:`~.tao.renumber_shared_tracks`): each (id, video) of such an id gets ``max(0, largest id) + 1`` onwards,
  in order of first appearance. This also turns a shared id of 0 or below into a positive one, which matters to
  the TAO matching quirk on ids ``<= 0`` (:mod:`.tao`). The detection part does not look at track ids.
* **Annotation ids are read as numbers**: the detection evaluator keeps the id of the matched annotation in a
  float array and takes 0 for "no match". TAO-Amodal ids are strings ``"<video_id>_<image_id>_<track_id>"``
  (:func:`to_lvis_v1`), which Python's ``float`` reads with the underscores as digit separators (``"3_12_7"`` is
  3127.0). An annotation whose id reads as 0 (``"0_0_0"``) is taken by the result that matches it, but that
  result counts as a false positive and the annotation is never found. An id that does not read as a number is
  refused (the official code fails with a ``ValueError`` when such an annotation is matched).
* **The two parts read the ground truth differently.** Detection uses each *image*'s ``neg_category_ids`` and
  ``not_exhaustive_category_ids`` and ignores the categories' ``merged`` aliases: results of an alias category
  are not evaluated there (they still count toward an image's 300). Tracking uses each *video*'s lists and
  replaces alias ids by their category, in the ground truth and in the results.
* **Results of unknown categories** (ids neither a category nor an alias) are taken as both parts take them:
  they count toward the 300 results of their frame, in detection and in tracking, and are then left out; the
  track-id renumbering counts their tracks too; a track that keeps results of a known and an unknown category
  after the cap is refused, as the tracking part asserts (:mod:`.tao`). One warning gives their number and the
  first of them; ``strict=True`` refuses them.

Where the official script fails or accepts silently, :class:`~vfe_hub.errors.DatasetError` is raised instead, as
:func:`.tao.evaluate` does (a missing field, an unknown image id, a NaN score, a non-finite box, a ``video_id``
that is not the image's, two boxes of one track in a frame, a track with two categories); results may leave out
``video_id`` (it follows from the image; the script needs it). Empty results make the script fail; here they give
0 for every AP with ground truth and -1 where there is none.

:func:`to_lvis_v1` is the annotation conversion of Amodal-Expander's ``tools/create_tao_amodal_v1.py``;
:func:`out_of_frame_stats` counts the boxes that leave their image and by how much.
"""
from __future__ import annotations

import copy
import logging
import numbers
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .lvis import (AREA_RANGES, IOU_THRESHOLDS, Results, Slices, box_array, mean_defined, positions,
                   precision_recall_by_slice, result_list, top_per_image)
from .lvis_data import LvisGroundTruth, Source, read_json
from .tao import TrackSlices, track_precision_recall
from . import tao_data
from .tao_data import TaoGroundTruth

log = logging.getLogger(__name__)

MAX_DETS = 300
#: Visibility slices of the detection part ``name: (lo, hi)``, both bounds inside; ``OOF`` follows them.
VISIBILITY_RANGES: dict[str, tuple[float, float]] = {"all": (0.0, 1.0), "HO": (0.0, 0.1), "PO": (0.1, 0.8),
                                                     "HV": (0.8, 1.0), "HP": (0.0, 0.8)}
DETECTION_SLICES: tuple[str, ...] = (*VISIBILITY_RANGES, "OOF")
#: A ground-truth track is in the tracking HP subset when more than this many of its frames have visibility < 0.8.
HP_MIN_OCCLUDED_FRAMES = 5
HP_VISIBILITY = 0.8
_ALL_AREAS = (0.0, 1e5 ** 2)
_KIND = ("TAO-Amodal result dicts (image_id, category_id, bbox [x, y, w, h] (amodal), score, track_id, optional "
         "video_id)")
_FIX = "convert the TAO-Amodal annotations with vfe_hub.evaluation.tao_amodal.to_lvis_v1"


def evaluate(ground_truth: Source, results: Results, *, progress: bool | None = None, strict: bool = False
             ) -> dict[str, float]:
    """TAO-Amodal detection and tracking metrics of ``results`` (module docstring for the rules).

    ``ground_truth`` is the path of a TAO-Amodal annotation JSON with LVIS v1 categories (``validation_lvis_v1.json``,
    made by :func:`to_lvis_v1`) or its parsed dict; ``results`` are result dicts (``image_id``, ``category_id``,
    ``bbox`` ``[x, y, w, h]``, the amodal box, ``score``, ``track_id``, optionally ``video_id``), one per frame of a
    track, or the path of a JSON list of them. Returns fractions in [0, 1], -1 where undefined, under the keys
    ``AP``, ``AP50``, ``AP_HO``, ``AP_PO``, ``AP_HV``, ``AP_HP``, ``AP_OOF``, ``APr``, ``APc``, ``APf``,
    ``track_AP50``, ``track_AP``, ``track_AP50_HP``, ``track_AP_HP``. Results whose category is not in the ground
    truth count toward the 300 per frame and are then left out, as in the script, with a warning; ``strict=True``
    refuses them. Raises :class:`~vfe_hub.errors.DatasetError` for a ground truth that is not a TAO-Amodal LVIS v1
    file and for the results listed in the module docstring.
    """
    start = time.perf_counter()
    data = ground_truth if isinstance(ground_truth, Mapping) else read_json(
        Path(ground_truth), "TAO-Amodal annotation file", _FIX)
    tao_gt = TaoGroundTruth.load(data)
    lvis_gt = LvisGroundTruth.load(data)
    visibility, out_of_frame = _visibility(lvis_gt.annotations, lvis_gt.source)
    records = result_list(results, _KIND)
    scores = _tracking(tao_gt, records, visibility, progress, strict)  # first: it checks the results
    scores = {**_detection(lvis_gt, records, visibility, out_of_frame, progress), **scores}
    log.info("TAO-Amodal AP %.4f (HP %.4f, OOF %.4f), track AP %.4f (HP %.4f): %d results, %.1f s", scores["AP"],
             scores["AP_HP"], scores["AP_OOF"], scores["track_AP"], scores["track_AP_HP"], len(records),
             time.perf_counter() - start)
    return scores


def _visibility(annotations: list[dict[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Each annotation's ``visibility`` (default 1.0) and ``out_of_frame`` flag (default false), in file order."""
    values = [a.get("visibility", 1.0) for a in annotations]
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if bad:
        a = annotations[bad[0]]
        raise DatasetError(f"{name}: annotation {a.get('id')} has visibility {a['visibility']!r}; visibility is the "
                           f"visible fraction of the amodal box, a number in [0, 1] ({_FIX}).")
    return (np.array(values, dtype=np.float64),
            np.array([bool(a.get("out_of_frame", False)) for a in annotations], dtype=bool))


def _detection(gt: LvisGroundTruth, records: Sequence[Mapping[str, Any]], visibility: np.ndarray,
               out_of_frame: np.ndarray, progress: bool | None) -> dict[str, float]:
    """``lvis_amodal.LVISEval(gt, results, "bbox")``: per-frame AP over the visibility and out-of-frame slices."""
    lo = np.array([r[0] for r in VISIBILITY_RANGES.values()])[:, None]
    hi = np.array([r[1] for r in VISIBILITY_RANGES.values()])[:, None]

    def ignored_truth(_: LvisGroundTruth, index: np.ndarray) -> np.ndarray:
        v = visibility[index]
        return np.concatenate([(v < lo) | (v > hi), ~out_of_frame[index][None]])

    def ignored_results(area: np.ndarray) -> np.ndarray:
        outside = (area < _ALL_AREAS[0]) | (area > _ALL_AREAS[1])
        return np.repeat(outside[None], len(DETECTION_SLICES), axis=0)

    # LVISResults caps every image at 300 results before LVISEval drops the categories it does not know (the
    # aliases, and the ids of no category, which the tracking part has warned about or refused)
    image = positions(gt.image_ids, np.array([r["image_id"] for r in records], dtype=np.int64))
    score = np.array([r["score"] for r in records], dtype=np.float64)
    kept = top_per_image(image, score, MAX_DETS)
    known = np.isin(np.array([records[i]["category_id"] for i in kept], dtype=np.int64), gt.category_ids)
    evaluated = [records[i] for i in kept[known]]
    precision, _, frequency_groups = precision_recall_by_slice(
        gt, evaluated, Slices(DETECTION_SLICES, ignored_truth, ignored_results), "bbox", MAX_DETS, progress)
    at_50 = np.where(0.50 == IOU_THRESHOLDS)[0]
    scores = {"AP": mean_defined(precision[:, :, :, [0]]), "AP50": mean_defined(precision[at_50][:, :, :, [0]])}
    for s, name in enumerate(DETECTION_SLICES[1:], start=1):
        scores[f"AP_{name}"] = mean_defined(precision[:, :, :, [s]])
    for name, group in zip(("APr", "APc", "APf"), frequency_groups):
        scores[name] = mean_defined(precision[:, :, group, [0]])
    return scores


def _tracking(gt: TaoGroundTruth, records: Sequence[Mapping[str, Any]], visibility: np.ndarray,
              progress: bool | None, strict: bool) -> dict[str, float]:
    """``tao_amodal.TaoEval(gt, results)`` after the track-id renumbering: 3D-IoU AP, all tracks and HP tracks."""
    def not_occluded(frames: np.ndarray, frame_track: np.ndarray, num_tracks: int) -> np.ndarray:
        occluded = np.bincount(frame_track, weights=visibility[frames] < HP_VISIBILITY, minlength=num_tracks)
        ignored = np.zeros((len(AREA_RANGES) + 1, num_tracks), dtype=bool)
        ignored[-1] = occluded <= HP_MIN_OCCLUDED_FRAMES
        return ignored

    slices = TrackSlices((*AREA_RANGES.values(), _ALL_AREAS), not_occluded)
    precision, _ = track_precision_recall(gt, records, IOU_THRESHOLDS, MAX_DETS, slices, renumber_shared_tracks=True,
                                          progress=progress, strict=strict)
    at_50 = np.where(0.50 == IOU_THRESHOLDS)[0]
    hp = len(AREA_RANGES)
    return {"track_AP50": mean_defined(precision[at_50][:, :, :, 0, 0]),
            "track_AP": mean_defined(precision[:, :, :, 0, 0]),
            "track_AP50_HP": mean_defined(precision[at_50][:, :, :, hp, 0]),
            "track_AP_HP": mean_defined(precision[:, :, :, hp, 0])}


# ---------------------------------------------------------------------------------------------------------------
# Annotation conversion
# ---------------------------------------------------------------------------------------------------------------

def to_lvis_v1(ground_truth: Mapping[str, Any]) -> dict[str, Any]:
    """The TAO-Amodal annotations (LVIS v0.5 categories) converted for :func:`evaluate`, as Amodal-Expander's
    ``tools/create_tao_amodal_v1.py`` converts them (``validation.json`` -> ``validation_lvis_v1.json``).

    ``ground_truth`` is the parsed TAO-Amodal file (left unchanged); the copy returned differs in:

    * **categories**: LVIS v1's 1203 (:func:`vfe_hub.registry.lvis_v1_categories`: ``id``, ``name``, ``synset``,
      ``frequency``; the script copies those of ``lvis_v1_val.json``), each with ``image_count`` and
      ``instance_count`` counted over the converted annotations (0 for the others). A v0.5 category is mapped to
      the v1 category of the same ``synset``; only categories with annotations are mapped, so the others (and the
      free-form categories, whose synset is not in LVIS v1) are dropped wherever they appear.
    * **annotations** of a mapped category: ``id`` becomes the string ``"<video_id>_<image_id>_<track_id>"``,
      ``category_id`` the v1 id, ``bbox`` the ``amodal_bbox``, ``area`` its ``int(w * h)`` (truncated);
      ``visibility`` defaults to 1.0 and ``out_of_frame`` to false (with a warning, as the script prints one).
      Other annotations are dropped.
    * **tracks** of a mapped category get the v1 id; the others are dropped.
    * **videos**: ``neg_category_ids`` and ``not_exhaustive_category_ids`` mapped, unmapped ids dropped; every
      **image** gets its video's two lists.

    Raises :class:`~vfe_hub.errors.DatasetError` when a field the conversion reads is missing.
    """
    defaulted = 0

    def amodal(a: dict[str, Any], v1_id: int) -> dict[str, Any]:
        nonlocal defaulted
        box = a["amodal_bbox"]
        defaulted += "visibility" not in a or "out_of_frame" not in a
        return {**a, "id": f"{a['video_id']}_{a['image_id']}_{a['track_id']}", "category_id": v1_id, "bbox": box,
                "area": int(box[2] * box[3]), "visibility": a.get("visibility", 1.0),
                "out_of_frame": a.get("out_of_frame", False)}

    data = tao_data.to_lvis_v1(copy.deepcopy(dict(ground_truth)), annotation=amodal)
    if defaulted:
        log.warning("%d TAO-Amodal annotations lack 'visibility' or 'out_of_frame' (set to 1.0 and false); is this "
                    "the TAO-Amodal annotation file?", defaulted)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Boxes outside the frame
# ---------------------------------------------------------------------------------------------------------------

def out_of_frame_stats(results: Results, images: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """How many of the boxes ``results`` leave their image, and by how much.

    ``results`` are dicts with ``image_id`` and ``bbox`` ``[x, y, w, h]`` (predictions, or the annotations of a
    ground truth) or the path of a JSON list of them; ``images`` the image dicts (``id``, ``width``, ``height``).
    A box leaves the frame when it is not inside ``[0, W - 1] x [0, H - 1]`` (the ``is_out_of_frame`` rule of the
    TAO-Amodal authors' notebooks); its outside fraction is the part of its area outside that rectangle (a box of
    zero area outside the frame counts as wholly outside). Returns ``boxes`` (count), ``out_of_frame`` (count),
    ``out_of_frame_fraction`` (their share of the boxes), ``mean_outside`` (the mean outside fraction of the boxes
    that leave the frame) and ``max_outside``; the last three are -1 without boxes, the last two without boxes that
    leave the frame. Raises :class:`~vfe_hub.errors.DatasetError` for a box of an unknown image or not 4 finite numbers.
    """
    records = result_list(results, "dicts with image_id and bbox [x, y, w, h]")
    sizes = {}
    for image in images:
        try:
            sizes[image["id"]] = (float(image["width"]), float(image["height"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"Every image needs id, width and height ({type(e).__name__}: {e}).") from e
    missing = [i for i, r in enumerate(records) if r.get("image_id") not in sizes]
    if missing:
        raise DatasetError(f"Box {missing[0]} has image_id {records[missing[0]].get('image_id')!r}, which is not among "
                           f"the {len(sizes)} images given; {len(missing)} boxes are of unknown images.")
    boxes = box_array(records)
    size = np.array([sizes[r["image_id"]] for r in records], dtype=np.float64).reshape(-1, 2)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    right, bottom = size[:, 0] - 1, size[:, 1] - 1
    leaves = ~((x1 >= 0) & (y1 >= 0) & (x2 <= right) & (y2 <= bottom))
    inside_w = np.clip(np.minimum(x2, right) - np.maximum(x1, 0.0), 0.0, None)
    inside_h = np.clip(np.minimum(y2, bottom) - np.maximum(y1, 0.0), 0.0, None)
    area = boxes[:, 2] * boxes[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        outside = np.where(area > 0, 1.0 - inside_w * inside_h / area, 1.0)[leaves]
    n = len(records)
    return {"boxes": float(n), "out_of_frame": float(leaves.sum()),
            "out_of_frame_fraction": float(leaves.mean()) if n else -1.0,
            "mean_outside": float(outside.mean()) if len(outside) else -1.0,
            "max_outside": float(outside.max()) if len(outside) else -1.0}
