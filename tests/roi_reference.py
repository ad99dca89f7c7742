"""RoIAlign references in float64, written out from the originals' CUDA kernels one sample at a time.

``rule`` names the kernel: ``"mmdet_v1"`` (mmdetection v1's ``roi_align_kernel.cu``: ends at ``(x2 + 1) * s``,
sizes ``max(end - start, 0)``), ``"maskrcnn_benchmark"`` (``ROIAlign_cuda.cu``: ends at ``x2 * s``, sizes at
least 1) and ``"mmcv_aligned"`` (mmcv's ``RoIAlign(aligned=True)``: every coordinate ``* s - 0.5``, no minimum).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _bilinear(feat: np.ndarray, y: float, x: float) -> np.ndarray:
    """The kernels' ``bilinear_interpolate`` of ``feat (C, H, W)`` at ``(y, x)``."""
    _, height, width = feat.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * feat[:, y_low, x_low] + hy * lx * feat[:, y_low, x_high] + ly * hx * feat[:, y_high, x_low]
            + ly * lx * feat[:, y_high, x_high])


def roi_align(feat: torch.Tensor, rois: torch.Tensor, size: int, scale: float, sampling: int,
              rule: str) -> torch.Tensor:
    """``(K, C, size, size)`` float64 RoIAlign of ``rois (K, 5)`` on ``feat (B, C, H, W)`` by ``rule``
    (``sampling > 0``)."""
    maps = feat.double().numpy()
    out = np.zeros((len(rois), feat.shape[1], size, size))
    for k, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        if rule == "mmdet_v1":
            start_x, start_y, end_x, end_y = x1 * scale, y1 * scale, (x2 + 1) * scale, (y2 + 1) * scale
            width, height = max(end_x - start_x, 0.0), max(end_y - start_y, 0.0)
        elif rule == "maskrcnn_benchmark":
            start_x, start_y, end_x, end_y = x1 * scale, y1 * scale, x2 * scale, y2 * scale
            width, height = max(end_x - start_x, 1.0), max(end_y - start_y, 1.0)
        else:
            start_x, start_y, end_x, end_y = (v * scale - 0.5 for v in (x1, y1, x2, y2))
            width, height = end_x - start_x, end_y - start_y
        bin_w, bin_h = width / size, height / size
        for ph in range(size):
            for pw in range(size):
                total = 0
                for iy in range(sampling):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / sampling
                    for ix in range(sampling):
                        x = start_x + pw * bin_w + (ix + 0.5) * bin_w / sampling
                        total = total + _bilinear(maps[int(b)], y, x)
                out[k, :, ph, pw] = total / (sampling * sampling)
    return torch.from_numpy(out)


def mmdet_v1_level(box: list[float], levels: int = 4, finest_scale: int = 56) -> int:
    """mmdetection v1's ``map_roi_levels`` for one pixel-inclusive ``box = [x1, y1, x2, y2]``."""
    scale = math.sqrt((box[2] - box[0] + 1) * (box[3] - box[1] + 1))
    return min(max(math.floor(math.log2(scale / finest_scale + 1e-6)), 0), levels - 1)
