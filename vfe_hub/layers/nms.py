"""Class-wise non-maximum suppression, exact and fast: the one NMS every model's post-processing calls.

By default it is exact class-wise NMS. Within :func:`arithmetic` it reproduces the arithmetic of an original code
base instead (``pipeline="original"``):

- ``"mmcv"``: mmcv's ``batched_nms`` (mmcv 1.1-1.5, the mmdetection 2.x models): every box is shifted by
  ``label * (max coordinate + 1)`` in float32 and one NMS runs over the shifted boxes (also past its ``split_thr``
  of 10,000 boxes, where it loops over labels but still on the shifted boxes); its CUDA kernel suppresses when
  ``inter > t * (area_a + area_b - inter)``. The shift rounds coordinates to the float32 spacing of the shifted
  values (1/16 to 1/8 pixel with LVIS's 1203 classes), so pairs whose IoU lies near the threshold are decided
  otherwise than by exact class-wise NMS.
- ``"torchvision"``: torchvision's ``batched_nms`` as GTR's environment ran it (torchvision 0.9, before the loop
  over classes of 0.10): the same shift, and ``inter / (area_a + area_b - inter) > t``.
- ``"per_class"``: a loop over classes with the legacy kernel of mmdetection v1 and maskrcnn-benchmark,
  ``inter / (area_a + area_b - inter) > t``, widths ``x2 - x1 + offset`` as the kernel computes them.

Every IoU is computed in float32 with each operation rounded as the kernel's source writes it; a CUDA build may
fuse a multiply and an add, which can move an IoU by one unit in the last place. Equal scores are ordered by
candidate index (the originals' unstable sorts leave their order unspecified).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch
from torchvision.ops import nms

from .precision import float32

#: candidates examined first by :func:`multiclass_nms`, as a multiple of ``max_num`` (grown 4x until enough are kept)
_FIRST_PREFIX = 4
#: the NMS arithmetic of each original code base (:class:`vfe_hub.registry.Preprocess` ``nms``), and ``"exact"``
ARITHMETIC = ("exact", "mmcv", "torchvision", "per_class")
_ARITHMETIC: ContextVar[str] = ContextVar("nms_arithmetic", default="exact")
#: rows of the pairwise suppression matrix computed at once by :func:`_kernel_nms`
_ROWS = 512


@contextmanager
def arithmetic(name: str) -> Iterator[None]:
    """Within this context, :func:`multiclass_nms` (and so :func:`select_per_class`) uses the NMS arithmetic
    ``name`` (one of :data:`ARITHMETIC`; see the module docstring)."""
    if name not in ARITHMETIC:
        raise ValueError(f"NMS arithmetic must be one of {ARITHMETIC}, got {name!r}")
    token = _ARITHMETIC.set(name)
    try:
        yield
    finally:
        _ARITHMETIC.reset(token)


def score_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices ``(N,)`` of ``scores`` by decreasing score, equal scores by increasing index (a stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def _classwise_in_order(candidates: torch.Tensor, labels: torch.Tensor,
                        suppress: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Positions kept by greedy NMS within each label, for ``candidates (n,)`` (indices of boxes) already in
    :func:`score_order`, of ``labels (n,)``.

    ``suppress(indices)`` runs greedy NMS over those boxes (one label's) in their given order and returns the kept
    positions, ascending. Returns kept positions, ascending (that is, in score order).
    """
    if len(labels) == 0:
        return torch.zeros(0, dtype=torch.long, device=labels.device)
    sorted_labels, by_label = torch.sort(labels, stable=True)
    counts = torch.unique_consecutive(sorted_labels, return_counts=True)[1].tolist()
    kept = [group if len(group) == 1 else group[suppress(candidates[group])] for group in by_label.split(counts)]
    return torch.cat(kept).sort().values


