"""ImageNet VID AP50 with motion buckets (vfe_hub.evaluation): hand-computed cases, a literal reference of the
original algorithm, the dataset readers and FGFA's motion-IoU table (served from 127.0.0.1)."""
from __future__ import annotations

import hashlib
import json
import math
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from vfe_hub.errors import ChecksumError, DatasetError
from vfe_hub.evaluation import (BUCKETS, VidFrame, VidGroundTruth, compute_motion_iou, evaluate, load_coco_vid,
                                load_vid_xml, motion_iou_table)
from vfe_hub.evaluation.imagenet_vid import empty_weight, iou_plus_one, numpy1_argsort, numpy1_sum, voc_ap
from vfe_hub.evaluation.imagenet_vid_data import (FGFA_COMMIT, FGFA_MOTION_IOU_FILE, FGFA_MOTION_IOU_SHA256,
                                                  FGFA_REPO, WORDNET_IDS, read_motion_iou_mat)
from vfe_hub.registry import IMAGENET_VID_CLASSES

#: FGFA's motion-IoU table, a copy kept with the tests (provenance and licence: tests/data/README.md)
FGFA_TABLE = Path(__file__).resolve().parent / "data" / "imagenet_vid" / "vid_groundtruth_motion_iou.mat"

# np.argsort(kind="quicksort") of numpy 1.23.5 (the numpy of the original evaluation) on arrays with ties:
# ((arange(150) * 37) % 11) as float32, and KILLER, a median-of-3 adversary with ties that drives numpy's introsort
# into its heapsort fallback.
KILLER = [
    0, 54, 1, 53, 3, 52, 5, 52, 7, 52, 9, 51, 11, 50, 13, 49, 15, 49, 16, 48, 18, 47, 19, 46, 20, 21, 67, 66, 66,
    65, 65, 65, 65, 64, 63, 63, 62, 61, 61, 60, 59, 58, 58, 57, 57, 57, 56, 56, 56, 0, 2, 4, 6, 8, 10, 12, 14, 16,
    17, 18, 19, 20, 45, 44, 44, 43, 43, 42, 41, 40, 40, 39, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 30, 29, 29, 29,
    28, 28, 27, 26, 25, 24, 24, 23, 22, 22, 22, 21, 55, 20
]
KILLER_ARGSORT = [
    0, 49, 2, 50, 4, 51, 6, 52, 8, 53, 10, 54, 12, 55, 14, 56, 16, 18, 57, 58, 59, 20, 22, 60, 61, 99, 24, 97, 25,
    95, 96, 94, 93, 92, 91, 90, 89, 88, 86, 87, 84, 85, 83, 82, 81, 80, 79, 78, 77, 76, 75, 74, 73, 72, 71, 70, 69,
    68, 67, 65, 66, 64, 63, 62, 23, 21, 19, 15, 17, 13, 11, 9, 7, 5, 3, 1, 98, 48, 47, 46, 45, 44, 43, 41, 42, 40,
    39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26
]
TIES_ARGSORT = [
    0, 77, 22, 55, 88, 99, 110, 11, 33, 66, 132, 143, 44, 121, 124, 58, 25, 146, 80, 3, 91, 135, 102, 69, 113, 47,
    36, 14, 50, 94, 72, 83, 105, 116, 127, 138, 61, 39, 149, 17, 28, 6, 119, 86, 97, 75, 108, 64, 9, 31, 130, 53,
    20, 42, 141, 89, 111, 133, 12, 67, 45, 78, 100, 144, 122, 23, 1, 56, 34, 81, 103, 92, 147, 15, 136, 70, 26, 114,
    125, 59, 48, 4, 37, 117, 139, 7, 128, 95, 106, 18, 40, 29, 51, 84, 62, 73, 10, 43, 76, 142, 65, 131, 54, 98, 21,
    87, 32, 120, 109, 2, 90, 57, 46, 134, 123, 35, 68, 112, 13, 145, 24, 79, 101, 137, 5, 93, 38, 82, 16, 126, 60,
    104, 148, 71, 27, 115, 49, 140, 41, 63, 129, 30, 8, 118, 107, 96, 85, 19, 52, 74
]


# ---------------------------------------------------------------------------------------------------------------
# Building ground truth and predictions
# ---------------------------------------------------------------------------------------------------------------

def make_gt(frames: list[list[tuple[list[float], int]]], videos: list[int] | None = None) -> VidGroundTruth:
    """Ground truth from ``[(box xyxy, label), ...]`` per frame; ``videos`` are the frame counts (one video)."""
    videos = videos or [len(frames)]
    out, runs, image_id = [], [], 1
    for v, count in enumerate(videos):
        runs.append((f"val/v{v}", image_id, count))
        for frame_id in range(count):
            objects = frames[image_id - 1]
            boxes = np.array([box for box, _ in objects], dtype=np.float32).reshape(-1, 4)
            labels = np.array([label for _, label in objects], dtype=np.int64)
            out.append(VidFrame(f"val/v{v}/{frame_id:06d}.JPEG", f"val/v{v}", frame_id, 320, 240, boxes, labels,
                                np.arange(len(objects), dtype=np.int64)))
            image_id += 1
    return VidGroundTruth(out, runs)


