"""TAO track AP and AR ("3D mAP"), computed exactly as the official TAO toolkit (``TaoResults`` + ``TaoEval``).

The reference is ``tao/toolkit/tao/{tao,results,eval}.py`` of TAO-Dataset/tao (commit ``a3a713c``).
:func:`evaluate` returns the numbers of ``TaoEval(gt, TaoResults(gt, results, max_dets))`` with
``params.iou_thrs = np.array(iou_thresholds)`` (how the toolkit's own ``tao/utils/evaluation.py`` sets them), after
``run()``, from ``get_results()``, bit for bit (checked against the toolkit in the tests), with plain key names;
matching and accumulation are vectorised over videos, categories, area and length ranges and thresholds. The rules,
each with the toolkit's quirk where it has one:

* **Category aliases.** A category's ``merged`` list names category ids folded into it; they are replaced by the
  category's id in the ground truth and in the results before anything else.
* **Detections per frame.** Per image, only the ``max_dets`` highest-scoring results are kept (TAO: 300), over all
  categories, ties in input order (``limit_dets_per_image``), before tracks are built: a track loses the frames
  that fell out. The toolkit then lists the results image by image (images in order of first appearance, an image
  that lost results in descending score); that order is the order in which a track's frame scores are averaged.
* **Results of unknown categories**, whose ``category_id`` (after the aliases) is not among the ground truth's
  ``categories``, are taken as ``TaoResults`` takes them: they count toward the per-frame cap, so they may push
  results of known categories out, and ``TaoEval._prepare`` then leaves them out (``get_ann_ids`` with the ground
  truth's category ids). A track mixing categories is refused where the toolkit asserts, after the cap: a track
  whose results of a known and an unknown category both survive it is refused; one that keeps the known
  category's results only is evaluated on them, one that keeps the unknown category's only drops out. One warning
  gives the number of such results and the first of them (many usually mean 0-based class indices);
  ``strict=True`` refuses them with a :class:`~vfe_hub.errors.DatasetError`.
* **Track score** = the mean of its frames' scores (``np.mean`` in that order), or their common value when all
  are equal. A track has one video (refused otherwise, as the toolkit asserts before the cap) and one category
  among the results kept by the cap (refused otherwise, as the toolkit asserts after it).
* **Annotations evaluated**: those of an image of a listed video, of a listed category, with ``0 < area < inf``
  (``Tao.get_ann_ids``); ground-truth areas are the file's ``area``, result areas ``w * h``. A track's area is the
  mean area of its evaluated annotations (added in frame order), its length their number. A ground-truth track
  is ignored when its ``tracks`` entry has a true ``ignore``.
* **Federated rules.** Results of a category are evaluated in a video only if the category has a ground-truth
  track there or is in the video's ``neg_category_ids``; unmatched results of a category in the video's
  ``not_exhaustive_category_ids`` are ignored. Both lists are the video's (not its images').
* **3D IoU** of a result and a ground-truth track of the same video and category: the sum over the union of their
  frames of the box intersections over the sum of the box unions (a frame of one track only adds that box's
  ``w * h`` to the union); ``bb_intersect_union`` in float64, reproduced with the same operations. The toolkit
  adds the frames in the iteration order of the Python set ``set(gt_frames) | set(result_frames)`` of image ids,
  which decides the last bit of the sums; the pairs whose IoU can reach the lowest threshold are summed here in
  that same order (a CPython set's order: the same Python gives the same order). The toolkit asserts that the
  summed intersection is at most the summed union, which rounding can break for a result box equal to its
  ground-truth box with non-binary coordinates (``(x + w) - x != w``); here such an IoU is kept (it may exceed 1
  by an ulp).
* **Matching** (``evaluate_vid``), per video, category, area range, length range and threshold: results in
  descending score, ties in the toolkit's order (first appearance of a track while visiting the images in the
  order of ``list(set(image_ids) & set(image_ids))``, another set order); each takes the free ground-truth track
  of highest IoU ``>= min(threshold, 1 - 1e-10)``, regular tracks before ignored ones, the later one (in that
  visiting order) on equal IoU. A result matched to an ignored track is ignored; an unmatched result whose area
  or length is outside the range, or of a not-exhaustive category, is ignored. Quirks kept: a ground-truth track
  counts as taken only when the matching result's ``track_id`` is > 0 (the toolkit stores the id as the match
  marker), so a result with ``track_id <= 0`` leaves it free for the next results, and each of them counts as a
  true positive; a match to a ground-truth track of id -1 counts as no match.
* **Ranges**, both bounds inside: areas all ``[0, 1e10]``, small ``[0, 32**2]``, medium ``[32**2, 96**2]``, large
  ``[96**2, 1e10]``; lengths (annotated frames) all ``[0, 1e5]``, short ``[0, 3]``, medium ``[3, 10]``, long
  ``[10, 1e5]``, so a track of 3 frames is short and medium, one of 10 medium and long.
* **Accumulation** (``accumulate``), per category and range with at least one regular ground-truth track: results
  of all videos in descending score, ties by video id then matching order; ``precision = tp / (fp + tp + eps)``
  made non-increasing from the right, read at the 101 recall thresholds 0:0.01:1; recall the final ``tp / n_gt``
  (:func:`~.lvis.precision_recall`, shared with LVIS). Other entries hold -1.
* **Summary** (``summarize``): the mean of the entries > -1 of a slice of the precision ``(T, 101, K, area, length)``
  or recall ``(T, K, area, length)`` array, -1 if none. ``AP50`` and ``AP75`` select the thresholds equal (as
  floats) to 0.5 and 0.75: -1 when ``iou_thresholds`` has no such value (so ``AP75`` is -1 with TAO's thresholds
  ``(0.5,)``, and ``AP50`` equals ``AP``). With the toolkit's default list ``params.iou_thrs = [0.5]`` the lookup
  compares ``0.5 == [0.5]``, a plain ``False``: older numpy (with a DeprecationWarning) then gives -1 for both,
  numpy 2.4 raises; hence the array its own script sets, which is what is reproduced.
  ``APr``, ``APc``, ``APf`` (left out by the toolkit) are computed as LVIS does, over the categories of
  ``frequency`` ``r``, ``c``, ``f``.

Returned keys, fractions in [0, 1] or -1: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AP_short``,
``AP_medium``, ``AP_long``, ``APr``, ``APc``, ``APf``, ``AR@N`` (``N = max_dets``), ``ARs``, ``ARm``, ``ARl``,
``AR_short``, ``AR_medium``, ``AR_long``.

Where the toolkit asserts or silently does something else, :class:`~vfe_hub.errors.DatasetError` is raised,
naming the results entry: a missing field, an unknown image id, a NaN score or non-finite box, a ``video_id``
that is not the image's video, two boxes of one track of a known category in one image among the results kept by
the cap (the toolkit keeps the later box for the IoU and counts both in the track's length), a track with two
categories after the cap or in two videos; likewise for ground truth the toolkit would misread (:mod:`.tao_data`).
Empty results, or results none of which has a known category and a positive area, make the toolkit fail
(``TaoResults`` reads ``results[0]``, ``_prepare`` raises); here they give what its accumulation gives without
detections: 0 for every AP and AR with ground truth, -1 where there is none.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import DatasetError
from ..progress import progress_bar
from .lvis import (AREA_RANGES, RECALL_THRESHOLDS, Results, box_array, category_positions, check_scores,
                   greedy_match, known_ids, mean_defined, positions, precision_recall, result_list, top_per_image)
from .lvis_data import FREQUENCIES, Source
from .tao_data import TaoGroundTruth

log = logging.getLogger(__name__)

#: Length ranges ``name: (lo, hi)`` in annotated frames, both bounds inside the range (``Params.time_rng``).
TIME_RANGES: dict[str, tuple[float, float]] = {"all": (0, 1e5), "short": (0, 3), "medium": (3, 10),
                                               "long": (10, 1e5)}
_MAX_IOU = 1 - 1e-10  # evaluate_vid: ``iou = min([iou_thr, 1 - 1e-10])``
_IOU_SLACK = 1e-9  # pairs whose roughly summed IoU comes this close to a threshold are re-added in its order
_FIELDS = ("image_id", "category_id", "bbox", "score", "track_id")
_KIND = "TAO result dicts (image_id, category_id, bbox [x, y, w, h], score, track_id, optional video_id)"
_TRACK_RULES = {"image_id": "a track has one box per frame: give each object its own track_id",
                "category_id": "a track has one category: split it into tracks of one category each",
                "video": "track ids are per video in TAO results: renumber the tracks so that each id is used in one "
                         "video only"}


@dataclass(frozen=True)
class TrackSlices:
    """The ranges of a TAO-style evaluation: ``areas`` (mean box area ranges, bounds inside), each crossed with
    :data:`TIME_RANGES`, range ``a * len(TIME_RANGES) + t``. ``ignored_truth(frames, frame_track, n)``, if given,
    flags ``(len(areas), n)`` ground-truth tracks ignored on top of the area and length rules, from the positions in
    the file's annotations of their evaluated frames (``frames``) and the track of each (``frame_track``)."""

    areas: tuple[tuple[float, float], ...] = tuple(AREA_RANGES.values())
    ignored_truth: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = field(default=None, compare=False)

    def outside(self, area: np.ndarray, length: np.ndarray) -> np.ndarray:
        """``(R, N)``: outside each (area range, length range), bounds inside the range."""
        ranges = [(a, t) for a in self.areas for t in TIME_RANGES.values()]
        lo = np.array([[a[0], t[0]] for a, t in ranges]).T[:, :, None]
        hi = np.array([[a[1], t[1]] for a, t in ranges]).T[:, :, None]
        value = np.stack([area, length.astype(np.float64)])[:, None, :]
        return ((value < lo) | (value > hi)).any(axis=0)


