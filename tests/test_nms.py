"""multiclass_nms equals exact class-wise greedy NMS followed by the top-k, on random and adversarial cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vfe_hub.layers.nms import arithmetic, multiclass_nms, score_order, select_per_class


def reference(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float,
              max_num: int | None) -> list[int]:
    """Greedy NMS per label in float64, written out: candidates by (score desc, index asc); a candidate is dropped
    when a kept one of its label overlaps it with IoU > ``iou``; kept ones in that order, then the first max_num."""
    b = boxes.double().tolist()
    order = sorted(range(len(b)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    kept_of_label: dict[int, list[int]] = {}
    for i in order:
        x1, y1, x2, y2 = b[i]
        area = (x2 - x1) * (y2 - y1)
        suppressed = False
        for j in kept_of_label.setdefault(int(labels[i]), []):
            u1, v1, u2, v2 = b[j]
            inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
            if inter / (area + (u2 - u1) * (v2 - v1) - inter) > iou:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
            kept_of_label[int(labels[i])].append(i)
    return kept if max_num is None else kept[:max_num]


def grid_boxes(generator: torch.Generator, n: int, cells: int = 8) -> torch.Tensor:
    """Boxes with corners on a small integer grid: exact in float32, many identical boxes and IoUs hitting 0.5
    exactly (e.g. a box and its half)."""
    a = torch.randint(0, cells, (n, 2), generator=generator)
    size = torch.randint(1, cells, (n, 2), generator=generator)
    return torch.cat([a, a + size], dim=1).float()


@pytest.mark.parametrize("seed", range(40))
def test_equals_classwise_reference_with_ties_and_exact_thresholds(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(0, 120, (1,), generator=g))
    boxes = grid_boxes(g, n)
    scores = torch.randint(0, 6, (n,), generator=g).float() / 5  # few distinct values: many exact ties
    labels = torch.randint(0, 1 + seed % 7, (n,), generator=g)
    for iou in (0.5, 0.25, 0.0):
        expected = reference(boxes, scores, labels, iou, None)
        for max_num in (None, 0, 1, 3, 17, n, n + 5):
            got = multiclass_nms(boxes, scores, labels, iou, max_num).tolist()
            assert got == (expected if max_num is None else expected[:max_num]), (seed, iou, max_num)


def test_iou_exactly_at_the_threshold_is_kept():
    """IoU 0.5 exactly (a box and its left half) is not above 0.5: both stay; above it, the lower one goes."""
    boxes = torch.tensor([[0.0, 0, 4, 4], [0, 0, 2, 4], [0, 0, 3, 4]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    assert multiclass_nms(boxes, scores, labels, 0.5).tolist() == [0, 1]  # [0, 0, 3, 4] has IoU 0.75 with box 0
    assert multiclass_nms(boxes, scores, labels, 0.75).tolist() == [0, 1, 2]


def test_random_float_boxes_many_classes_topk():
    g = torch.Generator().manual_seed(3)
    n = 3000
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 60], dim=1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, 50, (n,), generator=g)
    expected = reference(boxes, scores, labels, 0.5, None)
    for max_num in (1, 10, 100, 1000, None):
        got = multiclass_nms(boxes, scores, labels, 0.5, max_num).tolist()
        assert got == (expected if max_num is None else expected[:max_num])


def test_empty_input_and_dtypes():
    empty = multiclass_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5, 100)
    assert empty.dtype == torch.long and empty.shape == (0,)
    boxes = torch.tensor([[0.0, 0, 1, 1]])
    assert multiclass_nms(boxes, torch.tensor([0.3]), torch.tensor([2]), 0.5, 5).tolist() == [0]


def test_keep_ties_keeps_every_pair_tied_with_the_last_one():
    """maskrcnn-benchmark's cut: ``kthvalue`` keeps all scores >= the max_num-th, so ties at the cut all stay."""
    boxes = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(8)])  # apart: NMS keeps all
    scores = torch.tensor([[0.9], [0.8], [0.5], [0.5], [0.5], [0.5], [0.5], [0.2]])
    rows, _ = select_per_class(boxes, scores, 0.0, 0.5, 3)
    assert rows.tolist() == [0, 1, 2]
    rows, _ = select_per_class(boxes, scores, 0.0, 0.5, 3, keep_ties=True)
    assert rows.tolist() == [0, 1, 2, 3, 4, 5, 6]
    rows, _ = select_per_class(boxes, scores, 0.0, 0.5, 2, keep_ties=True)
    assert rows.tolist() == [0, 1]
    rows, _ = select_per_class(boxes, scores, 0.0, 0.5, 20, keep_ties=True)
    assert len(rows) == 8


# ------------------------------------------------------------------------------------------------ original arithmetic


