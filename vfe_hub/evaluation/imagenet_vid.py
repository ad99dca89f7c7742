"""ImageNet VID AP50 with FGFA's motion-speed buckets, computed exactly as MEGA and vfe.pytorch V1 compute it.

The original is mega.pytorch's ``vid_eval.py`` (``do_vid_evaluation``), copied into vfe.pytorch V1 as
``mmdet/datasets/mamba/vid_eval.py``; MEGA, MAMBA and STPN report their numbers with it. :func:`evaluate`
returns the same numbers bit for bit (checked against a literal loop implementation in the tests). Conventions:

* **Frames.** Ground-truth frame ``i`` is image id ``i + 1`` (:mod:`.imagenet_vid_data`); a frame without
  results has no predictions. Results are read as ``float32`` boxes ``[x1, y1, x2, y2]`` and ``float32`` scores,
  like the original's torch tensors; COCO results ``[x, y, w, h]`` become ``x2 = x + w`` in float64, then
  float32, which gives back the detector's float32 ``x2`` of a JSON written from float32 boxes. Labels are
  category ids 1..30 (:data:`~vfe_hub.registry.IMAGENET_VID_CLASSES` order).
* **Motion buckets.** all ``[0, 1]``, fast ``[0, 0.7]``, medium ``[0.7, 0.9]``, slow ``[0.9, 1]``, inclusive at
  both ends, on the float64 motion IoU of each ground-truth object. An object with ``m < lo or m > hi`` is
  *ignored* in that bucket: it is not counted in the number of positives, and a prediction matched to it is
  neither a true nor a false positive.
* **Order of predictions.** Per frame and class, predictions are taken by descending score as
  ``scores.argsort()[::-1]`` orders them; per class over the whole set, the scores are collected frame by frame
  in that order and sorted the same way. ``argsort`` is numpy's unstable introsort, so tied scores come out in an
  order that depends on the whole array. The original ran on numpy < 1.24 (its ragged ``np.array`` of motion
  IoUs fails on later versions); numpy >= 1.25 sorts with SIMD code on AVX-512 machines and orders ties
  differently. :func:`numpy1_argsort` reproduces numpy < 1.25 exactly (checked against numpy 1.23.5), so tied
  scores rank as in the original. The order in which a frame's predictions of one class are given matters
  only through these ties.
* **IoU.** ``+1`` is added to ``x2, y2`` of both box sets, then ``boxlist_iou`` adds ``+1`` to every width and
  height (``TO_REMOVE = 1``): areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, intersection sides
  ``max(min(x2) - max(x1) + 1, 0)``, ``iou = inter / (area_p + area_g - inter)``, each operation in float32.
* **Matching.** Greedy, predictions in the per-frame order above. A prediction takes the unmatched ground truth
  of its class with the highest IoU ``>= 0.5`` (fixed: no small-object threshold); on equal IoU a non-ignored
  object wins over an ignored one, the first non-ignored in annotation order, else the last ignored.
* **False-positive weights.** An unmatched prediction is a false positive of weight 1 when its best IoU with a
  non-ignored object exceeds its best IoU with an ignored one (a class without such objects counts -1), ignored
  in the opposite case, and of weight ``n_ignored / n_objects`` of its frame and class on a tie (e.g. no overlap
  with anything in a frame holding both kinds). In a frame without objects of its class it has weight
  ``empty_weight``: the share of *all* motion-table entries inside the bucket, the ``0.0`` placeholders of
  frames without objects included; a share of exactly 1 (the "all" bucket) is reset to 0, which means weight 1.
* **AP.** ``tp`` and ``fp`` are cumulative sums over the class's sorted predictions, ``precision = tp / (fp + tp
  + np.spacing(1))`` (so a class with a single object found first gets ``1 / (1 + 2**-52)``, not 1),
  ``recall = tp / n_positives``; AP is the VOC all-point area (precision envelope, sum of recall steps times
  precision). A class with no positives in a bucket has AP nan; one with positives and no predictions has AP 0.
  The mean AP is ``np.nanmean`` over the array indexed 0..(highest class id present in predictions or ground
  truth), whose index 0 is nan, exactly as the original builds it. Both sums are computed as numpy < 2.3 does
  (:func:`numpy1_sum`): numpy 2.3 changed how ``np.sum`` buffers, which moves the last bit of an AP with more
  than 8192 recall steps.
* **Inputs rejected** (:class:`~vfe_hub.errors.DatasetError`): results of image ids outside the ground truth,
  category ids outside 1..30, NaN scores, non-finite boxes and boxes with ``x2 < x1`` or ``y2 < y1`` (the
  original's IoU can be nan for those, and its loop then behaves erratically).

Returned keys: ``AP50``, ``AP50_fast``, ``AP50_medium``, ``AP50_slow`` (mean AP per bucket) and
``AP50/<class>`` for the 30 classes (the "all" bucket), all fractions in [0, 1] or nan. Unlike the original,
which drops the classes above the highest one present, every class is always there.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ..errors import DatasetError
from ..progress import progress_bar
from ..registry import IMAGENET_VID_CLASSES
from .imagenet_vid_data import VidGroundTruth, check_motion_table, compute_motion_iou, load_coco_vid, motion_iou_table

log = logging.getLogger(__name__)

#: Motion buckets ``name: (lo, hi)``, inclusive at both ends.
BUCKETS: dict[str, tuple[float, float]] = {"all": (0.0, 1.0), "fast": (0.0, 0.7), "medium": (0.7, 0.9),
                                           "slow": (0.9, 1.0)}
IOU_THRESHOLD = 0.5
_INSERTION_MAX = 16  # numpy's quicksort insertion-sorts partitions of at most 16 elements (SMALL_QUICKSORT = 15)
_SUM_BUFFER = 8192  # numpy < 2.3 reduces in buffers of this many elements
_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE
_PAIR_CHUNK = 1 << 20  # (prediction, object) pairs matched at once; bounds memory, never changes results
_SORT_BATCH = 1 << 20  # elements sorted at once by the introsort emulation; bounds memory, never changes results

#: ``results`` as COCO result dicts, or ``image_id -> (boxes (N, 4) xyxy, scores (N,), labels (N,))``.
Results = Union[Sequence[Mapping[str, Any]], Mapping[int, tuple[Any, Any, Any]]]
MotionIou = Union[str, os.PathLike, Sequence[Sequence[float]]]


def evaluate(ground_truth: VidGroundTruth | str | os.PathLike, results: Results, *, motion_iou: MotionIou = "fgfa",
             progress: bool | None = None) -> dict[str, float]:
    """ImageNet VID AP50 overall and per motion bucket, with per-class AP (module docstring for the protocol).

    ``ground_truth`` is a :class:`VidGroundTruth` or the path of a COCO-VID JSON (:func:`load_coco_vid`).
    ``results`` are COCO result dicts (``image_id``, ``category_id`` 1..30, ``bbox`` ``[x, y, w, h]``,
    ``score``) or a mapping ``image_id -> (boxes, scores, labels)`` with ``[x1, y1, x2, y2]`` boxes.
    ``motion_iou`` is ``"fgfa"`` (FGFA's table, downloaded once and checksummed), a local ``.mat`` file in
    FGFA's layout, ``"compute"`` (derived from the ground truth's tracks, an approximation for other datasets;
    :func:`~.imagenet_vid_data.compute_motion_iou`), or the table itself (one sequence of values per frame).
    Raises :class:`~vfe_hub.errors.DatasetError` for results of unknown image ids or classes, NaN scores,
    non-finite or inverted boxes, and a motion table that does not fit the ground truth.
    """
    start = time.perf_counter()
    gt = ground_truth if isinstance(ground_truth, VidGroundTruth) else load_coco_vid(ground_truth)
    if not gt.frames:
        raise DatasetError("The ground truth has no frames.")
    table = _motion_table(motion_iou, gt, progress)
    check_motion_table(gt, table)
    truth = _Truth.build(gt, table)
    preds = _read_results(results, len(gt.frames))
    layout = _Layout.build(truth, preds)
    ap = {name: _bucket_ap(truth, preds, layout, bucket)
          for name, bucket in progress_bar(BUCKETS.items(), total=len(BUCKETS), desc="AP50 per motion bucket",
                                           progress=progress)}
    scores = {"AP50" if name == "all" else f"AP50_{name}": _nanmean(values) for name, values in ap.items()}
    for label, name in enumerate(IMAGENET_VID_CLASSES, 1):
        scores[f"AP50/{name}"] = float(ap["all"][label]) if label < len(ap["all"]) else float("nan")
    log.info("ImageNet VID AP50 %.4f (fast %.4f, medium %.4f, slow %.4f): %d predictions, %d frames, %.1f s",
             scores["AP50"], scores["AP50_fast"], scores["AP50_medium"], scores["AP50_slow"], len(preds.scores),
             len(gt.frames), time.perf_counter() - start)
    return scores


def _motion_table(motion_iou: MotionIou, gt: VidGroundTruth, progress: bool | None) -> list[np.ndarray]:
    if isinstance(motion_iou, (str, os.PathLike)):
        if str(motion_iou) == "compute":
            return compute_motion_iou(gt)
        return motion_iou_table(motion_iou, progress=progress)
    return [np.asarray(row, dtype=np.float64).reshape(-1) for row in motion_iou]


def empty_weight(table: Sequence[np.ndarray], bucket: tuple[float, float]) -> float:
    """The original's FP weight of a prediction in a frame without objects of its class, for one bucket.

    The share of all table entries (the ``0.0`` placeholders of frames without objects included) inside the
    bucket; a share of exactly 1 is returned as 0, which the AP step turns into weight 1.
    """
    entries = np.concatenate(table)
    lo, hi = bucket
    share = np.count_nonzero((entries >= lo) & (entries <= hi)) / float(len(entries))
    return 0.0 if share == 1 else share


def _nanmean(ap: np.ndarray) -> float:
    """``np.nanmean`` as numpy 1.x computes it (the nan entries count as 0 in the sum); nan if all are nan."""
    count = np.count_nonzero(~np.isnan(ap))
    return float(numpy1_sum(np.where(np.isnan(ap), 0.0, ap)) / count) if count else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# Inputs, flattened
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Truth:
    """All ground-truth objects, grouped by (frame, class) with annotation order kept inside a group."""

    key: np.ndarray  # (G,) frame * 32 + label, nondecreasing
    boxes: np.ndarray  # (G, 4) float32
    labels: np.ndarray  # (G,) int64
    motion: np.ndarray  # (G,) float64
    table: Sequence[np.ndarray]  # the motion table, placeholders included

    @classmethod
    def build(cls, gt: VidGroundTruth, table: Sequence[np.ndarray]) -> _Truth:
        counts = np.array([len(f.labels) for f in gt.frames])
        labels = np.concatenate([f.labels for f in gt.frames]).astype(np.int64)
        boxes = np.concatenate([f.boxes for f in gt.frames]).astype(np.float32).reshape(-1, 4)
        motion = np.concatenate([row for row, n in zip(table, counts) if n > 0] or [np.zeros(0)])
        key = np.repeat(np.arange(len(counts), dtype=np.int64), counts) * 32 + labels
        order = np.argsort(key, kind="stable")
        return cls(key[order], boxes[order], labels[order], motion[order], table)

    def ignored(self, bucket: tuple[float, float]) -> np.ndarray:
        """The objects outside ``bucket``."""
        lo, hi = bucket
        return (self.motion < lo) | (self.motion > hi)


@dataclass
class _Predictions:
    """All predictions in the original's collection order: frame, class, then descending score (see docstring)."""

    key: np.ndarray  # (P,) frame * 32 + label, nondecreasing
    boxes: np.ndarray  # (P, 4) float32
    scores: np.ndarray  # (P,) float32
    labels: np.ndarray  # (P,) int64


def _read_results(results: Results, num_frames: int) -> _Predictions:
    """Flatten and check ``results``, then put them in the original's per-frame order."""
    image_ids, boxes, scores, labels = (_from_mapping(results) if isinstance(results, Mapping)
                                        else _from_coco(results))
    _check_results(image_ids, boxes, scores, labels, num_frames)
    key = (image_ids - 1) * 32 + labels
    grouped = np.argsort(key, kind="stable")
    order = grouped[descending_argsort(scores[grouped], _segment_bounds(key[grouped]))]
    return _Predictions(key[order], boxes[order], scores[order], labels[order])


def _from_coco(results: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, ...]:
    try:
        image_ids = np.array([r["image_id"] for r in results], dtype=np.int64)
        labels = np.array([r["category_id"] for r in results], dtype=np.int64)
        scores = np.array([r["score"] for r in results], dtype=np.float64).astype(np.float32)
        xywh = np.array([r["bbox"] for r in results], dtype=np.float64).reshape(-1, 4)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"Results must be COCO result dicts with image_id, category_id, bbox [x, y, w, h] and "
                           f"score ({type(e).__name__}: {e}).") from e
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    return image_ids, boxes, scores, labels


def _from_mapping(results: Mapping[int, tuple[Any, Any, Any]]) -> tuple[np.ndarray, ...]:
    image_ids, boxes, scores, labels = [], [], [], []
    for image_id, value in results.items():
        try:
            b, s, c = value
            b, s, c = (np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32).reshape(-1),
                       np.asarray(c, np.int64).reshape(-1))
        except (TypeError, ValueError) as e:
            raise DatasetError(f"Results of image id {image_id}: expected (boxes (N, 4), scores (N,), labels (N,)) "
                               f"({type(e).__name__}: {e}).") from e
        if not len(b) == len(s) == len(c):
            raise DatasetError(f"Results of image id {image_id}: {len(b)} boxes, {len(s)} scores and {len(c)} "
                               f"labels.")
        image_ids.append(image_id)
        boxes.append(b)
        scores.append(s)
        labels.append(c)
    if not image_ids:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    counts = [len(s) for s in scores]
    image_ids = np.repeat(np.array(image_ids, dtype=np.int64), counts)
    return image_ids, np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)


