"""Res2Net v1b backbones (deep stem, average-pool shortcuts) with frozen batch norm and optional modulated
deformable split convs, in the layout of CenterNet2's detectron2 Res2Net (the "DR2101" backbone of CenterNet2 and GTR).

Module names (``i`` = block, ``j`` = split conv, ``0 .. scale - 2``):

- ``stem.{0,3,6}`` 3x3 convs 3->32 (stride 2), 32->32, 32->64, each followed by a frozen BN (``stem.{1,4,7}``) and a
  ReLU; then ``maxpool`` (3x3, stride 2, padding 1). Stride 4.
- ``layer{1-4}.{i}``: ``conv1``/``bn1`` (1x1, carrying the block's stride), ``convs.{j}``/``bns.{j}`` (3x3, stride
  1; a :class:`~vfe_hub.layers.deform_conv.DeformConv` with ``convs.{j}.offset`` in deformable stages),
  ``conv3``/``bn3`` (1x1), and in the first block of each stage ``downsample.1``/``downsample.2`` (1x1 conv and
  frozen BN after ``downsample.0``, an average pool over ``stride x stride`` windows).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .deform_conv import DeformConv
from .resnet import DEPTHS


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: ``conv1`` (1x1, stride ``stride``) splits into ``scale`` chunks of ``width`` channels;
    chunk ``j < scale - 1`` goes through 3x3 conv ``j`` (then frozen BN and ReLU), added first to the previous
    conv's output except in a stage's first block; the last chunk passes untouched; the concatenation goes through
    ``conv3`` (1x1, frozen BN), the shortcut is added, then ReLU.

    The stride sits in ``conv1`` (detectron2's ``STRIDE_IN_1X1``), so every 3x3 conv runs at stride 1 and the last
    chunk needs no pooling. The shortcut of a block that changes the channel count is an average pool over
    ``stride x stride`` windows (``ceil_mode``, padding excluded) followed by a 1x1 conv and frozen BN.
    ``deform`` makes the 3x3 convs modulated deformable convs whose offset convs have no bias.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, scale: int, stride: int = 1,
                 deform: bool = False) -> None:
        super().__init__()
        self.width = width
        bottleneck = width * scale
        self.conv1 = nn.Conv2d(in_channels, bottleneck, 1, stride, bias=False)
        self.bn1 = FrozenBatchNorm2d(bottleneck)
        self.convs = nn.ModuleList(
            DeformConv(width, width, 3, modulated=True, bias=False, offset_bias=False) if deform
            else nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(scale - 1))
        self.bns = nn.ModuleList(FrozenBatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(bottleneck, out_channels, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=False), FrozenBatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = self.relu(self.bn1(self.conv1(x))).split(self.width, 1)
        outs, sp = [], None
        for j, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = chunks[j] if sp is None or self.downsample is not None else sp + chunks[j]
            sp = self.relu(bn(conv(sp.contiguous())))
            outs.append(sp)
        y = self.bn3(self.conv3(torch.cat(outs + [chunks[-1]], 1)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(y + identity)


class Res2Net(nn.Module):
    """Res2Net-50/101/152 v1b (``base_width`` w x ``scale`` s) returning the stages in ``out_indices``
    (0 = layer1 ... 3 = layer4); ``deform_stages[i]`` makes stage ``i``'s split convs modulated deformable convs.

    Input ``(B, 3, H, W)`` normalised image; stage ``i`` has ``256 * 2**i`` channels at stride ``4 * 2**i``
    (``ceil`` of the input size over the stride when it does not divide). Attribute ``out_channels``: the channels
    of the returned maps.
    """

    def __init__(self, depth: int = 101, base_width: int = 26, scale: int = 4,
                 deform_stages: Sequence[bool] = (False, False, True, True),
                 out_indices: Sequence[int] = (1, 2, 3)) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        if scale < 2:
            raise ValueError(f"scale must be at least 2 (one split conv), got {scale}")
        self.out_indices = tuple(out_indices)
        stem = []
        for c_in, c_out, stride in ((3, 32, 2), (32, 32, 1), (32, 64, 1)):
            stem += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), FrozenBatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for i, (blocks, deform) in enumerate(zip(DEPTHS[depth], deform_stages)):
            out_channels, width = 256 * 2**i, base_width * 2**i
            layer = [Bottle2neck(in_channels if b == 0 else out_channels, out_channels, width, scale,
                                 stride=2 if i > 0 and b == 0 else 1, deform=deform) for b in range(blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            in_channels = out_channels
        self.out_channels = [256 * 2**i for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
