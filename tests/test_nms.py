"""multiclass_nms equals exact class-wise greedy NMS followed by the top-k, on random and adversarial cases."""
from __future__ import annotations

import pytest
import torch

from vfe_hub.layers.nms import multiclass_nms, select_per_class


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
