"""RoI feature pooling with mmdetection's ``SingleRoIExtractor`` conventions."""
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
              legacy: bool = False) -> torch.Tensor:
    """RoIAlign of ``rois (K, 5)`` (``[batch_index, x1, y1, x2, y2]`` in input pixels) on ``feats`` (one map per
    level, of stride ``strides[i]``) into ``(K, C, S, S)``, computed in float32 whatever the dtypes (float32 out).

    ``aligned=True`` (mmcv's default) samples pixel centres (box coordinates shifted by -0.5 feature pixel);
    ``aligned=False`` is the legacy form (torchvision's ``MultiScaleRoIAlign``). With several levels, a RoI of
    scale ``sqrt(w * h)`` goes to level ``floor(log2(scale / finest_scale + 1e-6))`` clamped to the available levels
    (no "+1" in ``w, h``). ``legacy=True`` is maskrcnn-benchmark's ``LevelMapper`` for pixel-inclusive boxes:
    ``scale = sqrt((w + 1) * (h + 1))`` and level ``floor(2 + log2(scale / (4 * finest_scale) + 1e-6))`` (its
    ``floor(k0 + log2(scale / 224 + eps))`` with ``k0 = 4`` on P2-P5).
    """
    if len(feats) == 1:
        return roi_align(feats[0], rois, output_size, 1.0 / strides[0], sampling_ratio, aligned=aligned)
    offset = 1.0 if legacy else 0.0
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
            out[idx] = roi_align(f, rois[idx], output_size, 1.0 / stride, sampling_ratio, aligned=aligned)
    return out