def _greedy_float32(boxes: np.ndarray, order: list[int], threshold: float, offset: float, product: bool) -> list[int]:
    """Greedy NMS written out from a CUDA kernel's ``devIoU`` in float32 (numpy), over ``order``."""
    t, one = np.float32(threshold), np.float32(offset)
    kept: list[int] = []
    for i in order:
        a = boxes[i]
        for j in kept:
            b = boxes[j]
            width = max(np.float32(min(a[2], b[2]) - max(a[0], b[0])) + one, np.float32(0))
            height = max(np.float32(min(a[3], b[3]) - max(a[1], b[1])) + one, np.float32(0))
            inter = np.float32(width * height)
            sa = np.float32((a[2] - a[0] + one) * (a[3] - a[1] + one))
            sb = np.float32((b[2] - b[0] + one) * (b[3] - b[1] + one))
            union = np.float32(np.float32(sa + sb) - inter)
            if (inter > np.float32(t * union)) if product else (np.float32(inter / union) > t):
                break
        else:
            kept.append(i)
    return kept


def _near_threshold_case(seed: int, n: int = 60, classes: int = 1203, thr: float = 0.5):
    """Pairs of boxes of one class in the high classes (large shifts) whose IoU is within float32 rounding of the
    threshold once shifted: ``(boxes (N, 4), scores (N,), labels (N,))``."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 2, generator=g) * 1200
    size = 20 + torch.rand(n, 2, generator=g) * 200
    a = torch.cat([base, base + size], 1)
    # the second box: shifted so that IoU = thr exactly in real arithmetic (width overlap w' / (2w - w') = thr)
    dx = size[:, 0] * (1 - 2 * thr / (1 + thr))
    jitter = 1 + (torch.rand(n, 1, generator=g) - 0.5) * 1e-5
    b = a + torch.stack([dx, torch.zeros(n), dx, torch.zeros(n)], 1) * jitter
    boxes = torch.cat([a, b]).float()
    labels = torch.randint(classes - 40, classes, (n,), generator=g).repeat(2)
    scores = torch.cat([torch.rand(n, generator=g) * 0.5 + 0.5, torch.rand(n, generator=g) * 0.5])
    return boxes, scores, labels


def _mmcv_batched_nms(boxes, scores, labels, thr):
    """mmcv's ``batched_nms`` (1.1-1.5) written out: the float32 shift by ``label * (max + 1)``, its kernel's
    ``inter > t * union``."""
    shifted = boxes + (labels.float() * (boxes.max() + torch.tensor(1.0)))[:, None]
    order = score_order(scores).tolist()
    return _greedy_float32(shifted.numpy(), order, thr, 0.0, product=True)


@pytest.mark.parametrize("seed", range(3))
def test_mmcv_arithmetic_equals_its_batched_nms_and_splits_from_exact(seed):
    boxes, scores, labels = _near_threshold_case(seed)
    with arithmetic("mmcv"):
        got = multiclass_nms(boxes, scores, labels, 0.5)
    assert got.tolist() == _mmcv_batched_nms(boxes, scores, labels, 0.5)
    exact = multiclass_nms(boxes, scores, labels, 0.5)
    assert set(got.tolist()) != set(exact.tolist())  # the shift decides some near-threshold pairs otherwise


def test_torchvision_arithmetic_equals_its_coordinate_trick():
    """GTR's torchvision (0.9) always shifted the boxes; its kernel tests ``inter / union > t``."""
    from torchvision.ops.boxes import _batched_nms_coordinate_trick

    splits = 0
    for seed in range(3):
        boxes, scores, labels = _near_threshold_case(seed)
        with arithmetic("torchvision"):
            got = multiclass_nms(boxes, scores, labels, 0.5)
        expected = _batched_nms_coordinate_trick(boxes, scores, labels, 0.5)
        assert set(got.tolist()) == set(expected.tolist())
        splits += set(got.tolist()) != set(multiclass_nms(boxes, scores, labels, 0.5).tolist())
    assert splits


def test_per_class_arithmetic_is_the_legacy_kernel_with_plus_one_widths():
    """mmdetection v1 and maskrcnn-benchmark: a loop over classes, ``x2 - x1 + 1`` as the kernel computes it; the
    results keep the top ``max_num`` by score."""
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 40], 1)
    scores, labels = torch.rand(300, generator=g), torch.randint(0, 4, (300,), generator=g)
    with arithmetic("per_class"):
        got = multiclass_nms(boxes, scores, labels, 0.5, max_num=50, offset=1.0)
    expected = []
    for c in range(4):
        members = [i for i in score_order(scores).tolist() if labels[i] == c]
        expected += _greedy_float32(boxes.numpy(), members, 0.5, 1.0, product=False)
    expected = sorted(expected, key=lambda i: (-scores[i].item(), i))[:50]
    assert got.tolist() == expected


def test_arithmetic_is_scoped_and_checked():
    with pytest.raises(ValueError, match="mmcv"):
        with arithmetic("mmdet"):
            pass
    boxes, scores, labels = _near_threshold_case(0)
    before = multiclass_nms(boxes, scores, labels, 0.5)
    with arithmetic("mmcv"):
        pass
    assert torch.equal(multiclass_nms(boxes, scores, labels, 0.5), before)
