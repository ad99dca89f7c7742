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
    sum), 3x3 output convs, no activation. ``norm=True`` puts a batch norm after every lateral and output conv.

    Levels beyond the inputs (``num_outs`` minus the number of inputs) come from ``extra``:

    - ``"maxpool"``: ``max_pool2d(kernel 1, stride 2)`` of the last output (mmdetection; ``num_outs=5`` on 4
      inputs gives P2-P6);
    - ``"p6p7"``: 3x3 stride-2 convs with bias (``extra_convs.{k}``), the first on the last FPN output, each next
      one on the ReLU of the previous level (detectron2's ``LastLevelP6P7`` fed with P5; ``num_outs=5`` on 3
      inputs gives P3-P7).

    detectron2 upsamples by a factor of 2 instead of to the finer level's size; the two are the same nearest
    neighbour sampling whenever each level is exactly half the size of the finer one (the case for images padded
    to a multiple of the coarsest input stride, which detectron2 requires).

    Input: ``[(B, in_channels[i], H_i, W_i)]`` finest first; output ``num_outs`` maps of ``out_channels``.
    """

    EXTRAS = ("maxpool", "p6p7")

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, num_outs: int = 5,
                 norm: bool = False, extra: str = "maxpool") -> None:
        super().__init__()
        if extra not in self.EXTRAS:
            raise ValueError(f"extra must be one of {self.EXTRAS}, got {extra!r}")
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(ConvNorm(c, out_channels, 1, norm) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvNorm(out_channels, out_channels, 3, norm) for _ in in_channels)
        self.extra_convs = None
        if extra == "p6p7":
            self.extra_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 2, 1)
                                             for _ in range(num_outs - len(in_channels)))

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        if self.extra_convs is not None:
            for k, conv in enumerate(self.extra_convs):
                outs.append(conv(outs[-1] if k == 0 else F.relu(outs[-1])))
        else:
            while len(outs) < self.num_outs:
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs
