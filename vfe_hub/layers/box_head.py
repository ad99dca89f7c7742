"""Box heads of two-stage detectors and their test-time post-processing (mmdetection v2 conventions)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .box_coder import Box2BoxCoder, DeltaXYWHCoder
from .conv import ConvNorm
from .nms import select_per_class
from .precision import Float32Linear, float32


class ConvFCBoxHead(nn.Module):
    """mmdetection's ``ConvFCBBoxHead`` with shared layers only: ``num_convs`` x [conv3x3 (+ frozen BN when
    ``norm``) + ReLU] on the RoI features, a C-major flatten, ``num_fcs`` x [fc + ReLU]; then an optional
    classifier and an optional box regressor on the resulting embedding.

    Input RoI features ``(K, in_channels, roi_size, roi_size)``; :meth:`embed` gives ``(K, fc_dim)``. The
    classifier (``num_classes`` given) has ``num_classes + 1`` outputs with the background **last**; the regressor
    (``with_reg``) has ``4 * num_classes`` class-specific deltas, or 4 if ``class_agnostic``; both compute in float32
    under autocast (:mod:`.precision`). Parameter names:
    ``shared_convs.{i}.conv/.bn``, ``fcs.{i}``, ``cls_score``, ``bbox_pred``. ``last_relu=False`` leaves the last
    fc without its ReLU (maskrcnn-benchmark's ``FPN2MLPCosineFeatureExtractor``: ``fc7`` feeds a cosine classifier).
    """

    def __init__(self, in_channels: int, roi_size: int, num_classes: int | None, *, num_convs: int = 0,
                 conv_channels: int = 256, norm: bool = False, num_fcs: int = 2, fc_dim: int = 1024,
                 with_reg: bool = True, class_agnostic: bool = False, last_relu: bool = True) -> None:
        super().__init__()
        self.last_relu = last_relu
        self.shared_convs = nn.ModuleList(
            ConvNorm(in_channels if i == 0 else conv_channels, conv_channels, 3, norm) for i in range(num_convs))
        flat = (conv_channels if num_convs else in_channels) * roi_size * roi_size
        self.fcs = nn.ModuleList(nn.Linear(flat if i == 0 else fc_dim, fc_dim) for i in range(num_fcs))
        self.cls_score = Float32Linear(fc_dim, num_classes + 1) if num_classes is not None else None
        regressors = 4 if class_agnostic or num_classes is None else 4 * num_classes
        self.bbox_pred = Float32Linear(fc_dim, regressors) if with_reg else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """RoI features ``(K, C, S, S)`` -> the shared embedding ``(K, fc_dim)`` (after the last ReLU, if any)."""
        for conv in self.shared_convs:
            x = torch.relu(conv(x))
        x = x.flatten(1)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            x = torch.relu(x) if self.last_relu or i < len(self.fcs) - 1 else x
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(class logits (K, C + 1) or None, box deltas (K, 4C) / (K, 4) or None)`` of RoI features."""
        x = self.embed(x)
        return (None if self.cls_score is None else self.cls_score(x),
                None if self.bbox_pred is None else self.bbox_pred(x))


class CosineClassifier(nn.Module):
    """Cosine-similarity classifier (LST's ``FPNCosinePredictor``): ``logits (K, C) = scale * <x / |x|, w_c / |w_c|>``
    of features ``x (K, in_features)`` and the rows of ``weight (C, in_features)`` (no bias; L2 normalisation with
    eps 1e-12), ``scale`` a learned scalar (``(1,)``; ``scale_cls``, initialised at 10); float32 under autocast."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) * 0.01)
        self.scale = nn.Parameter(torch.full((1,), scale))

    @float32("predictor outputs")
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.weight, dim=1, eps=1e-12)
        return self.scale * (F.normalize(x, dim=1, eps=1e-12) @ w.T)


@float32("score threshold and NMS")
def detect(proposals: torch.Tensor, scores: torch.Tensor, deltas: torch.Tensor, coder: DeltaXYWHCoder | Box2BoxCoder,
           image_size: tuple[int, int], scale: tuple[float, float], score_thr: float, iou: float,
           max_per_img: int, legacy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final detections of one image, as mmdetection's ``get_bboxes`` + ``multiclass_nms``.

    ``proposals (K, 4)`` in resized-image pixels; ``scores (K, C)`` class probabilities **without** the background
    column (a softmax, or DetPro's fused probabilities: no further normalisation happens here); ``deltas (K, 4C)``
    class-specific or ``(K, 4)`` class-agnostic (the one box is repeated for every class). Boxes are decoded and
    clipped to ``image_size`` (resized ``(h, w)``), divided by ``scale = (sx, sy)`` into input pixels, then every
    (box, class) pair with score > ``score_thr`` enters exact class-wise NMS at ``iou`` (:func:`.nms.select_per_class`);
    the best ``max_per_img`` are returned as ``(boxes (N, 4), scores (N,), labels (N,))`` with labels in
    ``0..C-1``, by decreasing score (equal scores by candidate order: proposal-major, then class).

    ``legacy=True`` is maskrcnn-benchmark's ``PostProcessor``: boxes are pixel-inclusive (pass a legacy coder),
    NMS runs in resized-image pixels with IoU over ``x2 - x1 + 1`` widths, and the kept boxes (still
    pixel-inclusive) are then divided by ``scale`` (its ``BoxList.resize``), and the cut at ``max_per_img`` keeps
    every detection tied with the last one (its ``kthvalue``), so more than ``max_per_img`` can remain.
    """
    boxes = coder.decode(proposals, deltas, image_size)
    sx, sy = scale
    factor = boxes.new_tensor([sx, sy, sx, sy])
    boxes = boxes.view(boxes.shape[0], -1, 4)
    if legacy:
        boxes = boxes.expand(-1, scores.shape[1], 4)
        rows, labels = select_per_class(boxes, scores, score_thr, iou, max_per_img, keep_ties=True, offset=1.0)
        return boxes[rows, labels] / factor, scores[rows, labels], labels
    boxes = (boxes / factor).expand(-1, scores.shape[1], 4)
    rows, labels = select_per_class(boxes, scores, score_thr, iou, max_per_img)
    return boxes[rows, labels], scores[rows, labels], labels
