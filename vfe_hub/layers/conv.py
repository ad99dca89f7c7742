"""A convolution with an optional batch norm, named as mmcv's ``ConvModule`` names them (``conv``, ``bn``)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


class ConvNorm(nn.Module):
    """A ``kernel_size`` conv (same padding) followed by an optional frozen batch norm (then the conv has no bias).
    No activation: callers apply their own. ``(B, in_channels, H, W) -> (B, out_channels, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
        self.bn = FrozenBatchNorm2d(out_channels) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.bn is None else self.bn(x)