def preds(*items: tuple[int, list[float], float, int]) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{image_id: (boxes, scores, labels)}`` from ``(image_id, box, score, label)`` items, in order."""
    grouped = defaultdict(list)
    for image_id, box, score, label in items:
        grouped[image_id].append((box, score, label))
    return {i: (np.array([b for b, _, _ in v], np.float32), np.array([s for _, s, _ in v], np.float32),
                np.array([c for _, _, c in v])) for i, v in grouped.items()}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_same_scores(got: dict[str, float], expected: dict[str, float]) -> None:
    """Every value bit for bit equal (nan equal to nan)."""
    assert got.keys() == expected.keys()
    assert {k: (got[k], expected[k]) for k in got if not same(got[k], expected[k])} == {}


A, B = [0, 0, 40, 40], [50, 50, 90, 90]
FAR = [0, 60, 20, 80]  # no overlap with A or B


# ---------------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------------

def test_perfect_detector_scores_one_in_every_bucket():
    gt = make_gt([[(A, 1)], [(B, 2)], [(A, 1), (B, 3)]])
    table = [[0.5], [0.8], [0.95, 0.3]]
    results = preds((1, A, 0.9, 1), (2, B, 0.8, 2), (3, A, 0.7, 1), (3, B, 0.6, 3))
    scores = evaluate(gt, results, motion_iou=table)
    # precision is tp / (fp + tp + eps): one object found gives 1 / (1 + eps) < 1, two give 2 / (2 + eps) == 1
    assert scores["AP50/antelope"] == scores["AP50/bear"] == 1 / (1 + np.spacing(1)) < 1
    assert scores["AP50/airplane"] == 1.0
    assert [scores[k] for k in ("AP50", "AP50_fast", "AP50_medium", "AP50_slow")] == pytest.approx([1] * 4, abs=1e-15)
    assert all(math.isnan(scores[f"AP50/{name}"]) for name in IMAGENET_VID_CLASSES[3:])
    assert len(scores) == 4 + 30


def test_false_positive_above_true_positive_halves_ap():
    gt = make_gt([[(A, 1)]])
    scores = evaluate(gt, preds((1, FAR, 0.9, 1), (1, A, 0.8, 1)), motion_iou=[[0.95]])
    assert scores["AP50"] == scores["AP50_slow"] == scores["AP50/airplane"] == 0.5
    assert math.isnan(scores["AP50_fast"]) and math.isnan(scores["AP50_medium"])


def test_duplicate_detection_is_a_false_positive():
    gt = make_gt([[(A, 1), (B, 1)]])
    a_shifted = [1, 1, 41, 41]
    scores = evaluate(gt, preds((1, A, 0.9, 1), (1, a_shifted, 0.8, 1), (1, B, 0.7, 1)), motion_iou=[[1.0, 1.0]])
    # tp 1,1,2 fp 0,1,1: recall .5 at precision 1, recall 1 at precision 2/3
    assert scores["AP50"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)


def test_plus_one_iou_convention_at_the_threshold():
    box, pred = np.array([[0, 0, 10, 10]], np.float32), np.array([[0, 0, 10, 4]], np.float32)
    assert iou_plus_one(pred, box)[0] == 0.5  # (12 * 6) / (12 * 12); the plain IoU is 40 / 100
    gt = make_gt([[([0, 0, 10, 10], 1)]])
    assert evaluate(gt, preds((1, [0, 0, 10, 4], 0.9, 1)), motion_iou=[[0.95]])["AP50"] == pytest.approx(1, abs=1e-15)
    assert evaluate(gt, preds((1, [0, 0, 10, 3], 0.9, 1)), motion_iou=[[0.95]])["AP50"] == 0.0  # 60 / 144
    just_below = np.nextafter(np.float32(4), np.float32(0))  # IoU 0.4999999801 in float64, 0.5 in float32
    assert iou_plus_one(np.array([[0, 0, 10, just_below]], np.float32), box)[0] == 0.5
    assert evaluate(gt, preds((1, [0, 0, 10, just_below], 0.9, 1)), motion_iou=[[0.95]])["AP50"] > 0.99


def test_ignored_objects_and_fractional_false_positive_weights():
    # A is fast (0.5), B is slow (0.95). NEAR_B overlaps B a little (IoU 0.075) and A not at all.
    near_b = [80, 80, 95, 95]
    gt = make_gt([[(A, 1), (B, 1)]])
    results = preds((1, FAR, 0.95, 1), (1, near_b, 0.9, 1), (1, A, 0.8, 1), (1, B, 0.7, 1))
    scores = evaluate(gt, results, motion_iou=[[0.5, 0.95]])
    # all: FP 1, FP 1, TP, TP -> precision 1/3 at recall .5, 1/2 at recall 1
    assert scores["AP50"] == pytest.approx(0.5, abs=1e-15)
    # fast: FAR ties (IoU 0 with the kept A and the ignored B): weight 1/2; NEAR_B is closer to the ignored B:
    # ignored; A TP; B matched to an ignored object: ignored -> precision 1 / 1.5
    assert scores["AP50_fast"] == pytest.approx(2 / 3, abs=1e-15)
    # slow: FAR 1/2; NEAR_B FP 1 (closer to the kept B); A ignored; B TP -> precision 1 / 2.5
    assert scores["AP50_slow"] == pytest.approx(0.4, abs=1e-15)
    assert math.isnan(scores["AP50_medium"])  # no positives


@pytest.mark.parametrize("motion", [[0.95, 0.5], [0.5, 0.95]])
def test_equal_iou_prefers_the_object_that_is_not_ignored(motion):
    gt = make_gt([[(A, 1), (A, 1)]])  # the same box twice, one of them ignored in the fast and the slow bucket
    scores = evaluate(gt, preds((1, A, 0.9, 1)), motion_iou=[motion])
    assert scores["AP50_fast"] == scores["AP50_slow"] == pytest.approx(1, abs=1e-15)
    assert scores["AP50"] == pytest.approx(0.5, abs=1e-15)  # one of two objects found, at precision 1


X, Y, Z = [0, 0, 20, 20], [10, 0, 30, 20], [0, 0, 20, 16]
BETWEEN = [5, 0, 25, 20]  # the same IoU (0.63) with X and Y, 0.53 with Z


@pytest.mark.parametrize("objects, fast, slow", [
    ([X, Y, Z], 0.0, 0.5),  # X, Y fast-ignored: BETWEEN takes the last (Y); slow-kept: the first (X)
    ([Y, X, Z], 1.0, 1.0),  # now the choice leaves X free for the second prediction, or takes it from it
])
def test_equal_iou_takes_the_first_kept_or_the_last_ignored_object(objects, fast, slow):
    gt = make_gt([[(box, 1) for box in objects]])
    # the second prediction is X itself (IoU 1 with X, 0.82 with Z): it takes X if X is still free, else Z
    results = preds((1, BETWEEN, 0.9, 1), (1, X, 0.8, 1))
    scores = evaluate(gt, results, motion_iou=[[0.95, 0.95, 0.5]])
    assert [scores["AP50_fast"], scores["AP50_slow"]] == pytest.approx([fast, slow], abs=1e-15)


def test_frames_without_objects_weigh_false_positives_by_empty_weight():
    gt = make_gt([[(A, 1)], [(B, 1)], []])
    table = [[0.5], [0.95], [0.0]]  # frame 3 has no objects: the 0.0 placeholder
    assert [empty_weight(table, b) for b in BUCKETS.values()] == [0.0, 2 / 3, 0.0, 1 / 3]
    results = preds((3, A, 0.9, 1), (1, A, 0.8, 1), (2, B, 0.7, 1))
    scores = evaluate(gt, results, motion_iou=table)
    assert scores["AP50"] == pytest.approx(2 / 3, abs=1e-15)  # weight 1 (share 1 is reset to 0, i.e. 1)
    assert scores["AP50_fast"] == pytest.approx(1 / (1 + 2 / 3), abs=1e-15)
    assert scores["AP50_slow"] == pytest.approx(1 / (1 + 1 / 3), abs=1e-15)
    assert math.isnan(scores["AP50_medium"])


def test_bucket_bounds_are_inclusive():
    gt = make_gt([[(A, 1), (B, 1)]])
    scores = evaluate(gt, preds((1, A, 0.9, 1)), motion_iou=[[0.7, 0.9]])
    assert [scores["AP50_fast"], scores["AP50_medium"], scores["AP50_slow"]] == pytest.approx([1, 0.5, 0], abs=1e-15)


def test_empty_predictions():
    gt = make_gt([[(A, 1)], [(B, 2)]])
    scores = evaluate(gt, {}, motion_iou=[[0.5], [0.95]])
    assert scores["AP50"] == scores["AP50_fast"] == scores["AP50_slow"] == 0.0
    assert scores["AP50/airplane"] == scores["AP50/antelope"] == 0.0
    assert math.isnan(scores["AP50_medium"]) and math.isnan(scores["AP50/bear"])
    no_objects = evaluate(make_gt([[]]), preds((1, A, 0.9, 1)), motion_iou=[[0.0]])
    assert all(math.isnan(v) for v in no_objects.values())


def test_coco_results_equal_array_results():
    gt = make_gt([[(A, 1), (B, 4)], [(B, 4)]])
    table = [[0.5, 0.8], [0.95]]
    arrays = preds((1, [0.5, 1.25, 40.5, 39.75], 0.9, 1), (1, B, 0.3, 4), (2, FAR, 0.8, 4), (2, B, 0.7, 4))
    coco = [{"image_id": i, "category_id": int(c), "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                                           float(b[3] - b[1])], "score": float(s)}
            for i, (boxes, scores, labels) in arrays.items() for b, s, c in zip(boxes, scores, labels)]
    assert_same_scores(evaluate(gt, coco, motion_iou=table), evaluate(gt, arrays, motion_iou=table))


# ---------------------------------------------------------------------------------------------------------------
# numpy < 1.25 sort and sum
# ---------------------------------------------------------------------------------------------------------------

def test_argsort_reproduces_numpy_1_23_tie_order():
    ties = ((np.arange(150) * 37) % 11).astype(np.float32)
    killer = np.array(KILLER, dtype=np.float32)
    for values, expected in ((ties, TIES_ARGSORT), (killer, KILLER_ARGSORT)):
        assert reference_argsort(values.tolist()) == expected
        assert numpy1_argsort(values, np.array([0, len(values)])).tolist() == expected


def test_argsort_of_many_segments_matches_the_literal_introsort():
    rng = np.random.default_rng(0)
    for _ in range(30):
        parts = [(rng.integers(0, int(rng.integers(1, 30)), int(rng.integers(0, 300))) / 7).astype(np.float32)
                 for _ in range(int(rng.integers(1, 8)))]
        parts += [np.array(KILLER, np.float32), np.array(KILLER, np.float32)[::-1].copy()]
        bounds = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
        expected = np.concatenate([np.array(reference_argsort(p.tolist()), dtype=np.int64) + s
                                   for p, s in zip(parts, bounds)])
        assert np.array_equal(numpy1_argsort(np.concatenate(parts), bounds), expected)


def test_ap_of_more_than_8192_recall_steps_is_summed_as_numpy_1_sums():
    n = 9000
    tp = np.arange(1, n + 1)
    fp = np.cumsum((np.arange(n) * 7919) % 13 / 10.0)
    # calc_detection_vid_ap under numpy 1.23.5 gives 0.625481010737969 (numpy 2.4's np.sum: ...9689)
    assert voc_ap(tp / (fp + tp + np.spacing(1)), tp / float(n)) == 0.625481010737969


def test_sum_matches_numpy_1_pairwise_summation():
    values = ((np.arange(20001) * 7919) % 1009) / 7.0 + 1e-3 * np.sqrt(np.arange(20001))
    assert numpy1_sum(values) == 1442039.4028719647  # np.sum of numpy 1.23.5 (2.4 gives 1442039.402871965)
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 8, 9, 127, 128, 129, 1000, 8192, 8193, 20001):
        values = rng.random(n) * rng.integers(1, 1000, n)
        assert numpy1_sum(values) == reference_sum(values.tolist())


# ---------------------------------------------------------------------------------------------------------------
# A literal reference of the original evaluator
# ---------------------------------------------------------------------------------------------------------------

def reference_argsort(v: list[float]) -> list[int]:
    """numpy < 1.25 ``argsort(kind="quicksort")``, statement by statement: an introsort over index array ``a``."""
    a = list(range(len(v)))
    if len(a) < 2:
        return a
    lo, hi, depth, stack = 0, len(a) - 1, 2 * (len(a).bit_length() - 1), []
    while True:
        if depth < 0:
            reference_heapsort(v, a, lo, hi)
        else:
            while hi - lo > 15:
                mid = lo + ((hi - lo) >> 1)
                if v[a[mid]] < v[a[lo]]:
                    a[mid], a[lo] = a[lo], a[mid]
                if v[a[hi]] < v[a[mid]]:
                    a[hi], a[mid] = a[mid], a[hi]
                if v[a[mid]] < v[a[lo]]:
                    a[mid], a[lo] = a[lo], a[mid]
                pivot = v[a[mid]]
                i, j = lo, hi - 1
                a[mid], a[j] = a[j], a[mid]
                while True:
                    i += 1
                    while v[a[i]] < pivot:
                        i += 1
                    j -= 1
                    while pivot < v[a[j]]:
                        j -= 1
                    if i >= j:
                        break
                    a[i], a[j] = a[j], a[i]
                a[i], a[hi - 1] = a[hi - 1], a[i]
                depth -= 1
                if i - lo < hi - i:
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            for i in range(lo + 1, hi + 1):
                item, j = a[i], i
                while j > lo and v[item] < v[a[j - 1]]:
                    a[j] = a[j - 1]
                    j -= 1
                a[j] = item
        if not stack:
            return a
        lo, hi, depth = stack.pop()


def reference_heapsort(v: list[float], a: list[int], lo: int, hi: int) -> None:
    n = hi - lo + 1
    heap = [None] + a[lo:hi + 1]

    def down(i: int, n: int, item: int) -> None:
        j = 2 * i
        while j <= n:
            if j < n and v[heap[j]] < v[heap[j + 1]]:
                j += 1
            if v[item] < v[heap[j]]:
                heap[i] = heap[j]
                i, j = j, 2 * j
            else:
                break
        heap[i] = item

    for i in range(n // 2, 0, -1):
        down(i, n, heap[i])
    while n > 1:
        item = heap[n]
        heap[n] = heap[1]
        n -= 1
        down(1, n, item)
    a[lo:hi + 1] = heap[1:]


def reference_sum(values: list[float]) -> float:
    """numpy < 2.3 ``np.sum`` of float64: buffers of 8192 added to 0, each summed pairwise."""
    def pairwise(x: list[float]) -> float:
        if len(x) < 8:
            total = 0.0
            for value in x:
                total += value
            return total
        if len(x) <= 128:
            lanes = x[:8]
            i = 8
            while i < len(x) - len(x) % 8:
                lanes = [lanes[j] + x[i + j] for j in range(8)]
                i += 8
            total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
            for value in x[i:]:
                total += value
            return total
        half = len(x) // 2
        half -= half % 8
        return pairwise(x[:half]) + pairwise(x[half:])

    total = 0.0
    for start in range(0, len(values), 8192):
        total += pairwise(values[start:start + 8192])
    return total


def reference_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """maskrcnn-benchmark's ``boxlist_iou`` in float32 torch (``TO_REMOVE = 1``)."""
    p, g = torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(gt, dtype=torch.float32)
    area_p = (p[:, 2] - p[:, 0] + 1) * (p[:, 3] - p[:, 1] + 1)
    area_g = (g[:, 2] - g[:, 0] + 1) * (g[:, 3] - g[:, 1] + 1)
    lt = torch.max(p[:, None, :2], g[:, :2])
    rb = torch.min(p[:, None, 2:], g[:, 2:])
    wh = (rb - lt + 1).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return (inter / (area_p[:, None] + area_g - inter)).numpy()


