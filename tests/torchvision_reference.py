"""torchvision's Mask R-CNN R50-FPN as a runnable reference for the shared two-stage layers."""
from __future__ import annotations

import numpy as np
import torch
import torchvision


def detecting_maskrcnn(image: np.ndarray, max_size: int) -> tuple:
    """torchvision's Mask R-CNN with seeded random weights, adjusted so that it detects on ``image`` (``(H, W, 3)``
    uint8): BN statistics off their init, FPN output biases that make each level zero-mean on the photograph (RoI
    features then differ enough for several classes to win), RPN logits within +-7 (unsaturated sigmoids), RPN
    and box deltas below ~1, class logits spread enough for scores above 0.05; ``min_size=320``, ``max_size``.

    Returns the model, the transformed input (``ImageList``), the intermediate proposals and RoI-head outputs
    (``{"proposals": (K, 4), "roi": {...}}``, 28x28 masks) and the final results.
    """
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=320,
                                                               max_size=max_size).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        model.rpn.head.cls_logits.weight.mul_(0.2)
        model.rpn.head.bbox_pred.weight.mul_(0.02)
        model.roi_heads.box_predictor.cls_score.weight.mul_(0.2)
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(0.005)
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        images, _ = model.transform([x])
        for block, level in zip(model.backbone.fpn.layer_blocks, model.backbone(images.tensors).values()):
            block[0].bias.sub_(level.mean((0, 2, 3)))
    seen = {}
    hooks = [model.rpn.register_forward_hook(lambda m, a, o: seen.__setitem__("proposals", o[0][0])),
             # postprocess pastes the masks into the result dicts in place: keep a copy of the 28x28 ones
             model.roi_heads.register_forward_hook(lambda m, a, o: seen.__setitem__("roi", dict(o[0][0])))]
    with torch.no_grad():
        result = model([x])[0]
    for h in hooks:
        h.remove()
    return model, images, seen, result
