"""Necks between backbone and heads."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ChannelMapper(nn.Module):
    """One ``kernel_size`` conv (with bias) + ReLU per input level, mapping each to ``out_channels``."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, out_channels, kernel_size, padding=kernel_size // 2) for c in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.relu(conv(f)) for conv, f in zip(self.convs, feats)]