def reference_bucket(gt: VidGroundTruth, results: dict, table: list[list[float]], lo: float, hi: float) -> list:
    """One bucket of the original ``calc_detection_vid_prec_rec`` + ``calc_detection_vid_ap``, loop by loop."""
    entries = [value for row in table for value in row]
    weight_empty = sum(1 for value in entries if lo <= value <= hi) / float(len(entries))
    weight_empty = 0 if weight_empty == 1 else weight_empty
    n_pos, score, match, ignore = defaultdict(float), defaultdict(list), defaultdict(list), defaultdict(list)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    for index, frame in enumerate(gt.frames):
        boxes, scores, labels = results.get(index + 1, empty)
        gt_ignore = [1.0 if (m < lo or m > hi) else 0.0 for m in table[index][:len(frame.labels)]]
        for label in sorted(set(labels.tolist()) | set(frame.labels.tolist())):
            mine = [i for i in range(len(labels)) if labels[i] == label]
            order = reference_argsort(scores[mine].tolist())[::-1]
            p_boxes, p_scores = boxes[mine][order], scores[mine][order]
            theirs = [k for k in range(len(frame.labels)) if frame.labels[k] == label]
            g_boxes, g_ignore = frame.boxes[theirs], [gt_ignore[k] for k in theirs]
            n_pos[label] += len(theirs) - sum(g_ignore)
            score[label] += p_scores.tolist()
            if not mine:
                continue
            if not theirs:
                match[label] += [0] * len(mine)
                ignore[label] += [weight_empty] * len(mine)
                continue
            p_boxes, g_boxes = p_boxes.copy(), g_boxes.copy()
            p_boxes[:, 2:] += 1
            g_boxes[:, 2:] += 1
            iou = reference_iou(p_boxes, g_boxes)
            taken = [False] * len(theirs)
            for j in range(len(mine)):
                best, best_ignored, best_kept, chosen = IOU, -1, -1, -1
                for k in range(len(theirs)):
                    if g_ignore[k] == 1 and iou[j, k] > best_ignored:
                        best_ignored = iou[j, k]
                    if g_ignore[k] == 0 and iou[j, k] > best_kept:
                        best_kept = iou[j, k]
                    if taken[k] or iou[j, k] < best:
                        continue
                    if iou[j, k] > best or chosen < 0 or g_ignore[chosen] == 1:
                        chosen = k
                    best = iou[j, k]
                if chosen >= 0:
                    taken[chosen] = True
                    match[label].append(1)
                    ignore[label].append(g_ignore[chosen])
                else:
                    match[label].append(0)
                    if best_kept > best_ignored:
                        ignore[label].append(0)
                    elif best_ignored > best_kept:
                        ignore[label].append(1)
                    else:
                        ignore[label].append(sum(g_ignore) / float(len(theirs)))
    ap = [math.nan] * (max(n_pos) + 1)
    for label in n_pos:
        if n_pos[label] == 0:
            continue
        order = reference_argsort(np.array(score[label], dtype=np.float32).tolist())[::-1]
        tp, fp, tps, fps = 0, 0.0, [], []
        for i in order:
            counted = ignore[label][i] != 1
            tp += match[label][i] == 1 and counted
            fp += (match[label][i] == 0 and counted) * (ignore[label][i] or 1)
            tps.append(tp)
            fps.append(fp)
        precision = [0.0] + [t / (f + t + np.spacing(1)) for t, f in zip(tps, fps)] + [0.0]
        recall = [0.0] + [t / n_pos[label] for t in tps] + [1.0]
        for i in range(len(precision) - 2, -1, -1):
            precision[i] = max(precision[i], precision[i + 1])
        ap[label] = reference_sum([(recall[i + 1] - recall[i]) * precision[i + 1]
                                   for i in range(len(recall) - 1) if recall[i + 1] != recall[i]])
    return ap


