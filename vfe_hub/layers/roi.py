"""RoI feature pooling with mmdetection's ``SingleRoIExtractor`` conventions, and each code base's RoIAlign rule.

The RoIAlign kernels of the originals, checked against their sources:

- mmcv's ``RoIAlign(aligned=True)`` (DetPro, MAMBA, STPN) and detectron2's ``ROIAlignV2`` (GTR; detectron2 calls
  ``torchvision.ops.roi_align(aligned=True)``): box ends at ``x2 * s - 0.5``, no minimum size; torchvision's
  ``aligned=True`` is the same rule.
- maskrcnn-benchmark's ``ROIAlign`` (LST): ends at ``x2 * s``, sizes at least one feature pixel; torchvision's
  ``aligned=False`` is the same rule.
- mmdetection v1's ``RoIAlign`` (BAGS, ``mmdet/ops/roi_align/src/roi_align_kernel.cu``): ends at ``(x2 + 1) * s``
  and sizes ``max(end - start, 0)``, so a RoI narrower than one feature pixel keeps its true size, where
  torchvision widens it to one pixel (``inclusive=True`` below: torchvision where the two agree, an exact path
  for the narrow RoIs).

The bilinear sampler is the same in all of them (zero beyond one pixel outside the map, the edge value within it).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import roi_align

from .precision import float32


def boxes_to_rois(boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-image boxes ``[(K_i, 4)]`` to ``(sum K_i, 5)`` rows ``[batch_index, x1, y1, x2, y2]``."""
    return torch.cat([torch.cat([b.new_full((len(b), 1), i), b], dim=1) for i, b in enumerate(boxes)])


