"""Deformable convolution (DCNv1 and modulated DCNv2) with its own offset conv, on ``torchvision.ops.deform_conv2d``."""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from .precision import float32


class DeformConv(nn.Module):
    """A ``kernel_size`` deformable convolution whose sampling offsets (and, when ``modulated``, masks) come from a
    plain conv on the same input, with the same kernel size, stride, padding and dilation.

    Parameters: ``offset.weight [(3 if modulated else 2) * k * k, in, k, k]`` (``offset.bias`` iff ``offset_bias``),
    ``weight [out, in / groups, k, k]``, ``bias [out]`` iff ``bias``. One deformable group; ``groups`` channel groups
    (ResNeXt's grouped 3x3 convs), which share the offsets.

    The offset conv's output holds, for tap ``t = i * k + j`` of the kernel, the row offset ``dy`` in channel ``2t``
    and the column offset ``dx`` in ``2t + 1``; modulated, channels ``2kk:3kk`` are mask logits (``sigmoid``, channel
    ``2kk + t`` for tap ``t``). Tap ``t`` of output pixel ``p`` samples the input bilinearly at
    ``p * stride - padding + dilation * (i, j) + (dy, dx)``, reading zero outside the map, and is multiplied by its
    mask. This is the layout of detectron2's and mmcv's ``(Modulated)DeformConv`` with the offset taken as the first
    ``2kk`` channels of the offset conv's output.

    ``(B, in, H, W) -> (B, out, H', W')`` with ``H' = (H + 2 * padding - dilation * (k - 1) - 1) // stride + 1``, in
    the dtype of the input; the offset conv and the sampling run in float32 (under autocast too: the offsets are
    sampling positions, see :data:`.precision.OPS`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, groups: int = 1, *, modulated: bool, bias: bool, offset_bias: bool) -> None:
        super().__init__()
        self.modulated = modulated
        self.stride, self.padding, self.dilation = stride, padding, dilation
        taps = kernel_size * kernel_size
        self.offset = nn.Conv2d(in_channels, (3 if modulated else 2) * taps, kernel_size, stride, padding, dilation,
                                bias=offset_bias)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        # zero offsets and mask logits: a new layer starts as a plain conv (times 0.5 when modulated)
        nn.init.zeros_(self.offset.weight)
        if offset_bias:
            nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._sample(x).to(x.dtype)

    @float32("deformable convolution")
    def _sample(self, x: torch.Tensor) -> torch.Tensor:
        """The offsets and ``torchvision.ops.deform_conv2d`` in float32 (float32 out)."""
        offset = self.offset(x)
        mask = None
        if self.modulated:
            split = 2 * self.weight.shape[-1] * self.weight.shape[-2]
            offset, mask = offset[:, :split], offset[:, split:].sigmoid()
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)