def reference_evaluate(gt: VidGroundTruth, results: dict, table: list[list[float]]) -> dict[str, float]:
    out, per_class = {}, None
    for name, (lo, hi) in BUCKETS.items():
        ap = reference_bucket(gt, results, table, lo, hi)
        kept = sum(not math.isnan(value) for value in ap)  # np.nanmean: nan entries count as 0 in the sum
        total = reference_sum([0.0 if math.isnan(value) else value for value in ap])
        out["AP50" if name == "all" else f"AP50_{name}"] = total / kept if kept else math.nan
        per_class = per_class or ap
    for label, name in enumerate(IMAGENET_VID_CLASSES, 1):
        out[f"AP50/{name}"] = per_class[label] if label < len(per_class) else math.nan
    return out


IOU = 0.5


def upright(box: np.ndarray) -> list[float]:
    """The box with x2 >= x1 and y2 >= y1 (evaluate rejects inverted boxes)."""
    return [box[0], box[1], max(box[0], box[2]), max(box[1], box[3])]


def random_case(seed: int) -> tuple[VidGroundTruth, dict, list[list[float]]]:
    """Frames with duplicate objects, boundary motion values, frames without objects, tied scores and IoUs,
    bursts of more than 16 same-class predictions with tied scores, and classes only predicted."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(np.arange(1, 31), size=6, replace=False)
    frames, table, items = [], [], []
    score_levels = np.array([0.2, 0.5, 0.7, 0.9, 1.0], np.float32)
    for image_id in range(1, 41):
        objects, motion = [], []
        for _ in range(int(rng.choice([0, 1, 2, 3, 4], p=[0.15, 0.35, 0.25, 0.15, 0.1]))):
            x, y = rng.integers(0, 200, 2)
            box = [float(x), float(y), float(x + rng.integers(3, 60)), float(y + rng.integers(3, 60))]
            label = int(rng.choice(classes[:4]))
            copies = 2 if rng.random() < 0.15 else 1
            for _ in range(copies):
                objects.append((box, label))
                motion.append(float(rng.choice([0.3, 0.7, 0.75, 0.9, 0.95, 1.0, rng.random()])))
        frames.append(objects)
        table.append(motion or [0.0])
        for box, label in objects:
            for _ in range(int(rng.integers(0, 4))):
                jitter = rng.integers(-4, 5, 4) * (rng.random() < 0.7)
                score = rng.choice(score_levels) if rng.random() < 0.6 else np.float32(rng.random())
                items.append((image_id, upright(np.array(box) + jitter), float(score), label))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.integers(0, 250, 2)
            box = [float(x), float(y), float(x + rng.integers(1, 50)), float(y + rng.integers(1, 50))]
            items.append((image_id, box, float(rng.choice(score_levels)), int(rng.choice(classes))))
        if rng.random() < 0.1 and objects:
            box, label = objects[0]
            for _ in range(20):
                items.append((image_id, upright(np.array(box) + rng.integers(-6, 7, 4)),
                              float(rng.choice(score_levels[:2])), label))
    order = rng.permutation(len(items))  # the order inside a frame only matters through ties
    return make_gt(frames, videos=[15, 25]), preds(*[items[i] for i in order]), table


@pytest.mark.parametrize("seed", range(6))
def test_evaluate_equals_the_literal_reference(seed):
    gt, results, table = random_case(seed)
    expected = reference_evaluate(gt, results, table)
    got = evaluate(gt, results, motion_iou=table)
    assert_same_scores(got, expected)
    assert not math.isnan(got["AP50_fast"]) and not math.isnan(got["AP50_slow"])


def test_results_are_evaluated_in_chunks_without_changing_them(monkeypatch):
    gt, results, table = random_case(11)
    whole = evaluate(gt, results, motion_iou=table)
    monkeypatch.setattr("vfe_hub.evaluation.imagenet_vid._PAIR_CHUNK", 7)
    monkeypatch.setattr("vfe_hub.evaluation.imagenet_vid._SORT_BATCH", 20)
    assert_same_scores(evaluate(gt, results, motion_iou=table), whole)


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------

def test_unknown_image_id_is_named():
    gt = make_gt([[(A, 1)]])
    with pytest.raises(DatasetError, match="image id 7"):
        evaluate(gt, preds((7, A, 0.9, 1)), motion_iou=[[0.5]])
    with pytest.raises(DatasetError, match="image id 0"):
        evaluate(gt, [{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], motion_iou=[[0.5]])


@pytest.mark.parametrize("item, message", [
    ((1, A, 0.9, 31), "category id outside 1..30"),
    ((1, A, float("nan"), 1), "NaN score"),
    ((1, [5, 5, 4, 9], 0.9, 1), "x2 < x1"),
    ((1, [0, 0, float("inf"), 9], 0.9, 1), "non-finite"),
])
def test_invalid_results(item, message):
    with pytest.raises(DatasetError, match=message):
        evaluate(make_gt([[(A, 1)]]), preds(item), motion_iou=[[0.5]])


def test_motion_table_must_fit_the_ground_truth():
    gt = make_gt([[(A, 1)], [], [(A, 1), (B, 1)]])
    evaluate(gt, {}, motion_iou=[[0.5], [0.0], [0.5, 0.9]])
    with pytest.raises(DatasetError, match="table has 2 frames, the ground truth 3"):
        evaluate(gt, {}, motion_iou=[[0.5], [0.0]])
    with pytest.raises(DatasetError, match=r"image id 3 \(val/v0/000002.JPEG\): the frame has 2 objects"):
        evaluate(gt, {}, motion_iou=[[0.5], [0.0], [0.5]])
    with pytest.raises(DatasetError, match="image id 2"):
        evaluate(gt, {}, motion_iou=[[0.5], [0.4], [0.5, 0.9]])  # a value where the placeholder belongs


# ---------------------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------------------

# (video, frame) -> objects (wordnet id, trackid, xmin, ymin, xmax, ymax); images are 100 x 80.
XML_DATA = {
    ("val/ILSVRC2015_val_00000000", 0): [("n02691156", 0, 10, 10, 50, 40), ("n02419796", 1, 0, 0, 99, 79)],
    ("val/ILSVRC2015_val_00000000", 1): [("n02691156", 0, 12, 10, 52, 40), ("n99999999", 5, 1, 1, 9, 9),
                                         ("n02419796", 1, 20, 20, 20, 30)],  # unknown class; w = 0
    ("val/ILSVRC2015_val_00000000", 2): [],
    ("val/ILSVRC2015_val_00000001", 0): [("n02391049", 0, 100, 5, 120, 30), ("n02391049", 3, 5, 5, 6, 6)],
    ("val/ILSVRC2015_val_00000001", 1): [("n02391049", 3, 5, 5, 7, 6)],
}  # outside the image; w = h = 1 is kept


def write_xml_dataset(root: Path, with_list: bool) -> None:
    for (video, frame_id), objects in XML_DATA.items():
        path = root / "Annotations" / "VID" / video / f"{frame_id:06d}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        ann = ET.Element("annotation")
        size = ET.SubElement(ann, "size")
        for key, value in (("width", 100), ("height", 80)):
            ET.SubElement(size, key).text = str(value)
        for wnid, track, *box in objects:
            obj = ET.SubElement(ann, "object")
            for key, value in (("trackid", track), ("name", wnid), ("occluded", 0), ("generated", 0)):
                ET.SubElement(obj, key).text = str(value)
            bndbox = ET.SubElement(obj, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
                ET.SubElement(bndbox, key).text = str(value)
        ET.ElementTree(ann).write(path)
    if with_list:
        (root / "ImageSets" / "VID").mkdir(parents=True)
        (root / "ImageSets" / "VID" / "VID_val_videos.txt").write_text(
            "val/ILSVRC2015_val_00000000 1 0 3\nval/ILSVRC2015_val_00000001 4 0 2\n")


def coco_vid_json(extra: list[dict] = ()) -> dict:
    """XML_DATA as mmtracking's converter writes it: ids in order, instance ids by first appearance."""
    data = {"categories": [{"id": i, "name": n} for i, n in enumerate(IMAGENET_VID_CLASSES, 1)],
            "videos": [], "images": [], "annotations": list(extra)}
    instances: dict[tuple[str, int], int] = {}
    for (video, frame_id), objects in XML_DATA.items():
        if frame_id == 0:
            data["videos"].append({"id": len(data["videos"]) + 1, "name": video})
        image_id = len(data["images"]) + 1
        data["images"].append({"id": image_id, "video_id": len(data["videos"]), "frame_id": frame_id,
                               "file_name": f"{video}/{frame_id:06d}.JPEG", "width": 100, "height": 80})
        for wnid, track, x1, y1, x2, y2 in objects:
            if wnid not in WORDNET_IDS:
                continue
            instance = instances.setdefault((video, track), len(instances) + 1)
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id,
                                        "category_id": WORDNET_IDS.index(wnid) + 1, "instance_id": instance,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                        "iscrowd": False, "occluded": False})
    return data


def assert_same_truth(a: VidGroundTruth, b: VidGroundTruth) -> None:
    assert a.videos == b.videos and len(a) == len(b)
    for x, y in zip(a.frames, b.frames):
        assert (x.file_name, x.video, x.frame_id, x.width, x.height) == (y.file_name, y.video, y.frame_id,
                                                                          y.width, y.height)
        assert x.boxes.dtype == y.boxes.dtype == np.float32 and np.array_equal(x.boxes, y.boxes)
        assert np.array_equal(x.labels, y.labels) and np.array_equal(x.track_ids, y.track_ids)


@pytest.mark.parametrize("with_list", [True, False])
def test_xml_and_coco_vid_readers_agree(tmp_path, with_list):
    write_xml_dataset(tmp_path / "ILSVRC2015", with_list)
    (tmp_path / "val.json").write_text(json.dumps(coco_vid_json()))
    from_xml, from_json = load_vid_xml(tmp_path / "ILSVRC2015"), load_coco_vid(tmp_path / "val.json")
    assert_same_truth(from_xml, from_json)
    assert from_xml.videos == [("val/ILSVRC2015_val_00000000", 1, 3), ("val/ILSVRC2015_val_00000001", 4, 2)]
    first, second, _, fourth, fifth = from_xml.frames
    assert first.boxes.tolist() == [[10, 10, 50, 40], [0, 0, 99, 79]] and first.labels.tolist() == [1, 2]
    assert second.labels.tolist() == [1] and second.track_ids.tolist() == [1]  # unknown class and w = 0 dropped
    assert fourth.labels.tolist() == [30] and fourth.boxes.tolist() == [[5, 5, 6, 6]]  # outside the image dropped
    assert fourth.track_ids.tolist() == [4] and fifth.track_ids.tolist() == [4]  # the dropped object took id 3
    assert fourth.file_name == "val/ILSVRC2015_val_00000001/000000.JPEG"