def _check_results(image_ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   num_frames: int) -> None:
    bad = np.flatnonzero((image_ids < 1) | (image_ids > num_frames))
    if len(bad):
        raise DatasetError(f"Results name image id {image_ids[bad[0]]}, which is not in the ground truth (image ids "
                           f"1..{num_frames}); {len(bad)} results have unknown image ids.")
    checks = [
        ((labels < 1) | (labels > len(IMAGENET_VID_CLASSES)), "a category id outside 1..30"),
        (np.isnan(scores), "a NaN score"),
        (~np.isfinite(boxes).all(axis=1), "a non-finite box"),
        ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]), "a box with x2 < x1 or y2 < y1"),
    ]
    for mask, what in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            i = bad[0]
            raise DatasetError(f"A result of image id {image_ids[i]} has {what} (category {labels[i]}, score "
                               f"{scores[i]}, box {boxes[i].tolist()}); {len(bad)} results do.")


# ---------------------------------------------------------------------------------------------------------------
# numpy < 1.25 argsort, reproduced
# ---------------------------------------------------------------------------------------------------------------

def _segment_bounds(key: np.ndarray) -> np.ndarray:
    """``[s0, s1, ..., len]``: the starts of the runs of equal values of a sorted ``key``, then its length."""
    if not len(key):
        return np.zeros(1, dtype=np.int64)
    return np.concatenate([[0], np.flatnonzero(key[1:] != key[:-1]) + 1, [len(key)]]).astype(np.int64)


def _ranges(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated ranges ``start[i] .. start[i] + length[i] - 1`` and the range index of each element."""
    segment = np.repeat(np.arange(len(length)), length)
    offset = np.cumsum(length) - length
    return start[segment] + np.arange(len(segment)) - offset[segment], segment


def numpy1_argsort(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``np.argsort(values[s:e]) + s`` for every segment ``[s, e)`` of ``bounds``, as numpy < 1.25 orders it.

    numpy's default sort before 1.25 is an introsort: median-of-3 quicksort with Hoare partitions, insertion sort
    for partitions of at most 16 elements, heapsort for a partition popped from the stack past a depth of
    ``2 * floor(log2(n))``. It is not stable. A segment without equal values, or of at most 16 elements
    (insertion sort is stable), has only one possible result and is ordered by a stable sort; the others are
    partitioned as numpy does it, all segments of one recursion level at once. ``values`` are compared as float32
    (the dtype of the original's scores) and must not hold NaN.
    """
    values = np.asarray(values, dtype=np.float32)
    lengths = np.diff(bounds)
    segment = np.repeat(np.arange(len(lengths), dtype=np.uint64), lengths)
    key = (segment << 32) | _float32_key(values)
    stable = np.argsort(key, kind="stable")
    ordered = key[stable]
    tie = ordered[1:] == ordered[:-1]
    tied = np.zeros(len(values), dtype=bool)
    tied[stable[1:][tie]] = tied[stable[:-1][tie]] = True
    tied_count = np.concatenate([[0], np.cumsum(tied)])
    emulate = (lengths > _INSERTION_MAX) & (tied_count[bounds[1:]] > tied_count[bounds[:-1]])
    starts, lengths = bounds[:-1][emulate], lengths[emulate]
    for batch in _batches(lengths, _SORT_BATCH):
        positions, _ = _ranges(starts[batch], lengths[batch])
        local_starts = np.cumsum(lengths[batch]) - lengths[batch]
        stable[positions] = positions[_introsort(values[positions], tied[positions], local_starts, lengths[batch])]
    return stable


def _batches(sizes: np.ndarray, limit: int) -> Iterator[slice]:
    """Consecutive runs of ``sizes`` adding up to at most ``limit`` (or one item, if larger)."""
    ends = np.cumsum(sizes)
    start = 0
    while start < len(ends):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + limit, "right")), start + 1)
        yield slice(start, stop)
        start = stop