def _torchvision_nms(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.nms`` over ``boxes`` in their given order (its stable sort keeps it)."""
    return nms(boxes, -torch.arange(len(boxes), dtype=torch.float32, device=boxes.device), iou_threshold).sort().values


def _kernel_nms(boxes: torch.Tensor, iou_threshold: float, offset: float, product: bool) -> torch.Tensor:
    """Greedy NMS over ``boxes (n, 4)`` in their given order with a CUDA kernel's float32 arithmetic: widths
    ``x2 - x1 + offset``, ``inter = max(right - left + offset, 0) * max(bottom - top + offset, 0)``, ``union =
    area_a + area_b - inter``; a box is suppressed by a kept earlier one when ``inter > t * union`` (``product``:
    mmcv's kernel) or ``inter / union > t`` (torchvision's, mmdetection v1's, maskrcnn-benchmark's). Returns the
    kept positions, ascending."""
    b = boxes.float()
    t = torch.tensor(iou_threshold, dtype=torch.float32, device=b.device)
    area = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    rows = []
    for start in range(0, len(b), _ROWS):
        a = b[start:start + _ROWS, None]
        width = (torch.minimum(a[..., 2], b[:, 2]) - torch.maximum(a[..., 0], b[:, 0]) + offset).clamp(min=0)
        height = (torch.minimum(a[..., 3], b[:, 3]) - torch.maximum(a[..., 1], b[:, 1]) + offset).clamp(min=0)
        inter = width * height
        union = area[start:start + _ROWS, None] + area - inter
        rows.append((inter > t * union) if product else (inter / union > t))
    over = torch.cat(rows).cpu().numpy()
    removed = np.zeros(len(b), dtype=bool)
    kept = []
    for i in range(len(b)):
        if not removed[i]:
            kept.append(i)
            removed[i + 1:] |= over[i, i + 1:]
    return torch.tensor(kept, dtype=torch.long, device=boxes.device)


@float32("score threshold and NMS")
def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                   max_num: int | None = None, offset: float = 0.0) -> torch.Tensor:
    """Indices ``(K,)`` of the (box, score, label) candidates kept by exact class-wise NMS, then the best ``max_num``.

    ``boxes (N, 4)`` xyxy, ``scores (N,)``, ``labels (N,)`` integer classes (or any grouping key, e.g. pyramid
    levels); ``offset = 1`` for pixel-inclusive boxes (widths ``x2 - x1 + 1``: mmdetection v1, maskrcnn-benchmark).
    The reference it equals, index for index: for every label, greedy NMS over that label's candidates
    (``torchvision.ops.nms`` over the boxes' pixel edges ``x2 + offset``: a box is dropped when its IoU with a kept,
    higher-ranked box of the same label is above ``iou_threshold``); the union of kept candidates ordered by
    decreasing score, equal scores by increasing index; its first ``max_num`` (all with ``None``).

    Candidates are visited in that global order and only a prefix of it is examined: a label's NMS over the
    prefix keeps exactly the reference's kept candidates of the prefix, so once ``max_num`` are kept the rest
    cannot enter the result. The prefix starts at ``4 * max_num`` candidates and grows 4x as needed.

    This is the exact class-wise result. Within :func:`arithmetic` the same greedy order runs with an original's
    arithmetic instead (see the module docstring): mmcv's and torchvision's ``batched_nms`` shift the boxes of each
    label, which rounds their coordinates, so a pair whose IoU lies near the threshold can be decided the other way
    there (measured on DetPro-scale random detections: ``python benchmarks/resize_fidelity.py``).
    """
    rule = _ARITHMETIC.get()
    if rule == "exact":
        edges = boxes + boxes.new_tensor([0.0, 0.0, offset, offset]) if offset else boxes

        def suppress(group: torch.Tensor) -> torch.Tensor:
            return _torchvision_nms(edges[group], iou_threshold)
    else:
        if rule in ("mmcv", "torchvision") and len(boxes):
            shift = labels.to(boxes.dtype) * (boxes.max() + torch.tensor(1).to(boxes))  # the originals' float32 shift
            boxes = boxes + shift[:, None]

        def suppress(group: torch.Tensor) -> torch.Tensor:
            return _kernel_nms(boxes[group], iou_threshold, offset, product=rule == "mmcv")
    order = score_order(scores)
    n = len(order)
    limit = n if max_num is None else min(max_num, n)
    prefix = n if max_num is None else min(n, _FIRST_PREFIX * max(limit, 1))
    while True:
        candidates = order[:prefix]
        kept = _classwise_in_order(candidates, labels[candidates], suppress)
        if len(kept) >= limit or prefix == n:
            return candidates[kept[:limit]]
        prefix = min(n, 4 * prefix)


@float32("score threshold and NMS")
def select_per_class(boxes: torch.Tensor, scores: torch.Tensor, score_thr: float, iou_threshold: float,
                     max_num: int | None = None, keep_ties: bool = False,
                     offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, class) pairs kept from ``scores (K, C)`` (class probabilities, no background column) by the
    score threshold, exact class-wise NMS and the top ``max_num``, as ``(rows (N,), labels (N,))``.

    ``boxes`` are ``(K, 4)`` (one box for every class) or ``(K, C, 4)`` (a box per class). Every pair with a
    score > ``score_thr`` is a candidate, in row-major order (row, then class); :func:`multiclass_nms` then
    orders the kept pairs by decreasing score, equal scores by that candidate order. ``keep_ties`` also keeps
    every pair whose score equals the ``max_num``-th (maskrcnn-benchmark's ``kthvalue`` cut), so more than
    ``max_num`` can come back. ``offset = 1`` for pixel-inclusive boxes (see :func:`multiclass_nms`).
    """
    rows, labels = torch.nonzero(scores > score_thr, as_tuple=True)
    candidates = boxes[rows] if boxes.dim() == 2 else boxes[rows, labels]
    kept = scores[rows, labels]
    limit = max_num + 1 if keep_ties and max_num else max_num
    while True:
        order = multiclass_nms(candidates, kept, labels, iou_threshold, limit, offset)
        if limit == max_num or len(order) < limit or kept[order[-1]] < kept[order[max_num - 1]]:
            break
        limit *= 2  # the cut falls inside a run of equal scores: look further
    if keep_ties and max_num and len(order) > max_num:
        order = order[kept[order] >= kept[order[max_num - 1]]]
    return rows[order], labels[order]