def test_coco_vid_filters(tmp_path):
    extra = [{"id": 90, "image_id": 1, "category_id": 3, "bbox": [1, 1, 20, 20], "area": 400, "iscrowd": True},
             {"id": 91, "image_id": 1, "category_id": 3, "bbox": [1, 1, 20, 20], "area": 400, "ignore": True},
             {"id": 92, "image_id": 1, "category_id": 3, "bbox": [1, 1, 20, 20], "area": 0},
             {"id": 93, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0.5, 20], "area": 10},
             {"id": 94, "image_id": 1, "category_id": 99, "bbox": [1, 1, 20, 20], "area": 400},
             {"id": 95, "image_id": 1, "category_id": 3, "bbox": [1.5, 2, 20, 20.25], "area": 405}]
    (tmp_path / "val.json").write_text(json.dumps(coco_vid_json(extra)))
    first = load_coco_vid(tmp_path / "val.json").frames[0]
    assert first.labels.tolist() == [3, 1, 2]  # only the last extra annotation is kept, in annotation order
    assert first.boxes[0].tolist() == [1.5, 2, 21.5, 22.25]


def test_coco_vid_order_is_checked(tmp_path):
    data = coco_vid_json()
    data["images"][1]["id"], data["images"][2]["id"] = 3, 2
    (tmp_path / "swapped.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image id 2 .* is frame 2 of video 1, expected frame 1"):
        load_coco_vid(tmp_path / "swapped.json")
    data = coco_vid_json()
    data["images"][4]["id"] = 9
    (tmp_path / "gap.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image id 9 sits at position 5"):
        load_coco_vid(tmp_path / "gap.json")
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a readable COCO-VID"):
        load_coco_vid(tmp_path / "broken.json")


def test_xml_reader_errors(tmp_path):
    write_xml_dataset(tmp_path, with_list=True)
    (tmp_path / "ImageSets" / "VID" / "VID_val_videos.txt").write_text("val/ILSVRC2015_val_00000000 1 0 4\n")
    with pytest.raises(DatasetError, match="000003.xml"):
        load_vid_xml(tmp_path)
    (tmp_path / "ImageSets" / "VID" / "VID_val_videos.txt").write_text(
        "val/ILSVRC2015_val_00000000 1 0 3\nval/ILSVRC2015_val_00000001 5 0 2\n")
    with pytest.raises(DatasetError, match="contiguous"):
        load_vid_xml(tmp_path)
    with pytest.raises(DatasetError, match="not an ILSVRC2015 VID root"):
        load_vid_xml(tmp_path / "nothing")


def test_evaluate_reads_a_coco_vid_path(tmp_path):
    (tmp_path / "val.json").write_text(json.dumps(coco_vid_json()))
    table = [[0.5, 0.8], [0.95], [0.0], [0.3], [0.91]]
    results = preds((1, [10, 10, 50, 40], 0.9, 1), (2, [12, 10, 52, 40], 0.8, 1))
    assert_same_scores(evaluate(tmp_path / "val.json", results, motion_iou=table),
                       evaluate(load_coco_vid(tmp_path / "val.json"), results, motion_iou=table))


