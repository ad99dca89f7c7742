"""CenterNet2's class-agnostic CenterNet proposal head (objectness heatmap + box distances) and its proposals."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .deform_conv import DeformConv
from .nms import multiclass_nms, score_order
from .precision import Float32Conv2d, float32


class Scale(nn.Module):
    """Multiplies its input by one learnable scalar ``scale [1]``."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([value]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class CenterNetHead(nn.Module):
    """A tower shared by all pyramid levels, then an objectness logit and four box distances per location.

    ``tower`` holds ``num_convs`` times [3x3 conv with bias, ``GroupNorm(32)``, ReLU] (indices ``3n``, ``3n + 1``,
    ``3n + 2``); the last conv is a modulated :class:`DeformConv` with bias whose offset conv has a bias
    (``tower.9.offset.*``, ``tower.9.weight``, ``tower.9.bias`` for 4 convs). ``agn_hm`` (3x3 conv to 1 channel) and
    ``bbox_pred`` (3x3 conv to 4) read the tower output; level ``l``'s distances are
    ``ReLU(scales.{l}.scale * bbox_pred)`` (left, top, right, bottom, in units of the level's stride).

    ``forward([(B, C, H_l, W_l)])`` returns ``(heat_logits [(B, 1, H_l, W_l)], regs [(B, 4, H_l, W_l)])``.
    """

    def __init__(self, in_channels: int = 256, num_levels: int = 5, num_convs: int = 4,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        tower: list[nn.Module] = []
        for i in range(num_convs):
            conv = (DeformConv(in_channels, in_channels, modulated=True, bias=True, offset_bias=True)
                    if i == num_convs - 1 else nn.Conv2d(in_channels, in_channels, 3, padding=1))
            tower += [conv, nn.GroupNorm(32, in_channels), nn.ReLU()]
        self.tower = nn.Sequential(*tower)
        self.agn_hm = Float32Conv2d(in_channels, 1, 3, padding=1)
        self.bbox_pred = Float32Conv2d(in_channels, 4, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        # the original's initialisation: small weights, a prior objectness, distances starting at 8 strides
        for conv in (*self.tower[:-3:3], self.agn_hm, self.bbox_pred):
            nn.init.normal_(conv.weight, std=0.01)
        for conv in self.tower[:-3:3]:
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.agn_hm.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.constant_(self.bbox_pred.bias, 8.0)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        heat_logits, regs = [], []
        for scale, feat in zip(self.scales, feats):
            x = self.tower(feat)
            heat_logits.append(self.agn_hm(x))
            regs.append(torch.relu(scale(self.bbox_pred(x))))
        return heat_logits, regs


@float32("proposal selection")
def centernet_proposals(heat_logits: Sequence[torch.Tensor], regs: Sequence[torch.Tensor], strides: Sequence[int], *,
                        score_thr: float = 1e-4, pre_nms: int = 1000, iou: float = 0.7,
                        post_nms: int = 300) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Class-agnostic proposals of a batch from :class:`CenterNetHead` outputs, as CenterNet2 makes them at test time.

    ``heat_logits [(B, 1, H_l, W_l)]``, ``regs [(B, 4, H_l, W_l)]`` and ``strides [s_l]`` per level. Per image and
    level: the locations whose ``sigmoid(logit)`` is above ``score_thr`` (strictly), at most the ``pre_nms`` highest;
    location ``(x, y)`` has centre ``(x * s + s // 2, y * s + s // 2)`` and box ``centre -/+ reg * s``
    (``x1, y1, x2, y2``), with ``x2 >= x1 + 0.01`` and ``y2 >= y1 + 0.01`` enforced; its score is
    ``sqrt(sigmoid(logit))``. The levels' candidates together go through NMS at IoU ``iou``, then every box scoring
    at least the ``post_nms``-th highest score is kept (ties there can keep more than ``post_nms``). Boxes are not
    clipped to the image.

    Returns one ``(boxes (K, 4) float32 xyxy in the pixels of the network input, scores (K,))`` per image, by
    decreasing score, as the original's ``batched_nms`` returns them. Computed in float32 whatever the inputs' dtype.

    Equal scores: the original orders them as its unsorted ``topk`` and ``torchvision.ops.nms``'s sort happen to
    leave them; here they go by level, then row-major location (:func:`~vfe_hub.layers.nms.score_order`), which
    decides which of two equal-scoring overlapping boxes survives NMS and which equal candidates fill the last
    places of a level's ``pre_nms``.
    """
    results = []
    for i in range(heat_logits[0].shape[0]):
        boxes, scores = [], []
        for logits, reg, stride in zip(heat_logits, regs, strides):
            heat = logits[i, 0].sigmoid().flatten()
            where = torch.nonzero(heat > score_thr).squeeze(1)
            if len(where) > pre_nms:
                where = where[score_order(heat[where])[:pre_nms]].sort().values
            width = logits.shape[-1]
            centres = torch.stack((where % width, where // width), 1) * stride + stride // 2
            dist = (reg[i] * stride).flatten(1)[:, where].T
            box = torch.cat((centres - dist[:, :2], centres + dist[:, 2:]), 1)
            box[:, 2:] = torch.maximum(box[:, 2:], box[:, :2] + 0.01)
            boxes.append(box)
            scores.append(heat[where].sqrt())
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        keep = multiclass_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), iou)
        boxes, scores = boxes[keep], scores[keep]
        if len(scores) > post_nms:
            keep = scores >= scores.kthvalue(len(scores) - post_nms + 1).values
            boxes, scores = boxes[keep], scores[keep]
        results.append((boxes, scores))
    return results
