"""Box regression decoding: mmdetection's ``DeltaXYWHBBoxCoder`` and detectron2's ``Box2BoxTransform``.

Both shift a reference box's centre by ``(dx * w, dy * h)`` and scale its size by ``(exp(dw), exp(dh))``, with
widths ``x2 - x1`` (no "+1"); they differ in how the deltas are denormalised, where the centre is taken, how
``dw, dh`` are clamped and whether decoding clips. Boxes are ``xyxy``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .precision import float32


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """``boxes (N, 4k)`` xyxy clamped to ``[0, W] x [0, H]`` of ``image_size = (H, W)`` (a new tensor)."""
    h, w = image_size
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(min=0, max=w)
    out[:, 1::2] = out[:, 1::2].clamp(min=0, max=h)
    return out


def _apply(center: torch.Tensor, size: torch.Tensor, d: torch.Tensor, min_log: float | None,
           max_log: float) -> torch.Tensor:
    """Rows ``(M, 4)`` xyxy from reference centres and sizes ``(M, 2)`` and denormalised deltas ``(M, 4)``, with
    ``dw, dh`` clamped to ``[min_log, max_log]`` (no lower bound when ``min_log`` is None)."""
    center = center + size * d[:, :2]
    size = size * d[:, 2:].clamp(min=min_log, max=max_log).exp()
    return torch.cat([center - size * 0.5, center + size * 0.5], dim=-1)


class DeltaXYWHCoder:
    """Decode ``(dx, dy, dw, dh)`` deltas, denormalised by ``stds`` and ``means``, against reference boxes.

    The centre is ``(x1 + x2) / 2``; ``dw, dh`` are clamped to ``|log(16 / 1000)|`` on both sides; results are
    clipped to ``[0, W] x [0, H]`` of ``max_shape`` when given (mmdetection v2).

    ``legacy=True`` is mmdetection v1's ``delta2bbox`` for pixel-inclusive boxes: the width is ``x2 - x1 + 1``,
    the decoded corners are ``ctr -/+ 0.5 * w`` moved half a pixel inwards (``+0.5`` / ``-0.5``), and clipping is
    to ``[0, W - 1] x [0, H - 1]``.
    """

    def __init__(self, stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0), means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
                 wh_ratio_clip: float = 16 / 1000, legacy: bool = False) -> None:
        self.stds = tuple(stds)
        self.means = tuple(means)
        self.max_ratio = abs(math.log(wh_ratio_clip))
        self.offset = 1.0 if legacy else 0.0

    @float32("box decoding")
    def decode(self, boxes: torch.Tensor, deltas: torch.Tensor, max_shape: tuple[int, int] | None) -> torch.Tensor:
        """``boxes (N, 4)`` xyxy and ``deltas (N, 4 * K)`` give ``(N, 4 * K)`` xyxy boxes (K classes or 1)."""
        n, k = deltas.shape[0], deltas.shape[1] // 4
        d = deltas.reshape(-1, 4) * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        ref = boxes.repeat(1, k).reshape(-1, 4)
        size = ref[:, 2:] - ref[:, :2] + self.offset
        out = _apply((ref[:, :2] + ref[:, 2:]) * 0.5, size, d, -self.max_ratio, self.max_ratio)
        if self.offset:
            out = out + out.new_tensor([0.5, 0.5, -0.5, -0.5])
        out = out.reshape(n, 4 * k)
        if max_shape is None:
            return out
        return clip_boxes(out, (max_shape[0] - self.offset, max_shape[1] - self.offset))


class Box2BoxCoder:
    """detectron2's ``Box2BoxTransform.apply_deltas``: deltas divided by ``weights = (wx, wy, ww, wh)`` (e.g.
    ``(10, 10, 5, 5)``), the centre ``x1 + 0.5 * w``, ``dw, dh`` clamped from above only, at ``scale_clamp``.

    detectron2 never clips while decoding (its box predictors return unclipped boxes; clipping happens where
    the boxes are used); ``decode`` clips to ``[0, W] x [0, H]`` only when ``max_shape`` is given.

    ``legacy=True`` is maskrcnn-benchmark's ``BoxCoder`` (``TO_REMOVE = 1``): boxes are pixel-inclusive, so the
    width is ``x2 - x1 + 1``, the decoded ``x2`` is ``ctr + 0.5 * w - 1``, and clipping is to
    ``[0, W - 1] x [0, H - 1]`` (its ``clip_to_image``).
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), scale_clamp: float = math.log(1000.0 / 16),
                 legacy: bool = False) -> None:
        self.weights = tuple(weights)
        self.scale_clamp = scale_clamp
        self.offset = 1.0 if legacy else 0.0

    @float32("box decoding")
    def decode(self, boxes: torch.Tensor, deltas: torch.Tensor, max_shape: tuple[int, int] | None) -> torch.Tensor:
        """``boxes (N, 4)`` xyxy and ``deltas (N, 4 * K)`` give ``(N, 4 * K)`` xyxy boxes (K classes or 1)."""
        n, k = deltas.shape[0], deltas.shape[1] // 4
        d = deltas.reshape(-1, 4) / deltas.new_tensor(self.weights)
        ref = boxes.repeat(1, k).reshape(-1, 4)
        size = ref[:, 2:] - ref[:, :2] + self.offset
        out = _apply(ref[:, :2] + 0.5 * size, size, d, None, self.scale_clamp)
        if self.offset:
            out[:, 2:] -= self.offset
        out = out.reshape(n, 4 * k)
        if max_shape is None:
            return out
        return clip_boxes(out, (max_shape[0] - self.offset, max_shape[1] - self.offset))
