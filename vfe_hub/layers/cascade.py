"""Cascade box heads (Cascade R-CNN): each stage re-pools the previous stage's refined boxes.

The module runs the stages and returns what each saw and predicted; combining the stages' scores (detectron2's
mean of sigmoids, mmdetection's mean of softmaxes or logits) and choosing the final boxes belong to the caller.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .box_coder import clip_boxes
from .box_head import ConvFCBoxHead


class BoxCoder(Protocol):
    def decode(self, boxes: torch.Tensor, deltas: torch.Tensor,
               max_shape: tuple[int, int] | None) -> torch.Tensor: ...


@dataclass
class StageOutput:
    """One cascade stage on a batch of images.

    ``logits (sum K_i, C + 1)`` (background last), ``proposals`` the per-image boxes ``[(K_i, 4)]`` the stage
    pooled, ``boxes`` its per-image decoded boxes ``[(K_i, 4)]``, float32 and **not** clipped; ``amodal_boxes``
    the same for the expander's deltas (``None`` without an expander).
    """

    logits: torch.Tensor
    boxes: list[torch.Tensor]
    proposals: list[torch.Tensor]
    amodal_boxes: list[torch.Tensor] | None = None


class CascadeBoxHeads(nn.Module):
    """``len(coders)`` stages of :class:`.box_head.ConvFCBoxHead` (``num_fcs`` x fc ``fc_dim`` + ReLU, ``cls_score``
    with ``num_classes + 1`` outputs, class-agnostic ``bbox_pred`` with 4), stage ``k`` decoding with
    ``coders[k]`` (e.g. :class:`.box_coder.Box2BoxCoder` with detectron2's per-stage weights, or
    :class:`.box_coder.DeltaXYWHCoder` with per-stage stds).

    Stage 0 pools the given proposals; stage ``k > 0`` pools stage ``k - 1``'s boxes clipped to
    ``[0, W] x [0, H]`` of the image, empty boxes kept so that every stage scores the same rows (detectron2's
    ``_create_proposals_from_boxes`` at test time; it clips even when the final boxes are left unclipped).
    Parameter names: ``stages.{k}.fcs.{i}``, ``stages.{k}.cls_score``, ``stages.{k}.bbox_pred``.

    ``pixel_inclusive=True`` (mmdetection v1, with legacy coders) clips the intermediate boxes to
    ``[0, W - 1] x [0, H - 1]`` instead. ``num_classes + 1`` is the classifier's width whatever its columns mean
    (BAGS's 1236 group-softmax logits: ``num_classes=1235``).
    """

    def __init__(self, coders: Sequence[BoxCoder], num_classes: int, in_channels: int = 256, roi_size: int = 7,
                 num_fcs: int = 2, fc_dim: int = 1024, pixel_inclusive: bool = False) -> None:
        super().__init__()
        self.coders = tuple(coders)
        self.offset = 1 if pixel_inclusive else 0
        self.stages = nn.ModuleList(
            ConvFCBoxHead(in_channels, roi_size, num_classes, num_fcs=num_fcs, fc_dim=fc_dim, class_agnostic=True)
            for _ in self.coders)

    def forward(self, pool: Callable[[list[torch.Tensor]], torch.Tensor], proposals: Sequence[torch.Tensor],
                image_sizes: Sequence[tuple[int, int]],
                expander: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> list[StageOutput]:
        """Run every stage. ``pool`` maps per-image boxes ``[(K_i, 4)]`` (the pixels of ``image_sizes``, each
        ``(h, w)``) to RoI features ``(sum K_i, in_channels, roi_size, roi_size)``; ``proposals [(K_i, 4)]``.
        Returns one :class:`StageOutput` per stage, in order. Boxes are decoded in float32 (as detectron2).

        ``expander`` (an :class:`.amodal_expander.AmodalExpander`, the same one at every stage) maps each stage's
        RoI embeddings ``(sum K_i, fc_dim)`` and deltas ``(sum K_i, 4)`` to amodal deltas, which that stage's coder
        decodes, unclipped, from the same proposals into ``amodal_boxes``; the next stage still pools the clipped
        modal boxes, and ``logits``, ``boxes`` and ``proposals`` are those of a run without it.
        """
        proposals = list(proposals)
        counts = [len(p) for p in proposals]
        outputs: list[StageOutput] = []
        for k, (head, coder) in enumerate(zip(self.stages, self.coders)):
            if k:
                proposals = [clip_boxes(b.detach(), (h - self.offset, w - self.offset))
                             for b, (h, w) in zip(outputs[-1].boxes, image_sizes)]
            embedding = head.embed(pool(proposals))
            logits, deltas = head.cls_score(embedding), head.bbox_pred(embedding)
            pooled = torch.cat(proposals).float()
            boxes = coder.decode(pooled, deltas.float(), None)
            amodal = None if expander is None else list(
                coder.decode(pooled, expander(embedding, deltas).float(), None).split(counts))
            outputs.append(StageOutput(logits, list(boxes.split(counts)), proposals, amodal))
        return outputs
