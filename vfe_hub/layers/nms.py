"""Class-wise non-maximum suppression, exact and fast: the one NMS every model's post-processing calls."""
from __future__ import annotations

import torch
from torchvision.ops import nms

from .precision import float32

#: candidates examined first by :func:`multiclass_nms`, as a multiple of ``max_num`` (grown 4x until enough are kept)
_FIRST_PREFIX = 4


def score_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices ``(N,)`` of ``scores`` by decreasing score, equal scores by increasing index (a stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def _classwise_in_order(boxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Positions kept by greedy NMS within each label, for candidates already in :func:`score_order`.

    Each label's candidates go to ``torchvision.ops.nms`` in their given order (its stable sort keeps it), so a
    box is suppressed exactly when a kept box of its label earlier in the order overlaps it with IoU above the
    threshold. Returns kept positions, ascending (that is, in score order).
    """
    if len(labels) == 0:
        return torch.zeros(0, dtype=torch.long, device=labels.device)
    sorted_labels, by_label = torch.sort(labels, stable=True)
    counts = torch.unique_consecutive(sorted_labels, return_counts=True)[1].tolist()
    scores = -torch.arange(len(labels), dtype=torch.float32, device=labels.device)  # the given order, strictly
    kept = []
    for group in by_label.split(counts):
        kept.append(group if len(group) == 1 else group[nms(boxes[group], scores[group], iou_threshold)])
    return torch.cat(kept).sort().values


@float32("score threshold and NMS")
def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                   max_num: int | None = None) -> torch.Tensor:
    """Indices ``(K,)`` of the (box, score, label) candidates kept by exact class-wise NMS, then the best ``max_num``.

    ``boxes (N, 4)`` xyxy, ``scores (N,)``, ``labels (N,)`` integer classes (or any grouping key, e.g. pyramid
    levels). The reference it equals, index for index: for every label, greedy NMS over that label's candidates
    (``torchvision.ops.nms``: a box is dropped when its IoU with a kept, higher-ranked box of the same label is
    above ``iou_threshold``); the union of kept candidates ordered by decreasing score, equal scores by increasing
    index; its first ``max_num`` (all with ``None``).

    Candidates are visited in that global order and only a prefix of it is examined: a label's NMS over the
    prefix keeps exactly the reference's kept candidates of the prefix, so once ``max_num`` are kept the rest
    cannot enter the result. The prefix starts at ``4 * max_num`` candidates and grows 4x as needed.

    This is the exact class-wise result. mmcv's ``batched_nms`` (the originals of the mmdetection models) shifts
    boxes by a per-class offset and runs one NMS below 10,000 boxes; the shift rounds coordinates, so a pair
    whose IoU lies within float rounding of the threshold can be decided differently there (rarely: one
    detection of one frame in a full comparison run).
    """
    order = score_order(scores)
    n = len(order)
    limit = n if max_num is None else min(max_num, n)
    prefix = n if max_num is None else min(n, _FIRST_PREFIX * max(limit, 1))
    while True:
        candidates = order[:prefix]
        kept = _classwise_in_order(boxes[candidates], labels[candidates], iou_threshold)
        if len(kept) >= limit or prefix == n:
            return candidates[kept[:limit]]
        prefix = min(n, 4 * prefix)


@float32("score threshold and NMS")
def select_per_class(boxes: torch.Tensor, scores: torch.Tensor, score_thr: float, iou_threshold: float,
                     max_num: int | None = None, keep_ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, class) pairs kept from ``scores (K, C)`` (class probabilities, no background column) by the
    score threshold, exact class-wise NMS and the top ``max_num``, as ``(rows (N,), labels (N,))``.

    ``boxes`` are ``(K, 4)`` (one box for every class) or ``(K, C, 4)`` (a box per class). Every pair with a
    score > ``score_thr`` is a candidate, in row-major order (row, then class); :func:`multiclass_nms` then
    orders the kept pairs by decreasing score, equal scores by that candidate order. ``keep_ties`` also keeps
    every pair whose score equals the ``max_num``-th (maskrcnn-benchmark's ``kthvalue`` cut), so more than
    ``max_num`` can come back.
    """
    rows, labels = torch.nonzero(scores > score_thr, as_tuple=True)
    candidates = boxes[rows] if boxes.dim() == 2 else boxes[rows, labels]
    kept = scores[rows, labels]
    limit = max_num + 1 if keep_ties and max_num else max_num
    while True:
        order = multiclass_nms(candidates, kept, labels, iou_threshold, limit)
        if limit == max_num or len(order) < limit or kept[order[-1]] < kept[order[max_num - 1]]:
            break
        limit *= 2  # the cut falls inside a run of equal scores: look further
    if keep_ties and max_num and len(order) > max_num:
        order = order[kept[order] >= kept[order[max_num - 1]]]
    return rows[order], labels[order]
