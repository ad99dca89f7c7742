"""Hybrid Task Cascade's heads (Chen et al., CVPR 2019; mmdetection v1): the fused semantic branch and the mask
heads with information flow. The box cascade itself is :class:`.cascade.CascadeBoxHeads`."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNorm
from .mask_head import FCNMaskHead


class FusedSemanticHead(nn.Module):
    """HTC's semantic segmentation branch, whose embedding is fused into the RoI features.

    Every pyramid level goes through its 1x1 lateral conv + ReLU (``lateral_convs.{i}``); the other levels are
    first resized to the size of level ``fusion_level`` (bilinear, ``align_corners=True``) and the laterals are
    summed. Then ``num_convs`` x [3x3 conv + ReLU] (``convs.{i}``), and from there ``conv_logits`` (1x1, the
    ``num_classes`` stuff logits; not needed at test time) and ``conv_embedding`` (1x1 + ReLU).

    Input: the pyramid ``[(B, C, H_i, W_i)]``; :meth:`forward` returns the embedding ``(B, C, H_f, W_f)`` at the
    fusion level's stride (mmdetection's ``semantic_feat``).
    """

    def __init__(self, num_ins: int = 5, fusion_level: int = 1, num_convs: int = 4, channels: int = 256,
                 num_classes: int = 183) -> None:
        super().__init__()
        self.fusion_level = fusion_level
        self.lateral_convs = nn.ModuleList(ConvNorm(channels, channels, 1) for _ in range(num_ins))
        self.convs = nn.ModuleList(ConvNorm(channels, channels, 3) for _ in range(num_convs))
        self.conv_embedding = ConvNorm(channels, channels, 1)
        self.conv_logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.relu(self.lateral_convs[self.fusion_level](feats[self.fusion_level]))
        for i, feat in enumerate(feats):
            if i != self.fusion_level:
                feat = F.interpolate(feat, size=x.shape[-2:], mode="bilinear", align_corners=True)
                x = x + torch.relu(self.lateral_convs[i](feat))
        for conv in self.convs:
            x = torch.relu(conv(x))
        return torch.relu(self.conv_embedding(x))


class HTCMaskHead(FCNMaskHead):
    """An :class:`.mask_head.FCNMaskHead` that also takes the previous stage's 14x14 features (information flow):
    ``x + relu(conv_res(res))`` (1x1 conv with bias) enters the convs, and the output of the convs is passed on.

    ``forward(x, res)``: RoI features ``(K, C, S, S)`` and the previous head's ``res (K, C, S, S)`` or None (the
    first stage, whose ``conv_res`` then goes unused) -> ``(logits (K, num_classes, 2S, 2S), features (K, C, S, S))``.
    ``forward(x, res, labels)`` computes only the logits of each RoI's class ``labels (K,)``: ``(K, 2S, 2S)`` (the
    same 1x1 conv, without the ``num_classes`` maps of every RoI). With ``rows (L,)``, ``labels (L,)`` are the
    classes of detections whose RoI is ``x[rows]`` (several classes of one RoI; see :func:`.roi.unique_rois`):
    logits ``(L, 2S, 2S)``, features still ``(K, C, S, S)``.
    """

    def __init__(self, in_channels: int = 256, conv_channels: int = 256, num_convs: int = 4,
                 num_classes: int = 1) -> None:
        super().__init__(in_channels, conv_channels, num_convs, num_classes)
        self.conv_res = ConvNorm(conv_channels, conv_channels, 1)

    def forward(self, x: torch.Tensor, res: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if res is not None:
            x = x + torch.relu(self.conv_res(res))
        for conv in self.convs:
            x = torch.relu(conv(x))
        up = torch.relu(self.upsample(x))
        if labels is None:
            return self.conv_logits(up), x
        if rows is not None:
            up = up[rows]
        weight = self.conv_logits.weight[labels.long(), :, 0, 0]  # (K, C)
        return torch.einsum("kchw,kc->khw", up, weight) + self.conv_logits.bias[labels.long(), None, None], x


def info_flow_mask_probs(heads: Sequence[HTCMaskHead], feats: torch.Tensor, labels: torch.Tensor,
                         rows: torch.Tensor | None = None) -> torch.Tensor:
    """HTC's test-time mask ensemble: the heads run in turn on the same RoI features ``feats (K, C, S, S)``, each
    fed the previous one's features; the mask of each detection's class ``labels (L,)`` (a channel of the logits)
    goes through a sigmoid per head and the probabilities are averaged: ``(L, 2S, 2S)`` float32. Detection ``i``'s
    RoI is ``feats[rows[i]]`` (``rows=None``: ``feats[i]``, ``L = K``)."""
    res, probs = None, []
    for head in heads:
        logits, res = head(feats, res, labels, rows)
        probs.append(logits.float().sigmoid())
    return torch.stack(probs).mean(0)