# ---------------------------------------------------------------------------------------------------------------
# Motion IoU: local files, "compute", FGFA's table through the download path
# ---------------------------------------------------------------------------------------------------------------

def write_fgfa_mat(path: Path, table: list[list[float]]) -> None:
    """A .mat in FGFA's layout: a column cell array, each cell a column of values or 1 x 0 when empty."""
    cells = np.empty((len(table), 1), dtype=object)
    for i, row in enumerate(table):
        cells[i, 0] = np.array(row, dtype=np.float64).reshape(-1, 1) if row else np.zeros((1, 0))
    scipy.io.savemat(path, {"motion_iou": cells})


def test_local_mat_file(tmp_path):
    write_fgfa_mat(tmp_path / "table.mat", [[0.5, 0.8], [], [0.95]])
    table = motion_iou_table(tmp_path / "table.mat")
    assert [row.tolist() for row in table] == [[0.5, 0.8], [0.0], [0.95]]
    gt = make_gt([[(A, 1), (B, 1)], [], [(A, 1)]])
    results = preds((1, A, 0.9, 1), (3, B, 0.9, 1))
    from_file = evaluate(gt, results, motion_iou=tmp_path / "table.mat")
    assert_same_scores(from_file, evaluate(gt, results, motion_iou=table))
    with pytest.raises(DatasetError, match="does not exist"):
        motion_iou_table(tmp_path / "missing.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"something": np.zeros(3)})
    with pytest.raises(DatasetError, match="FGFA's layout"):
        read_motion_iou_mat(tmp_path / "other.mat")


def test_compute_motion_iou():
    static, moving = [10, 10, 29, 29], [[0, 0, 9, 9], [5, 0, 14, 9], [10, 0, 19, 9]]
    frames = [[(static, 1), (moving[0], 2)], [(static, 1), (moving[1], 2)], [], [(moving[2], 2)]]
    gt = make_gt(frames)
    tracks = [[0, 1], [0, 1], [], [1]]
    gt = VidGroundTruth([VidFrame(**{**f.__dict__, "track_ids": np.array(t, dtype=np.int64)})
                         for f, t in zip(gt.frames, tracks)], gt.videos)
    table = compute_motion_iou(gt, window=2)
    # inclusive-pixel IoU of boxes 10 wide shifted by 5: 5 * 10 / (200 - 50) = 1/3; by 10: 0
    assert [row.tolist() for row in table] == [[1.0, 1 / 3], [1.0, 1 / 3], [0.0], [1 / 3]]
    assert compute_motion_iou(gt, window=1)[3].tolist() == [1.0]  # alone in its window
    scores = evaluate(gt, preds((1, static, 0.9, 1)), motion_iou="compute")
    assert scores["AP50/airplane"] == scores["AP50_slow"] == pytest.approx(0.5, abs=1e-15)
    assert math.isnan(scores["AP50_medium"])


@pytest.fixture
def github(github_raw: Path) -> Path:
    """Where the test GitHub serves FGFA's table from."""
    target = github_raw / FGFA_REPO / "raw" / FGFA_COMMIT / FGFA_MOTION_IOU_FILE
    target.parent.mkdir(parents=True)
    return target


def test_fgfa_table_through_the_download_path(github, tmp_path):
    github.symlink_to(FGFA_TABLE)
    table = motion_iou_table("fgfa")
    assert hashlib.sha256(next((tmp_path / "cache").rglob("*.mat")).read_bytes()).hexdigest() == FGFA_MOTION_IOU_SHA256
    assert len(table) == 176_126
    placeholders = [row for row in table if len(row) == 1 and row[0] == 0.0]
    values = np.concatenate([row for row in table if not (len(row) == 1 and row[0] == 0.0)])
    assert len(placeholders) == 4_046 and len(values) == 273_505
    for name, share in {"fast": 0.262, "medium": 0.359, "slow": 0.379}.items():
        lo, hi = BUCKETS[name]
        assert round(np.mean((values >= lo) & (values <= hi)), 3) == share
    weights = {name: round(empty_weight(table, bucket), 4) for name, bucket in BUCKETS.items()}
    assert weights == {"all": 0.0, "fast": 0.2724, "medium": 0.3539, "slow": 0.3738}


def test_fgfa_table_with_wrong_checksum_is_rejected(github, tmp_path):
    github.write_bytes(FGFA_TABLE.read_bytes()[:-1] + b"\0")
    with pytest.raises(ChecksumError):
        motion_iou_table("fgfa")
    assert not list((tmp_path / "cache").rglob("*.mat"))