def _float32_key(values: np.ndarray) -> np.ndarray:
    """uint64 keys below 2**32 that sort like the float32 ``values`` (-0.0 equal to 0.0; no NaN)."""
    bits = (values + np.float32(0)).view(np.uint32).astype(np.uint64)
    return np.where(bits >> 31, bits ^ 0xFFFFFFFF, bits | (1 << 31))


def descending_argsort(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``np.argsort(values[s:e])[::-1] + s`` per segment, with numpy < 1.25's tie order (:func:`numpy1_argsort`)."""
    ascending = numpy1_argsort(values, bounds)
    positions, segment = _ranges(bounds[:-1], np.diff(bounds))
    return ascending[bounds[:-1][segment] + bounds[1:][segment] - 1 - positions]


def _introsort(values: np.ndarray, tied: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """numpy's ``aquicksort`` of the segments ``[start, start + length)`` that tile ``values``; returns the
    permutation.

    A segment is a quicksort partition still to be sorted, with the recursion depth left and whether numpy would
    pop it from its stack (the larger half of a partition) rather than continue with it (the smaller half): only
    popped segments check the depth. A segment without ``tied`` elements has a unique order and is finished by
    the final stable sort, like the short ones numpy insertion-sorts.
    """
    perm = np.arange(len(values))
    block = np.arange(len(values), dtype=np.uint64)  # positions with one block id are finished by a stable sort
    lo, hi = start, start + length - 1
    depth = 2 * (np.frexp(length.astype(np.float64))[1] - 1)  # 2 * floor(log2(n)), as npy_get_msb
    popped = np.ones(len(lo), dtype=bool)
    while len(lo):
        positions, segment = _ranges(lo, hi - lo + 1)
        has_tie = np.logical_or.reduceat(tied[perm[positions]], np.cumsum(hi - lo + 1) - (hi - lo + 1))
        heap = popped & (depth < 0) & has_tie
        split = ~heap & has_tie & (hi - lo + 1 > _INSERTION_MAX)
        in_finish = (~heap & ~split)[segment]
        block[positions[in_finish]] = lo[segment[in_finish]].astype(np.uint64)
        for a, b in zip(lo[heap], hi[heap]):
            _heapsort(values, perm, int(a), int(b))
        if not split.any():
            break
        in_split = split[segment]
        renumbered = np.cumsum(split) - 1
        lo, hi, depth, popped = _partition(values, perm, lo[split], hi[split], depth[split], positions[in_split],
                                           renumbered[segment[in_split]])
    return perm[np.argsort((block << 32) | _float32_key(values[perm]), kind="stable")]


def _swap(perm: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
    perm[i], perm[j] = perm[j], perm[i].copy()


def _swap_if_less(values: np.ndarray, perm: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
    """``if v[perm[i]] < v[perm[j]]: swap(perm[i], perm[j])`` per segment."""
    less = values[perm[i]] < values[perm[j]]
    _swap(perm, i[less], j[less])


def _partition(values: np.ndarray, perm: np.ndarray, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray,
               positions: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One numpy quicksort partition of each ``perm[lo..hi]`` (longer than 16), in place; ``positions`` lists
    them all, ``segment`` says whose each is.

    Median of three at ``lo``, ``mid = lo + (hi - lo) // 2``, ``hi``; the pivot goes to ``hi - 1``; Hoare scans
    from ``lo + 1`` up (stopping at values ``>= pivot``) and from ``hi - 2`` down (stopping at ``<= pivot``),
    swapping until they cross; the pivot then goes to where the upward scan stopped. Returns the two halves of
    every segment with ``depth - 1``, those of two or more elements; the larger half (the left one on equal
    sizes) is the one numpy pushes on its stack.
    """
    mid = lo + ((hi - lo) >> 1)
    _swap_if_less(values, perm, mid, lo)
    _swap_if_less(values, perm, hi, mid)
    _swap_if_less(values, perm, mid, lo)
    pivot = values[perm[mid]]
    _swap(perm, mid, hi - 1)
    stop = _hoare_scan(values, perm, lo, hi, pivot, positions, segment)
    _swap(perm, stop, hi - 1)
    left_smaller = stop - lo < hi - stop
    halves = (np.concatenate([lo, stop + 1]), np.concatenate([stop - 1, hi]),
              np.concatenate([depth, depth]) - 1, np.concatenate([~left_smaller, left_smaller]))
    keep = halves[1] > halves[0]
    return tuple(h[keep] for h in halves)


def _hoare_scan(values: np.ndarray, perm: np.ndarray, lo: np.ndarray, hi: np.ndarray, pivot: np.ndarray,
                positions: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Run numpy's Hoare loop on every segment at once; swaps in place, returns where the upward scan stopped.

    The k-th stop of the upward scan pairs with the k-th stop of the downward scan, both read on the array
    before any swap (the scans only meet swapped elements after crossing). With ``K`` the first pair that
    crossed, pairs ``0..K-1`` are swapped and the upward scan ends at ``L[K]``, or at ``R[K-1]`` (a swapped
    element) if that comes first.
    """
    v, p = values[perm[positions]], pivot[segment]
    last = np.cumsum(hi - lo + 1) - 1  # where each segment's hi sits in ``positions``
    up, down = ~(v < p), ~(p < v)
    up[last - (hi - lo)] = up[last] = False  # the upward scan runs over lo + 1 .. hi - 1
    down[last] = down[last - 1] = False  # the downward scan over hi - 2 .. lo
    up_pos, down_pos = positions[up], positions[down]
    n_up, n_down = np.bincount(segment[up], minlength=len(lo)), np.bincount(segment[down], minlength=len(lo))
    up_start, down_end = np.cumsum(n_up) - n_up, np.cumsum(n_down)
    k, pair_segment = _ranges(np.zeros(len(lo), dtype=np.int64), np.minimum(n_up, n_down))
    left = up_pos[up_start[pair_segment] + k]
    right = down_pos[down_end[pair_segment] - 1 - k]
    crossed = np.flatnonzero(left >= right)
    first = crossed[np.concatenate([[True], pair_segment[crossed][1:] != pair_segment[crossed][:-1]])]
    cross_at = np.empty(len(lo), dtype=np.int64)
    cross_at[pair_segment[first]] = k[first]
    swap = k < cross_at[pair_segment]
    _swap(perm, left[swap], right[swap])
    stop = up_pos[up_start + cross_at]
    after_swap = cross_at > 0
    stop[after_swap] = np.minimum(stop[after_swap], down_pos[(down_end - cross_at)[after_swap]])
    return stop


def _heapsort(values: np.ndarray, perm: np.ndarray, lo: int, hi: int) -> None:
    """numpy's ``aheapsort`` of ``perm[lo..hi]`` in place (a 1-based heap ``a[1..n]`` of local indices)."""
    items = perm[lo:hi + 1].copy()
    v = values[items].tolist()
    a = [-1, *range(len(items))]

    def sift(i: int, n: int, item: int) -> None:
        j = 2 * i
        while j <= n:
            if j < n and v[a[j]] < v[a[j + 1]]:
                j += 1
            if not v[item] < v[a[j]]:
                break
            a[i], i, j = a[j], j, 2 * j
        a[i] = item

    n = len(items)
    for i in range(n // 2, 0, -1):
        sift(i, n, a[i])
    while n > 1:
        item, a[n] = a[n], a[1]
        n -= 1
        sift(1, n, item)
    perm[lo:hi + 1] = items[a[1:]]


# ---------------------------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Layout:
    """Where the (frame, class) groups holding both predictions and objects sit, and the per-class ranking."""

    pred_start: np.ndarray  # per group: first prediction
    pred_count: np.ndarray
    gt_start: np.ndarray  # per group: first object
    gt_count: np.ndarray
    rank: np.ndarray  # predictions, class by class (ascending), each by descending score as the original ranks them
    class_bounds: dict[int, tuple[int, int]]  # class -> its slice of ``rank``
    classes: np.ndarray  # every class present in predictions or ground truth

    @classmethod
    def build(cls, truth: _Truth, preds: _Predictions) -> _Layout:
        pred_bounds, gt_bounds = _segment_bounds(preds.key), _segment_bounds(truth.key)
        pred_keys, gt_keys = preds.key[pred_bounds[:-1]], truth.key[gt_bounds[:-1]]
        _, p, g = np.intersect1d(pred_keys, gt_keys, assume_unique=True, return_indices=True)
        by_class = np.argsort(preds.labels, kind="stable")
        class_bounds = _segment_bounds(preds.labels[by_class])
        rank = by_class[descending_argsort(preds.scores[by_class], class_bounds)]
        labels = preds.labels[by_class[class_bounds[:-1]]] if len(rank) else np.zeros(0, np.int64)
        return cls(pred_bounds[p], np.diff(pred_bounds)[p], gt_bounds[g], np.diff(gt_bounds)[g], rank,
                   {int(c): (int(s), int(e)) for c, s, e in zip(labels, class_bounds[:-1], class_bounds[1:])},
                   np.union1d(preds.labels, truth.labels))

    def chunks(self) -> Iterator[slice]:
        """Runs of groups with at most ``_PAIR_CHUNK`` (prediction, object) pairs each (or one group)."""
        return _batches(self.pred_count * self.gt_count, _PAIR_CHUNK)


def iou_plus_one(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise IoU of float32 ``[x1, y1, x2, y2]`` boxes in the original's convention (module docstring)."""
    pred, gt = pred.copy(), gt.copy()
    pred[:, 2:] += 1
    gt[:, 2:] += 1
    area_pred = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
    area_gt = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    wh = np.maximum(np.minimum(pred[:, 2:], gt[:, 2:]) - np.maximum(pred[:, :2], gt[:, :2]) + 1, 0)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (area_pred + area_gt - inter)


def _match(truth: _Truth, preds: _Predictions, layout: _Layout, ignored: np.ndarray,
           empty_fp_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one bucket; returns per prediction ``matched`` and the original's ``pred_ignore``.

    ``pred_ignore`` is the matched object's ignore flag (0/1), or for an unmatched prediction 0, 1 or the tie
    fraction, or ``empty_fp_weight`` in a frame without objects of its class.
    """
    matched = np.zeros(len(preds.scores), dtype=bool)
    pred_ignore = np.full(len(preds.scores), empty_fp_weight)
    selected = np.zeros(len(truth.labels), dtype=bool)
    ignored_before = np.concatenate([[0], np.cumsum(ignored)])
    for groups in layout.chunks():
        pred, gt, k, group = _pairs(layout, groups)
        iou = iou_plus_one(preds.boxes[pred], truth.boxes[gt])
        ign = ignored[gt]
        starts = np.flatnonzero(np.concatenate([[True], pred[1:] != pred[:-1]]))
        best_ignored = np.maximum.reduceat(np.where(ign, iou, -1), starts)
        best_kept = np.maximum.reduceat(np.where(ign, -1, iou), starts)
        g_start, g_count = layout.gt_start[groups][group[starts]], layout.gt_count[groups][group[starts]]
        tie = (ignored_before[g_start + g_count] - ignored_before[g_start]) / g_count.astype(np.float64)
        pred_ignore[pred[starts]] = np.where(best_kept > best_ignored, 0.0,
                                             np.where(best_ignored > best_kept, 1.0, tie))
        _greedy(pred, gt, k, group, iou, ign, selected, matched, pred_ignore)
    return matched, pred_ignore


def _pairs(layout: _Layout, groups: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (prediction, object) pair of the groups, prediction-major: prediction, object, the object's index in
    its group (annotation order) and the group."""
    p_start, p_count = layout.pred_start[groups], layout.pred_count[groups]
    g_start, g_count = layout.gt_start[groups], layout.gt_count[groups]
    offset, group = _ranges(np.zeros(len(p_count), dtype=np.int64), p_count * g_count)
    k = offset % g_count[group]
    return p_start[group] + offset // g_count[group], g_start[group] + k, k, group


def _greedy(pred: np.ndarray, gt: np.ndarray, k: np.ndarray, group: np.ndarray, iou: np.ndarray, ign: np.ndarray,
            selected: np.ndarray, matched: np.ndarray, pred_ignore: np.ndarray) -> None:
    """The original's greedy assignment, in place; one step handles one prediction of every group.

    Only pairs with IoU ``>= 0.5`` can match, and each prediction takes the free object of highest
    :func:`_priority`: the object the original's loop over ``k`` ends on. Step ``t`` handles the ``t``-th
    prediction (by rank) of every group among those with such pairs.
    """
    candidate = np.flatnonzero(iou >= IOU_THRESHOLD)
    if not len(candidate):
        return
    c_pred, c_group = pred[candidate], group[candidate]
    first_pair = np.flatnonzero(np.concatenate([[True], c_pred[1:] != c_pred[:-1]]))
    owner = c_group[first_pair]
    index = np.arange(len(first_pair))
    group_first = np.concatenate([[True], owner[1:] != owner[:-1]])
    step = np.repeat(index - np.maximum.accumulate(np.where(group_first, index, 0)),
                     np.diff(np.append(first_pair, len(candidate))))
    order = np.argsort(step.astype(np.uint16) if step.max() < 1 << 16 else step, kind="stable")  # radix sort
    step, c_pred, c_gt = step[order], c_pred[order], gt[candidate][order]
    c_priority, c_ign = _priority(iou[candidate], ign[candidate], k[candidate])[order], ign[candidate][order]
    runs = np.flatnonzero(np.concatenate([[True], c_pred[1:] != c_pred[:-1]]))  # one run per prediction
    edges = np.searchsorted(step, np.arange(step.max() + 2))
    run_edges = np.searchsorted(runs, edges)
    for a, b, ra, rb in zip(edges[:-1], edges[1:], run_edges[:-1], run_edges[1:]):
        priority = np.where(selected[c_gt[a:b]], 0, c_priority[a:b])
        starts = runs[ra:rb] - a
        best = np.repeat(np.maximum.reduceat(priority, starts), np.diff(np.append(starts, b - a)))
        chosen = a + np.flatnonzero((priority == best) & (priority > 0))
        selected[c_gt[chosen]] = True
        matched[c_pred[chosen]] = True
        pred_ignore[c_pred[chosen]] = c_ign[chosen]


def _priority(iou: np.ndarray, ignored: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Which object a prediction takes first, as one positive uint64 per pair (distinct within a prediction).

    Highest IoU (the float32 bits order positive floats); on equal IoU a non-ignored object, the first in
    annotation order; else the last ignored one (the original replaces an ignored match by any later tie).
    """
    kept = ~ignored
    tie_break = np.where(kept, (1 << 31) - 1 - k, k).astype(np.uint64) | (kept.astype(np.uint64) << 31)
    return (iou.astype(np.float32).view(np.uint32).astype(np.uint64) << 32) | tie_break


# ---------------------------------------------------------------------------------------------------------------
# Average precision
# ---------------------------------------------------------------------------------------------------------------

def _bucket_ap(truth: _Truth, preds: _Predictions, layout: _Layout, bucket: tuple[float, float]) -> np.ndarray:
    """AP per class id ``0..max`` of one bucket (nan where undefined), as the original's ``ap`` array."""
    ignored = truth.ignored(bucket)
    matched, pred_ignore = _match(truth, preds, layout, ignored, empty_weight(truth.table, bucket))
    positives = np.bincount(truth.labels[~ignored], minlength=31)
    matched, pred_ignore = matched[layout.rank], pred_ignore[layout.rank]
    counted = pred_ignore != 1
    tps = matched & counted
    fps = (~matched & counted) * np.where(pred_ignore == 0, 1, pred_ignore)
    ap = np.full(int(layout.classes.max()) + 1 if len(layout.classes) else 1, np.nan)
    for label in layout.classes:
        if positives[label] == 0:
            continue
        start, stop = layout.class_bounds.get(int(label), (0, 0))
        tp, fp = np.cumsum(tps[start:stop]), np.cumsum(fps[start:stop])
        ap[label] = voc_ap(tp / (fp + tp + np.spacing(1)), tp / float(positives[label]))
    return ap


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-point AP: the area under the precision envelope, summed over the steps of recall."""
    mpre = np.concatenate(([0], precision, [0]))
    mrec = np.concatenate(([0], recall, [1]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return numpy1_sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1])


def numpy1_sum(values: np.ndarray) -> float:
    """``np.sum`` of a 1-D float64 array, bit for bit as numpy < 2.3 computes it.

    numpy adds the array in buffers of 8192 elements to an initial 0, each buffer by pairwise summation. numpy
    2.3 changed the buffering, which moves the last bit of sums over more than 8192 elements (here: classes with
    more than 8192 recall steps).
    """
    total = 0.0
    for start in range(0, len(values), _SUM_BUFFER):
        total += _pairwise_sum(values[start:start + _SUM_BUFFER])
    return total


def _pairwise_sum(values: np.ndarray) -> float:
    """numpy's ``pairwise_sum``: below 8 elements in order; up to 128 in 8 interleaved lanes, combined as a tree,
    then the rest in order; above, the two halves (the first a multiple of 8 long) recursively."""
    n = len(values)
    if n <= _PAIRWISE_BLOCK:
        whole = n - n % 8 if n >= 8 else 0
        r = np.cumsum(values[:whole].reshape(-1, 8), axis=0)[-1].tolist() if whole else [0.0] * 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for value in values[whole:].tolist():  # not sum(): Python >= 3.12 compensates float sums
            total += value
        return total
    half = n // 2 - (n // 2) % 8
    return _pairwise_sum(values[:half]) + _pairwise_sum(values[half:])
