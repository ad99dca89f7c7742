"""Anchors with mmdetection's (v2, non-legacy) conventions, or given base anchors (e.g. maskrcnn-benchmark's)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class AnchorGenerator:
    """Anchors for each feature level, in the order (H, W, A) of ``head_output.permute(1, 2, 0).reshape(-1)``.

    Base anchors are centred on (0, 0) and **not rounded**: ``w = base * scale / sqrt(ratio)``,
    ``h = base * scale * sqrt(ratio)`` for ratios outer and scales inner; the grid shift of cell (y, x) is
    ``(x * stride, y * stride)``. Boxes are ``xyxy`` in input pixels.

    ``legacy=True`` gives mmdetection v1's pixel-inclusive anchors: centred on ``((base - 1) / 2, (base - 1) / 2)``
    with corners ``ctr -/+ 0.5 * (w - 1)`` (and the same for ``h``), **rounded** to integers.
    """

    def __init__(self, strides: Sequence[int], ratios: Sequence[float], scales: Sequence[float],
                 base_sizes: Sequence[int] | None = None, legacy: bool = False) -> None:
        self.strides = list(strides)
        self.base = []
        for stride, base in zip(self.strides, base_sizes or self.strides):
            h_ratio = torch.tensor([math.sqrt(r) for r in ratios])[:, None]
            w_ratio = 1 / h_ratio
            scales_t = torch.tensor(list(scales), dtype=torch.float32)[None, :]
            ws = (base * w_ratio * scales_t).reshape(-1)
            hs = (base * h_ratio * scales_t).reshape(-1)
            if legacy:
                ctr, ws, hs = 0.5 * (base - 1), ws - 1, hs - 1
                corners = [ctr - 0.5 * ws, ctr - 0.5 * hs, ctr + 0.5 * ws, ctr + 0.5 * hs]
                self.base.append(torch.stack(corners, dim=-1).round())
            else:
                self.base.append(torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1))

    @classmethod
    def from_base(cls, strides: Sequence[int], base: Sequence[torch.Tensor]) -> AnchorGenerator:
        """A generator with the given base anchors ``(A, 4)`` per level (xyxy around cell ``(0, 0)``), e.g. those
        a checkpoint stores; the grid is the same as for computed ones."""
        anchors = cls.__new__(cls)
        anchors.strides, anchors.base = list(strides), [b.float() for b in base]
        return anchors

    @property
    def num_anchors(self) -> int:
        return self.base[0].shape[0]

    def grid(self, level: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Anchors ``(H * W * A, 4)`` of ``level`` for a feature map of ``size = (H, W)``."""
        h, w = size
        stride = self.strides[level]
        ys = torch.arange(h, device=device, dtype=torch.float32) * stride
        xs = torch.arange(w, device=device, dtype=torch.float32) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        return (shifts + self.base[level].to(device)[None]).reshape(-1, 4)


def detectron_cell_anchors(stride: int, size: float, ratios: Sequence[float]) -> torch.Tensor:
    """Detectron's (and maskrcnn-benchmark's) ``generate_anchors`` for one FPN level: ``(len(ratios), 4)`` xyxy
    pixel-inclusive boxes of area about ``size**2``, ratio ``h / w``, centred on the centre of the ``stride``-pixel
    cell ``[0, stride - 1]``: widths ``round(sqrt(stride**2 / r))`` and heights ``round(w * r)`` (half to even) of
    the cell are scaled by ``size / stride``."""
    ratios_t = torch.tensor(list(ratios), dtype=torch.float64)
    ctr = 0.5 * (stride - 1)
    ws = torch.round(torch.sqrt(stride * stride / ratios_t))
    hs = torch.round(ws * ratios_t)
    ws, hs = ws * (size / stride), hs * (size / stride)
    return torch.stack([ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1), ctr + 0.5 * (ws - 1), ctr + 0.5 * (hs - 1)],
                       dim=1).float()