def unique_rois(rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows ``(U, 5)`` of ``rois (K, 5)`` and, for each row, the index of its distinct row ``(K,)``:
    ``f(rois) == f(unique)[inverse]`` for any per-RoI head ``f``, run ``U`` times instead of ``K``.

    Class-agnostic box regression gives every class kept for a proposal the same box, so the final detections
    repeat boxes (one RoI per object with several plausible classes); their mask heads need each box only once.
    """
    return torch.unique(rois, dim=0, return_inverse=True)


@float32("RoIAlign")
def pool_rois(feats: Sequence[torch.Tensor], rois: torch.Tensor, strides: Sequence[int], output_size: int = 7,
              sampling_ratio: int = 0, finest_scale: int = 56, aligned: bool = True,
              legacy: bool = False, inclusive: bool = False) -> torch.Tensor:
    """RoIAlign of ``rois (K, 5)`` (``[batch_index, x1, y1, x2, y2]`` in input pixels) on ``feats`` (one map per
    level, of stride ``strides[i]``) into ``(K, C, S, S)``, computed in float32 whatever the dtypes (float32 out).

    ``aligned=True`` (mmcv's default) samples pixel centres (box coordinates shifted by -0.5 feature pixel);
    ``aligned=False`` is the legacy form (torchvision's ``MultiScaleRoIAlign``). With several levels, a RoI of
    scale ``sqrt(w * h)`` goes to level ``floor(log2(scale / finest_scale + 1e-6))`` clamped to the available levels
    (no "+1" in ``w, h``). ``legacy=True`` is maskrcnn-benchmark's ``LevelMapper`` for pixel-inclusive boxes:
    ``scale = sqrt((w + 1) * (h + 1))`` and level ``floor(2 + log2(scale / (4 * finest_scale) + 1e-6))`` (its
    ``floor(k0 + log2(scale / 224 + eps))`` with ``k0 = 4`` on P2-P5).

    ``inclusive=True`` is mmdetection v1's extractor and kernel for pixel-inclusive ``rois`` (``aligned`` is then
    ignored; ``sampling_ratio > 0``): level scale ``sqrt((x2 - x1 + 1) * (y2 - y1 + 1))``, box ends at
    ``(x2 + 1) * s`` and sizes ``max(end - start, 0)`` (:func:`roi_align_inclusive`).
    """
    if inclusive and sampling_ratio <= 0:
        raise ValueError("inclusive RoIAlign (mmdetection v1's) takes a fixed sampling_ratio > 0")

    def align(f: torch.Tensor, r: torch.Tensor, stride: int) -> torch.Tensor:
        if inclusive:
            return roi_align_inclusive(f, r, output_size, 1.0 / stride, sampling_ratio)
        return roi_align(f, r, output_size, 1.0 / stride, sampling_ratio, aligned=aligned)

    if len(feats) == 1:
        return align(feats[0], rois, strides[0])
    offset = 1.0 if legacy or inclusive else 0.0
    scale = ((rois[:, 3] - rois[:, 1] + offset) * (rois[:, 4] - rois[:, 2] + offset)).sqrt()
    if legacy:
        levels = torch.floor(2 + torch.log2(scale / (4 * finest_scale) + 1e-6))
    else:
        levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    levels = levels.clamp(0, len(feats) - 1).long()
    out = feats[0].new_zeros(rois.shape[0], feats[0].shape[1], output_size, output_size)
    for level, (f, stride) in enumerate(zip(feats, strides)):
        idx = torch.nonzero(levels == level).squeeze(1)
        if idx.numel():
            out[idx] = align(f, rois[idx], stride)
    return out


#: RoIs pooled at once by :func:`_roi_align_unclamped` (bounds its gathered samples)
_EXACT_CHUNK = 16


def roi_align_inclusive(feat: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float,
                        sampling_ratio: int) -> torch.Tensor:
    """mmdetection v1's RoIAlign (``roi_align_kernel.cu``) of pixel-inclusive ``rois (K, 5)`` on ``feat (B, C, H,
    W)`` into ``(K, C, S, S)``: box ``[x1 * s, (x2 + 1) * s]`` (likewise in y) split into ``S x S`` bins, each the
    mean of ``sampling_ratio x sampling_ratio`` bilinear samples at ``start + (i + (j + 0.5) / n) * size / S``, with
    ``size = max(end - start, 0)``.

    torchvision's unaligned ``roi_align`` on the box ends ``x2 + 1`` computes the same, except that it widens a
    size below one feature pixel to one; it pools every RoI, and the RoIs narrower or lower than one feature pixel
    are pooled again by :func:`_roi_align_unclamped`, which follows the kernel's rule.
    """
    edges = rois + rois.new_tensor([0.0, 0.0, 0.0, 1.0, 1.0])  # the kernel's x2 + 1, y2 + 1
    out = roi_align(feat, edges, output_size, spatial_scale, sampling_ratio, aligned=False)
    narrow = torch.nonzero((edges[:, 3:5] * spatial_scale - edges[:, 1:3] * spatial_scale < 1).any(1)).squeeze(1)
    for part in narrow.split(_EXACT_CHUNK) if len(narrow) else ():
        out[part] = _roi_align_unclamped(feat, edges[part], output_size, spatial_scale, sampling_ratio).to(out.dtype)
    return out


def _roi_align_unclamped(feat: torch.Tensor, edges: torch.Tensor, output_size: int, spatial_scale: float,
                         n: int) -> torch.Tensor:
    """RoIAlign of ``edges (K, 5)`` (``[batch_index, x1, y1, x2 + 1, y2 + 1]``) with sizes ``max(end - start, 0)``,
    ``n x n`` samples per bin, in float32: ``(K, C, S, S)``."""
    k, (c, h, w), p = len(edges), feat.shape[1:], output_size
    start = edges[:, 1:3].float() * spatial_scale  # (K, 2): x, y
    size = (edges[:, 3:5].float() * spatial_scale - start).clamp(min=0)
    bin_size = size / p
    cell = torch.arange(p, dtype=torch.float32, device=feat.device)[:, None, None]
    sample = (torch.arange(n, dtype=torch.float32, device=feat.device) + 0.5)[None, :, None]
    bin_size = bin_size[:, None, None]
    coords = start[:, None, None] + cell * bin_size + sample * bin_size / n  # (K, p, n, 2): the kernel's order
    (x_lo, x_hi, wx_lo, wx_hi), (y_lo, y_hi, wy_lo, wy_hi) = _linear(coords[..., 0], w), _linear(coords[..., 1], h)
    flat = feat.flatten(2)  # (B, C, H * W)
    batch = edges[:, 0].long()[:, None]
    out = 0
    for ys, wy in ((y_lo, wy_lo), (y_hi, wy_hi)):
        for xs, wx in ((x_lo, wx_lo), (x_hi, wx_hi)):
            index = (ys[:, :, :, None, None] * w + xs[:, None, None]).reshape(k, -1)  # (K, p * n * p * n)
            values = flat[batch, :, index].float().view(k, p, n, p, n, c)
            out = out + (wy[:, :, :, None, None] * wx[:, None, None])[..., None] * values
    return out.mean(dim=(2, 4)).permute(0, 3, 1, 2)


def _linear(v: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel's ``bilinear_interpolate`` along one axis of ``length`` pixels for sample positions ``v``:
    ``(low index, high index, weight of low, weight of high)``; weights are zero where ``v < -1`` or
    ``v > length``, positions in ``[-1, 0]`` read pixel 0 and those past ``length - 1`` the last pixel."""
    valid = ((v >= -1) & (v <= length)).float()
    v = v.clamp(min=0)
    low = v.long()
    end = low >= length - 1
    low = torch.where(end, length - 1, low)
    v = torch.where(end, low.float(), v)
    frac = v - low
    return low, torch.where(end, low, low + 1), (1 - frac) * valid, frac * valid
