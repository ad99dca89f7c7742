"""ResNet and ResNeXt backbones (bottleneck) with frozen batch norm, in mmdetection's two styles, with optional
deformable 3x3 convs (DCNv1) per stage.

``style="pytorch"`` puts a block's stride on its 3x3 conv (torchvision's layout); ``style="caffe"`` puts it on
the first 1x1 conv (the layout of MSRA's original Caffe models, and of mmdetection backbones trained with
``style='caffe'``). Parameter names are torchvision's in both styles (``conv1``, ``bn1``, ``layerN.i.conv{1,2,3}``,
``downsample.{0,1}``), so the style cannot be read from a checkpoint. ``bn_eps`` is the frozen batch norms' eps:
``1e-5`` (mmdetection, torchvision) or ``0`` (maskrcnn-benchmark's ``FrozenBatchNorm2d``, ``w / sqrt(var)``).
Unlike torchvision's ``replace_stride_with_dilation``, a dilated stage dilates **every** block, as mmdetection does
(the DC5 backbones of the video models depend on it).

ResNeXt (``groups > 1``): a block of ``planes`` channels has ``floor(planes * base_width / 64) * groups`` channels
in its 1x1 and grouped 3x3 convs (mmdetection's and torchvision's rule; ``groups=64, base_width=4`` is
"64x4d"). ``deform_stages[i]`` makes the 3x3 conv of **every** block of stage ``i`` (the strided first one too) a
:class:`~.deform_conv.DeformConv` without modulation, whose offset conv (with bias) is ``conv2.offset``
(mmdetection v1 names it ``conv2_offset``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from .deform_conv import DeformConv

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STYLES = ("pytorch", "caffe")


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convs (each with frozen BN; ReLU after the first two and after the residual sum); the
    stride sits on the 3x3 conv (``style="pytorch"``) or on the first 1x1 conv (``style="caffe"``). ``planes``
    sets the output, ``planes * 4`` channels; the inner width is ``planes`` for ResNet and
    ``floor(planes * base_width / 64) * groups`` for ResNeXt (``groups`` channel groups in the 3x3 conv, which is
    a DCNv1 :class:`~.deform_conv.DeformConv` when ``deform``)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 style: str = "pytorch", groups: int = 1, base_width: int = 64, deform: bool = False,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        out = planes * self.expansion
        width = planes if groups == 1 else planes * base_width // 64 * groups
        stride1, stride2 = (stride, 1) if style == "caffe" else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width, eps=bn_eps)
        if deform:
            self.conv2 = DeformConv(width, width, 3, stride2, padding=dilation, dilation=dilation, groups=groups,
                                    modulated=False, bias=False, offset_bias=True)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, stride2, padding=dilation, dilation=dilation, groups=groups,
                                   bias=False)
        self.bn2 = FrozenBatchNorm2d(width, eps=bn_eps)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False),
                                            FrozenBatchNorm2d(out, eps=bn_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet(nn.Module):
    """ResNet-50/101/152 (or ResNeXt with ``groups``, ``base_width``) returning the outputs of the stages in
    ``out_indices`` (0 = layer1 ... 3 = layer4).

    Input ``(B, 3, H, W)`` normalised image; output stage ``i`` has ``256 * 2**i`` channels at stride
    ``4 * prod(strides[1:i+1])``. ``style`` is ``"pytorch"`` (stride on each block's 3x3 conv) or ``"caffe"``
    (stride on its first 1x1 conv); ``deform_stages`` (four flags) puts DCNv1 in every block of those stages;
    ``bn_eps`` is the frozen batch norms' eps (0 for maskrcnn-benchmark).
    """

    def __init__(
        self,
        depth: int = 50,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        style: str = "pytorch",
        groups: int = 1,
        base_width: int = 64,
        deform_stages: Sequence[bool] = (False, False, False, False),
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.out_indices = tuple(out_indices)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for i, (blocks, stride, dilation, deform) in enumerate(zip(DEPTHS[depth], strides, dilations, deform_stages)):
            planes = 64 * 2**i
            kind = dict(style=style, groups=groups, base_width=base_width, deform=deform, bn_eps=bn_eps)
            layer = [Bottleneck(in_channels, planes, stride, dilation, **kind)]
            in_channels = planes * Bottleneck.expansion
            layer += [Bottleneck(in_channels, planes, 1, dilation, **kind) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.out_channels = [256 * 2**i for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
            if i >= max(self.out_indices):
                break
        return outs