def evaluate(ground_truth: TaoGroundTruth | Source, results: Results, *, iou_thresholds: Sequence[float] = (0.5,),
             max_dets: int = 300, progress: bool | None = None, strict: bool = False) -> dict[str, float]:
    """TAO track AP and AR of ``results`` as the official ``TaoEval`` computes them (module docstring for the rules).

    ``ground_truth`` is a :class:`~.tao_data.TaoGroundTruth` (load it once to evaluate several times), the path of
    a TAO annotation JSON, or its parsed dict. ``results`` are result dicts (``image_id``, ``category_id``,
    ``bbox`` ``[x, y, w, h]``, ``score``, ``track_id``, optionally ``video_id``), one per frame of a track, or the
    path of a JSON list of them. ``iou_thresholds`` are the 3D IoU thresholds (TAO: 0.5 only), ``max_dets`` the
    results kept per frame (TAO: 300). Results whose category is not in the ground truth count toward that cap and
    are then left out, as in ``TaoResults``/``TaoEval``, with a warning; ``strict=True`` refuses them. Raises
    :class:`~vfe_hub.errors.DatasetError` for a ground truth that is not TAO and the results listed in the module
    docstring, ``ValueError`` for thresholds outside ``(0, 1]`` or a ``max_dets`` below 1.
    """
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or not len(thresholds) or not ((thresholds > 0) & (thresholds <= 1)).all():
        raise ValueError(f"iou_thresholds={iou_thresholds!r}: expected one or more 3D IoU thresholds in (0, 1] "
                         f"(TAO uses (0.5,)).")
    if isinstance(max_dets, bool) or not isinstance(max_dets, (int, np.integer)) or max_dets < 1:
        raise ValueError(f"max_dets={max_dets!r}: expected a positive number of results per frame (TAO uses 300).")
    start = time.perf_counter()
    gt = ground_truth if isinstance(ground_truth, TaoGroundTruth) else TaoGroundTruth.load(ground_truth)
    records = result_list(results, _KIND)
    precision, recall = track_precision_recall(gt, records, thresholds, int(max_dets), progress=progress,
                                               strict=strict)
    scores = _summarize(precision, recall, thresholds, [np.flatnonzero(gt.frequencies == f) for f in FREQUENCIES],
                        int(max_dets))
    log.info("TAO track AP %.4f, AR@%d %.4f: %d results, %.1f s", scores["AP"], max_dets, scores[f"AR@{max_dets}"],
             len(records), time.perf_counter() - start)
    return scores


def track_precision_recall(gt: TaoGroundTruth, records: Sequence[Mapping], thresholds: np.ndarray, max_dets: int,
                           slices: TrackSlices = TrackSlices(), renumber_shared_tracks: bool = False,
                           progress: bool | None = None, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``TaoEval``'s ``evaluate`` and ``accumulate`` over ``slices``: precision ``(T, 101, K, areas, lengths)`` and
    recall ``(T, K, areas, lengths)`` at the 3D IoU ``thresholds``, -1 where a category has no regular ground-truth
    track in a range. With ``renumber_shared_tracks``, result track ids used in several videos are first renumbered
    (:func:`renumber_shared_tracks`) instead of refused. Results of unknown categories: counted in the cap, then
    left out with a warning, or refused with ``strict`` (:func:`~.lvis.category_positions`)."""
    truth = _ground_truth_tracks(gt, slices)
    dets = _result_tracks(records, gt, truth, max_dets, slices, renumber_shared_tracks, strict)
    matching = np.minimum(thresholds, _MAX_IOU)
    det, gt_track, iou = _track_pairs(truth, dets, gt.image_ids, float(matching.min()), progress)
    candidates, match = greedy_match(dets.group, det, gt_track, iou, truth.ignored, matching, claims=dets.ids > 0)
    log.debug("%d result tracks of %d results evaluated against %d tracks", len(dets.ids), len(records),
              len(truth.ids))
    return _accumulate(truth, dets, candidates, match, len(gt.category_ids), len(thresholds))


def renumber_shared_tracks(track_ids: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
    """The TAO-Amodal script's ``make_track_ids_unique``: every track id found in more than one video gets a new id
    per (id, video), ``max(0, largest id) + 1`` onwards in the order the pairs first appear; other ids are kept."""
    pairs = np.unique(np.stack([track_ids, video_ids], axis=1), axis=0)
    ids, videos_per_id = np.unique(pairs[:, 0], return_counts=True)
    shared = np.isin(track_ids, ids[videos_per_id > 1])
    if not shared.any():
        return track_ids
    keys = np.stack([track_ids[shared], video_ids[shared]], axis=1)
    unique, first, label = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(unique))
    renumbered = track_ids.copy()
    renumbered[shared] = max(0, int(track_ids.max())) + 1 + rank[label.ravel()]
    return renumbered


# ---------------------------------------------------------------------------------------------------------------
# Tracks, flattened
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Tracks:
    """The evaluated tracks of one side, sorted by group (video index * categories + category index), in matching
    order within a group; their frames (evaluated annotations) consecutive, in frame order."""

    group: np.ndarray  # (N,) nondecreasing
    video: np.ndarray  # (N,) video index
    category: np.ndarray  # (N,) category index
    ids: np.ndarray  # (N,) track ids
    score: np.ndarray  # (N,) float64 (ground truth: 0)
    ignored: np.ndarray  # (R, N) per area x length range: ground truth ignored / result ignored when unmatched
    frame_track: np.ndarray  # (F,) track of each frame
    frame_image: np.ndarray  # (F,) image index
    frame_box: np.ndarray  # (F, 4) float64 [x, y, w, h]

    @property
    def frame_area(self) -> np.ndarray:
        return self.frame_box[:, 2] * self.frame_box[:, 3]


def _ground_truth_tracks(gt: TaoGroundTruth, slices: TrackSlices) -> _Tracks:
    """``TaoEval._prepare``'s ground-truth tracks; ordered as ``group_ann_tracks`` lists them."""
    video = positions(gt.video_ids, gt.track_videos)
    category = positions(gt.category_ids, gt.track_categories)
    area = gt.ann_areas
    keep = np.flatnonzero((gt.image_visit[gt.ann_images] >= 0) & (category[gt.ann_tracks] >= 0) & (area > 0)
                          & (area < np.inf) & (video[gt.ann_tracks] >= 0))
    visit = _visit_positions(gt.image_visit[gt.ann_images[keep]], keep)
    track = gt.ann_tracks[keep]
    first = np.full(len(gt.track_ids), np.iinfo(np.int64).max)
    np.minimum.at(first, track, visit)
    present = np.unique(track)
    group = video * len(gt.category_ids) + category
    order = present[np.lexsort((first[present], group[present]))]
    frames, frame_track, length, mean_area = _frames(track, gt.image_frames[gt.ann_images[keep]], visit, area[keep],
                                                     order)
    ignored = gt.track_ignore[order] | slices.outside(mean_area, length)
    if slices.ignored_truth is not None:
        extra = slices.ignored_truth(keep[frames], frame_track, len(order))
        ignored |= np.repeat(extra, len(TIME_RANGES), axis=0)
    return _Tracks(group[order], video[order], category[order], gt.track_ids[order], np.zeros(len(order)), ignored,
                   frame_track, gt.ann_images[keep][frames], gt.ann_boxes[keep][frames])


def _result_tracks(records: Sequence[Mapping], gt: TaoGroundTruth, truth: _Tracks, max_dets: int,
                   slices: TrackSlices, renumber: bool, strict: bool) -> _Tracks:
    """``TaoResults`` and ``TaoEval._prepare`` for the results: capped, scored, grouped, federated-filtered."""
    image, category_ids, category, score, track_ids, boxes = _read_results(records, gt, renumber, strict)
    kept = top_per_image(image, score, max_dets)
    # TaoResults asserts one category per track over the results that the cap keeps; two boxes of a track in one
    # frame are refused where the toolkit would misread them: in a track it evaluates (of a known category)
    _check_tracks("category_id", kept, track_ids[kept], category_ids[kept])
    known = kept[category[kept] >= 0]
    _check_tracks("image_id", known, track_ids[known], gt.image_ids[image[known]])
    # limit_dets_per_image rebuilds the list image by image (first appearance); a capped image in score order
    num_images = len(gt.image_ids)
    first_seen = np.full(num_images, len(image))
    np.minimum.at(first_seen, image, np.arange(len(image)))
    capped = np.bincount(image, minlength=num_images) > max_dets
    listed = kept[np.lexsort((kept, np.where(capped[image[kept]], -score[kept], 0.0), first_seen[image[kept]]))]
    ids, label = np.unique(track_ids[listed], return_inverse=True)
    by_track = np.argsort(label, kind="stable")
    counts = np.bincount(label, minlength=len(ids))
    track_score = _track_scores(score[listed][by_track], np.cumsum(counts) - counts, counts)

    area = boxes[listed, 2] * boxes[listed, 3]
    keep = np.flatnonzero((area > 0) & (area < np.inf) & (gt.image_visit[image[listed]] >= 0)
                          & (category[listed] >= 0))
    ann_image = image[listed][keep]
    track = label[keep]
    visit = _visit_positions(gt.image_visit[ann_image], keep)
    first = np.full(len(ids), np.iinfo(np.int64).max)
    np.minimum.at(first, track, visit)
    video = np.zeros(len(ids), dtype=np.int64)
    video[track] = positions(gt.video_ids, gt.image_videos[ann_image])
    cat = np.zeros(len(ids), dtype=np.int64)
    cat[label] = category[listed]
    num_categories = len(gt.category_ids)
    group = video * num_categories + cat
    present = np.unique(track)
    evaluated = np.isin(group[present], truth.group) | np.isin(group[present], _label_groups(gt, gt.neg_category_ids))
    present = present[evaluated]
    order = present[np.lexsort((first[present], -track_score[present], group[present]))]
    frames, frame_track, length, mean_area = _frames(track, gt.image_frames[ann_image], visit, area[keep], order)
    not_exhaustive = np.isin(group[order], _label_groups(gt, gt.not_exhaustive_category_ids))
    return _Tracks(group[order], video[order], cat[order], ids[order], track_score[order],
                   slices.outside(mean_area, length) | not_exhaustive, frame_track, ann_image[frames],
                   boxes[listed][keep][frames])


class ResultColumns(NamedTuple):
    """TAO results as arrays, one row per result: the ``image`` index in the ground truth and its ``image_ids``,
    ``category_ids`` (aliases resolved to the categories they merge into), ``score``, ``track_ids``, ``video_ids``
    (of the images) and ``boxes`` ``[x, y, w, h]``."""

    image: np.ndarray
    image_ids: np.ndarray
    category_ids: np.ndarray
    score: np.ndarray
    track_ids: np.ndarray
    video_ids: np.ndarray
    boxes: np.ndarray


def read_results(records: Sequence[Mapping], gt: TaoGroundTruth) -> ResultColumns:
    """The columns of TAO ``records``, checked: every field present and of its type (track ids of 64 bits), every
    image in ``gt``, no NaN score, a ``video_id`` (optional) that is the image's video (:class:`DatasetError`
    naming the first entry that is not)."""
    try:
        image_ids = np.array([r["image_id"] for r in records], dtype=np.int64)
        category_ids = np.array([r["category_id"] for r in records], dtype=np.int64)
        score = np.array([r["score"] for r in records], dtype=np.float64)
        track_ids = np.array([r["track_id"] for r in records], dtype=np.int64)
        given_videos = [r.get("video_id") for r in records]
        boxes = box_array(records)
    except DatasetError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        _name_missing_field(records)
        raise DatasetError(f"Results must have one integer image_id, category_id and track_id (of 64 bits) and one "
                           f"number as score each ({type(e).__name__}: {e}).") from e
    if gt.aliases:
        aliases = np.array(sorted(gt.aliases.items()), dtype=np.int64)
        found = positions(aliases[:, 0], category_ids)
        category_ids = np.where(found >= 0, aliases[found, 1], category_ids)
    image = known_ids(gt.image_ids, image_ids, "image_id", gt.source, "is not an image of the ground truth: results "
                      "must come from the split of the annotation file")
    check_scores(score, image_ids)
    video_ids = gt.image_videos[image]
    wrong = [i for i, v in enumerate(given_videos) if v is not None and v != video_ids[i]]
    if wrong:
        i = wrong[0]
        raise DatasetError(f"Results entry {i} has video_id {given_videos[i]} but its image_id {image_ids[i]} is a "
                           f"frame of video {video_ids[i]}; drop video_id (it follows from the image) or correct it.")
    return ResultColumns(image, image_ids, category_ids, score, track_ids, video_ids, boxes)


def _read_results(records: Sequence[Mapping], gt: TaoGroundTruth, renumber: bool, strict: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image index, category id and category index (aliases resolved; index -1 for a category not in the ground
    truth, refused with ``strict``), score, track id (renumbered where shared across videos with ``renumber``) and
    box of each result; checked."""
    columns = read_results(records, gt)
    category = category_positions(gt.category_ids, columns.category_ids, gt.source, "the TAO category ids", strict)
    track_ids = columns.track_ids
    if renumber and len(track_ids):
        track_ids = renumber_shared_tracks(track_ids, columns.video_ids)
    _check_tracks("video", np.arange(len(records)), track_ids, columns.video_ids)
    return columns.image, columns.category_ids, category, columns.score, track_ids, columns.boxes


def _name_missing_field(records: Sequence[Mapping]) -> None:
    """:class:`DatasetError` naming the first result that is not a dict with every field, if there is one."""
    for i, r in enumerate(records):
        if not isinstance(r, Mapping) or not all(k in r for k in _FIELDS):
            what = [k for k in _FIELDS if k not in r] if isinstance(r, Mapping) else type(r).__name__
            raise DatasetError(f"Results entry {i} lacks {what}: TAO results need image_id, category_id, bbox "
                               f"[x, y, w, h], score and track_id (video_id optional), one dict per frame of a track.")


def _check_tracks(what: str, entries: np.ndarray, track_ids: np.ndarray, values: np.ndarray) -> None:
    """:class:`DatasetError` unless the results at positions ``entries`` (increasing; ``track_ids`` and ``values``
    are theirs) have one box per track and image (``what`` ``"image_id"``: ``values`` are image ids), or one value
    per track (``"category_id"``, ``"video"``)."""
    order = np.lexsort((values, track_ids))
    same_track = track_ids[order][1:] == track_ids[order][:-1]
    same_value = values[order][1:] == values[order][:-1]
    clash = same_track & (same_value if what == "image_id" else ~same_value)
    if clash.any():
        j = int(np.argmax(clash))
        a, b = sorted((int(order[j]), int(order[j + 1])))
        detail = f"both give image_id {values[a]}" if what == "image_id" else f"give {what} {values[a]} and {values[b]}"
        raise DatasetError(f"Results entries {entries[a]} and {entries[b]} of track_id {track_ids[a]} {detail}; "
                           f"{_TRACK_RULES[what]}.")


def _visit_positions(image_visit: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Each annotation's rank in the toolkit's visit: images in set order, the list's order within an image."""
    visit = np.empty(len(position), dtype=np.int64)
    visit[np.lexsort((position, image_visit))] = np.arange(len(position))
    return visit


def _frames(track: np.ndarray, frame_index: np.ndarray, visit: np.ndarray, area: np.ndarray, order: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The annotations of the tracks ``order`` (labels in ``track``), track by track in frame order, and the
    position in ``order`` of each; each track's length and mean area (``group_ann_tracks``: annotations sorted by
    ``frame_index``, areas added left to right)."""
    rank = np.full(int(track.max(initial=-1)) + 1, -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    frames = np.flatnonzero(rank[track] >= 0) if len(track) else np.zeros(0, dtype=np.int64)
    frames = frames[np.lexsort((visit[frames], frame_index[frames], rank[track[frames]]))]
    frame_track = rank[track[frames]]
    length = np.bincount(frame_track, minlength=len(order))
    mean_area = _sequential_sums(area[frames], np.cumsum(length) - length, length) / np.maximum(length, 1)
    return frames, frame_track, length, mean_area


def _sequential_sums(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``sum(values[s:s + n])`` of each run, added left to right as Python's ``sum`` does."""
    total = np.zeros(len(starts))
    for j in range(int(lengths.max(initial=0))):
        live = np.flatnonzero(lengths > j)
        total[live] += values[starts[live] + j]
    return total


def _track_scores(scores: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``TaoResults``' track score: the common score of a run if all are equal, else ``np.mean`` of the run (a
    row-wise ``np.mean`` of equal-length runs adds in the same order as the mean of each run)."""
    out = np.empty(len(starts))
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        block = scores[starts[rows, None] + np.arange(length)]
        out[rows] = np.where((block == block[:, :1]).all(axis=1), block[:, 0], block.mean(axis=1))
    return out


def _label_groups(gt: TaoGroundTruth, labels: dict[int, frozenset[int]]) -> np.ndarray:
    """The groups ``(video, category)`` of per-video category lists; ids that are not categories are left out."""
    video = np.repeat(np.arange(len(gt.video_ids)), [len(labels[int(v)]) for v in gt.video_ids])
    category = positions(gt.category_ids, np.array([c for v in gt.video_ids for c in labels[int(v)]],
                                                   dtype=np.int64))
    return np.unique(video[category >= 0] * len(gt.category_ids) + category[category >= 0])


# ---------------------------------------------------------------------------------------------------------------
# 3D IoU of (result track, ground-truth track) pairs of one video and category
# ---------------------------------------------------------------------------------------------------------------

def _intersect_union(d: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``bb_intersect_union`` of ``[x, y, w, h]`` boxes: the same float64 operations in the same order."""
    w = np.maximum(np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0]), 0.0)
    h = np.maximum(np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1]), 0.0)
    intersect = w * h
    return intersect, d[:, 2] * d[:, 3] + g[:, 2] * g[:, 3] - intersect


def _track_pairs(truth: _Tracks, dets: _Tracks, image_ids: np.ndarray, threshold: float, progress: bool | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(result track, ground-truth track, 3D IoU)`` of the pairs of one group with IoU ``>= threshold``.

    The frames both tracks cover are joined on (group, image). The sums over a pair's frames are first taken in
    any order; the pairs whose IoU comes within ``_IOU_SLACK`` of ``threshold`` are summed again in the toolkit's
    order (:func:`_ordered_ious`), which gives the toolkit's value to the bit. The others cannot match.
    """
    num_images, num_gt = len(image_ids), len(truth.ids)
    g_key = truth.group[truth.frame_track] * num_images + truth.frame_image
    d_key = dets.group[dets.frame_track] * num_images + dets.frame_image
    g_order = np.argsort(g_key, kind="stable")
    lo = np.searchsorted(g_key[g_order], d_key, "left")
    count = np.searchsorted(g_key[g_order], d_key, "right") - lo
    d_frame = np.repeat(np.arange(len(d_key)), count)
    g_frame = g_order[np.repeat(lo, count) + np.arange(len(d_frame)) - np.repeat(np.cumsum(count) - count, count)]
    inter, union = _intersect_union(dets.frame_box[d_frame], truth.frame_box[g_frame])
    codes, pair = np.unique(dets.frame_track[d_frame] * num_gt + truth.frame_track[g_frame], return_inverse=True)
    d, g = codes // max(num_gt, 1), codes % max(num_gt, 1)

    def per_pair(values: np.ndarray) -> np.ndarray:
        return np.bincount(pair, values, minlength=len(codes))

    d_area, g_area = dets.frame_area, truth.frame_area
    d_total = np.bincount(dets.frame_track, d_area, minlength=len(dets.ids))
    g_total = np.bincount(truth.frame_track, g_area, minlength=num_gt)
    u_sum = per_pair(union) + (d_total[d] - per_pair(d_area[d_frame])) + (g_total[g] - per_pair(g_area[g_frame]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rough = np.where(u_sum > 0, per_pair(inter) / u_sum, 0.0)
    near = np.flatnonzero(rough >= threshold - _IOU_SLACK)
    by_pair = np.argsort(pair, kind="stable")
    starts, stops = np.searchsorted(pair[by_pair], near, "left"), np.searchsorted(pair[by_pair], near, "right")
    common = [by_pair[s:e] for s, e in zip(starts, stops)]
    iou = _ordered_ious(truth, dets, d[near], g[near], common, dets.frame_image[d_frame], inter, union, image_ids,
                        progress)
    keep = iou >= threshold
    return d[near][keep], g[near][keep], iou[keep]


def _ordered_ious(truth: _Tracks, dets: _Tracks, d: np.ndarray, g: np.ndarray, common: list[np.ndarray],
                  common_image: np.ndarray, inter: np.ndarray, union: np.ndarray, image_ids: np.ndarray,
                  progress: bool | None) -> np.ndarray:
    """``compute_track_box_iou`` of the pairs ``(d[k], g[k])``, whose common frames are ``common[k]`` (indices
    into ``common_image``, ``inter``, ``union``): the per-frame terms added in the toolkit's order, the iteration
    order of ``set(gt_frames.keys()) | set(result_frames.keys())`` (frame-ordered image ids, as its dicts hold
    them)."""
    ids = image_ids.tolist()
    inter_list, union_list, image_list = inter.tolist(), union.tolist(), common_image.tolist()
    gt_areas = _areas_by_image(truth, ids)
    dt_areas = _areas_by_image(dets, ids)
    ious = np.empty(len(d))
    pairs = zip(d.tolist(), g.tolist(), common)
    for k, (dk, gk, frames) in enumerate(progress_bar(pairs, total=len(d), desc="TAO 3D IoU", unit="pair",
                                                      progress=progress)):
        shared = {ids[image_list[f]]: (inter_list[f], union_list[f]) for f in frames.tolist()}
        g_frames, d_frames = gt_areas(gk), dt_areas(dk)
        i = u = 0.0
        for image in set(g_frames.keys()) | set(d_frames.keys()):
            if image in shared:
                i += shared[image][0]
                u += shared[image][1]
            elif image in g_frames:
                u += g_frames[image]
            else:
                u += d_frames[image]
        ious[k] = i / u if u > 0 else 0.0
    return ious


def _areas_by_image(tracks: _Tracks, image_ids: list[int]) -> Callable[[int], dict[int, float]]:
    """A function of a track index to ``{image id: w * h}`` of its frames in frame order, built once per track."""
    starts = np.searchsorted(tracks.frame_track, np.arange(len(tracks.ids) + 1)).tolist()
    images = [image_ids[i] for i in tracks.frame_image.tolist()]
    areas = tracks.frame_area.tolist()
    cache: dict[int, dict[int, float]] = {}

    def frames(track: int) -> dict[int, float]:
        if track not in cache:
            s, e = starts[track], starts[track + 1]
            cache[track] = dict(zip(images[s:e], areas[s:e]))
        return cache[track]
    return frames


# ---------------------------------------------------------------------------------------------------------------
# Accumulation and summary
# ---------------------------------------------------------------------------------------------------------------

def _accumulate(truth: _Tracks, dets: _Tracks, candidates: np.ndarray, match: np.ndarray, num_categories: int,
                num_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    """``accumulate``: precision ``(T, 101, K, area, length)`` and recall ``(T, K, area, length)``, -1 where a
    category has no regular ground-truth track in a range."""
    num_ranges = truth.ignored.shape[0]
    precision = np.full((num_thresholds, len(RECALL_THRESHOLDS), num_categories, num_ranges), -1.0)
    recall = np.full((num_thresholds, num_categories, num_ranges), -1.0)
    num_gt = np.stack([np.bincount(truth.category[~truth.ignored[r]], minlength=num_categories)
                       for r in range(num_ranges)], axis=1)  # (K, R)
    # results of all videos in descending score; ties: video order, then matching order (the dets' order)
    order = np.lexsort((np.arange(len(dets.ids)), -dets.score, dets.category))
    bounds = np.searchsorted(dets.category[order], np.arange(num_categories + 1))
    slot = np.full(len(dets.ids), -1, dtype=np.int64)
    slot[candidates] = np.arange(len(candidates))
    for k in np.flatnonzero(num_gt.any(axis=1)):
        ranges = np.flatnonzero(num_gt[k] > 0)
        ids = order[bounds[k]:bounds[k + 1]]
        matched = np.full((len(ranges), num_thresholds, len(ids)), -1, dtype=np.int64)
        has = slot[ids] >= 0
        matched[:, :, has] = match[:, :, slot[ids][has]][ranges]
        hit = matched >= 0
        gt = np.where(hit, matched, 0)
        counted = hit & (truth.ids[gt] != -1)  # the toolkit's "no match" marker is -1
        ignored = (hit & truth.ignored[ranges[:, None, None], gt]) | (~counted & dets.ignored[ranges][:, None, ids])
        precision[:, :, k, ranges], recall[:, k, ranges] = precision_recall(counted, ignored, num_gt[k, ranges])
    shape = (num_ranges // len(TIME_RANGES), len(TIME_RANGES))
    return precision.reshape(precision.shape[:3] + shape), recall.reshape(recall.shape[:2] + shape)


def _summarize(precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray, frequency_groups: list[np.ndarray],
               max_dets: int) -> dict[str, float]:
    """``summarize``: the same slices of the same arrays, so the means add the same values in the same order."""
    area = {name: i for i, name in enumerate(AREA_RANGES)}
    length = {name: i for i, name in enumerate(TIME_RANGES)}
    scores = {
        "AP": mean_defined(precision[:, :, :, 0, 0]),
        # exact float equality with the thresholds, as the toolkit looks them up
        "AP50": mean_defined(precision[np.where(0.50 == thresholds)[0]][:, :, :, 0, 0]),
        "AP75": mean_defined(precision[np.where(0.75 == thresholds)[0]][:, :, :, 0, 0]),
    }
    for name in ("small", "medium", "large"):
        scores[f"AP{name[0]}"] = mean_defined(precision[:, :, :, area[name], 0])
    for name in ("short", "medium", "long"):
        scores[f"AP_{name}"] = mean_defined(precision[:, :, :, 0, length[name]])
    for name, group in zip(FREQUENCIES, frequency_groups):
        scores[f"AP{name}"] = mean_defined(precision[:, :, group, 0, 0])
    scores[f"AR@{max_dets}"] = mean_defined(recall[:, :, 0, 0])
    for name in ("small", "medium", "large"):
        scores[f"AR{name[0]}"] = mean_defined(recall[:, :, area[name], 0])
    for name in ("short", "medium", "long"):
        scores[f"AR_{name}"] = mean_defined(recall[:, :, 0, length[name]])
    return scores
