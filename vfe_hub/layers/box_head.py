"""Box heads of two-stage detectors and their test-time post-processing (mmdetection v2 conventions)."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import batched_nms

from .box_coder import DeltaXYWHCoder


class SharedFCBoxHead(nn.Module):
    """``num_fcs`` shared fully connected layers, then a classifier and a box regressor.

    Input RoI features ``(K, C, S, S)`` are flattened C-major. The classifier has ``num_classes + 1`` outputs with
    the background **last**; the regressor has ``4 * num_classes`` class-specific deltas (or 4 if class-agnostic).
    ``forward`` applies ReLU after each fc; models that insert work between the fcs call ``fcs`` themselves.
    """

    def __init__(self, in_features: int, num_classes: int, fc_dim: int = 1024, num_fcs: int = 2,
                 class_agnostic: bool = False) -> None:
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(in_features if i == 0 else fc_dim, fc_dim) for i in range(num_fcs))
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4 if class_agnostic else 4 * num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        for fc in self.fcs:
            x = torch.relu(fc(x))
        return self.cls_score(x), self.bbox_pred(x)


def detect(proposals: torch.Tensor, logits: torch.Tensor, deltas: torch.Tensor, coder: DeltaXYWHCoder,
           image_size: tuple[int, int], scale: tuple[float, float], score_thr: float, iou: float,
           max_per_img: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final detections of one image from the box head, as mmdetection's ``get_bboxes`` + ``multiclass_nms``.

    ``proposals (K, 4)`` in resized-image pixels, ``logits (K, C + 1)`` (background last), ``deltas (K, 4C)`` or
    ``(K, 4)``. Boxes are decoded and clipped to ``image_size`` (resized ``(h, w)``), divided by
    ``scale = (sx, sy)`` into input pixels, then every (box, class) pair with softmax score > ``score_thr`` enters
    class-wise NMS at ``iou``; the best ``max_per_img`` are returned as ``(boxes (N, 4), scores (N,), labels (N,))``
    with labels in ``0..C-1``.
    """
    probs = logits.float().softmax(dim=1)[:, :-1]
    num_classes = probs.shape[1]
    boxes = coder.decode(proposals, deltas.float(), image_size)
    sx, sy = scale
    boxes = (boxes.view(boxes.shape[0], -1, 4) / boxes.new_tensor([sx, sy, sx, sy])).expand(-1, num_classes, 4)
    labels = torch.arange(num_classes, device=probs.device).expand_as(probs)
    keep = probs.reshape(-1) > score_thr
    boxes, scores, labels = boxes.reshape(-1, 4)[keep], probs.reshape(-1)[keep], labels.reshape(-1)[keep]
    order = batched_nms(boxes, scores, labels, iou)[:max_per_img]
    return boxes[order], scores[order], labels[order]
