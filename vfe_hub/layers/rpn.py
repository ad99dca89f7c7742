"""Region proposal network: the head and mmdetection's (v2) test-time proposal selection."""
from __future__ import annotations

import torch
from torch import nn

from .anchors import AnchorGenerator
from .box_coder import Box2BoxCoder, DeltaXYWHCoder
from .nms import multiclass_nms
from .precision import Float32Conv2d, float32


class RPNHead(nn.Module):
    """A shared 3x3 conv + ReLU, then per-anchor objectness logits (``A``) and box deltas (``4A``) per level (1x1
    convs, float32 under autocast: :mod:`.precision`)."""

    def __init__(self, in_channels: int, feat_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.cls_logits = Float32Conv2d(feat_channels, num_anchors, 1)
        self.bbox_pred = Float32Conv2d(feat_channels, num_anchors * 4, 1)

    def forward(self, feats: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level ``(logits (B, A, H, W), deltas (B, 4A, H, W))``."""
        outs = []
        for f in feats:
            t = torch.relu(self.conv(f))
            outs.append((self.cls_logits(t), self.bbox_pred(t)))
        return outs


class ProposalSelector:
    """Turns RPN outputs into proposals the way mmdetection v2's ``RPNHead`` does at test time.

    Per level the ``nms_pre`` highest sigmoid scores are kept and decoded (clipped to the resized, unpadded image);
    with ``min_size > 0`` boxes narrower or lower than ``min_size`` are dropped (mmdetection 2.7's
    ``min_bbox_size``: kept where ``w >= min_size`` and ``h >= min_size``), with ``min_size = 0`` boxes of zero
    width or height are dropped (``w > 0`` and ``h > 0``); NMS at ``iou`` runs per level
    (:func:`.nms.multiclass_nms` keyed by level); the best ``max_per_img`` remain, sorted by score.

    ``legacy=True`` is for pixel-inclusive boxes (mmdetection v1, maskrcnn-benchmark): sizes and NMS IoU over
    ``x2 - x1 + 1`` widths, boxes kept when both sizes are at least ``min_size`` (so nothing is dropped by size
    when ``min_size = 0``), decoded by ``coder`` (default the legacy :class:`.box_coder.DeltaXYWHCoder`, mmdetection
    v1's ``delta2bbox``, clipped to ``[0, W - 1]``; maskrcnn-benchmark's ``RPNPostProcessor`` passes
    :class:`.box_coder.Box2BoxCoder` with ``legacy=True``, whose only difference is that ``dw, dh`` are clamped from
    above only). The best ``max_per_img`` over all levels are kept per image (maskrcnn-benchmark's
    ``FPN_POST_NMS_TOP_N_TEST``; mmdetection v1's per-level ``nms_post`` cut of at least ``max_per_img`` before the
    global top ``max_per_img`` keeps the same boxes).
    """

    def __init__(self, anchors: AnchorGenerator, nms_pre: int, iou: float, max_per_img: int,
                 min_size: float = 0.0, legacy: bool = False, coder: DeltaXYWHCoder | Box2BoxCoder | None = None
                 ) -> None:
        self.anchors = anchors
        self.offset = 1.0 if legacy else 0.0
        self.coder = coder or DeltaXYWHCoder(legacy=legacy)
        self.nms_pre = nms_pre
        self.iou = iou
        self.max_per_img = max_per_img
        self.min_size = min_size

    @float32("proposal selection")
    def __call__(self, outputs: list[tuple[torch.Tensor, torch.Tensor]],
                 image_sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Proposals per image: ``(boxes (K, 4) xyxy in resized-image pixels, scores (K,))``, K <= max_per_img."""
        batch = outputs[0][0].shape[0]
        per_level = []
        for level, (logits, deltas) in enumerate(outputs):
            b, a, h, w = logits.shape
            scores = logits.permute(0, 2, 3, 1).reshape(b, -1).sigmoid()
            deltas = deltas.permute(0, 2, 3, 1).reshape(b, -1, 4)
            anchors = self.anchors.grid(level, (h, w), logits.device)
            if self.nms_pre < scores.shape[1]:
                scores, idx = scores.topk(self.nms_pre, dim=1)
                deltas = deltas.gather(1, idx[..., None].expand(-1, -1, 4))
                anchors = anchors[idx]
            else:
                anchors = anchors.expand(b, -1, -1)
            per_level.append((scores, deltas, anchors, level))
        results = []
        for i in range(batch):
            boxes, scores, levels = [], [], []
            for s, d, anc, level in per_level:
                boxes.append(self.coder.decode(anc[i], d[i], image_sizes[i]))
                scores.append(s[i])
                levels.append(torch.full_like(s[i], level, dtype=torch.long))
            boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
            sizes = boxes[:, 2:] - boxes[:, :2] + self.offset
            valid = (sizes >= self.min_size).all(dim=1) if self.min_size > 0 or self.offset else (sizes > 0).all(dim=1)
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
            keep = multiclass_nms(boxes, scores, levels, self.iou, self.max_per_img, self.offset)
            results.append((boxes[keep], scores[keep]))
        return results
