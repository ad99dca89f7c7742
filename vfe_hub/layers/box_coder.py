"""Box regression decoding with mmdetection's ``DeltaXYWHBBoxCoder`` conventions (no "+1" in widths)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class DeltaXYWHCoder:
    """Decode ``(dx, dy, dw, dh)`` deltas, denormalised by ``stds`` and ``means``, against reference boxes.

    ``dw, dh`` are clamped to ``|log(16 / 1000)|``; results are clipped to ``[0, W] x [0, H]`` of ``max_shape``.
    """

    def __init__(self, stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0), means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                 wh_ratio_clip: float = 16 / 1000) -> None:
        self.stds = tuple(stds)
        self.means = tuple(means)
        self.max_ratio = abs(math.log(wh_ratio_clip))

    def decode(self, boxes: torch.Tensor, deltas: torch.Tensor, max_shape: tuple[int, int] | None) -> torch.Tensor:
        """``boxes (N, 4)`` xyxy and ``deltas (N, 4 * K)`` give ``(N, 4 * K)`` xyxy boxes (K classes or 1)."""
        n, k = deltas.shape[0], deltas.shape[1] // 4
        d = deltas.reshape(-1, 4) * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        ref = boxes.repeat(1, k).reshape(-1, 4)
        center = (ref[:, :2] + ref[:, 2:]) * 0.5
        size = ref[:, 2:] - ref[:, :2]
        center = center + size * d[:, :2]
        size = size * d[:, 2:].clamp(min=-self.max_ratio, max=self.max_ratio).exp()
        out = torch.cat([center - size * 0.5, center + size * 0.5], dim=-1)
        if max_shape is not None:
            h, w = max_shape
            out[:, 0::2] = out[:, 0::2].clamp(min=0, max=w)
            out[:, 1::2] = out[:, 1::2].clamp(min=0, max=h)
        return out.reshape(n, 4 * k)
