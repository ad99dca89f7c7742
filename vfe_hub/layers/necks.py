"""Necks between backbone and heads: mmdetection v2's ``ChannelMapper`` and ``FPN``."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNorm


class ChannelMapper(nn.Module):
    """One ``kernel_size`` conv (with bias) + ReLU per input level, mapping each to ``out_channels``."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, out_channels, kernel_size, padding=kernel_size // 2) for c in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.relu(conv(f)) for conv, f in zip(self.convs, feats)]


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral convs, a top-down path (nearest upsampling to the finer level's exact size, then
    sum), 3x3 output convs, no activation; levels beyond the inputs are ``max_pool2d(kernel 1, stride 2)`` of the
    last output (``num_outs=5`` on 4 inputs gives P2-P6). ``norm=True`` puts a batch norm after every conv.

    Input: ``[(B, in_channels[i], H_i, W_i)]`` finest first; output ``num_outs`` maps of ``out_channels``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_outs: int = 5,
                 norm: bool = False) -> None:
        super().__init__()
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(ConvNorm(c, out_channels, 1, norm) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvNorm(out_channels, out_channels, 3, norm) for _ in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs
