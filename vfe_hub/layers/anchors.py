"""Anchors with mmdetection's (v2, non-legacy) conventions."""
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
