"""The shared two-stage layers, assembled as torchvision's Mask R-CNN R50-FPN and loaded with its weights, reproduce
torchvision's detections on a real photograph.

Both run on the same preprocessed tensor (torchvision's ``model.transform`` output). The layers are configured with
torchvision's conventions; the differences bridged here, each a documented convention and not a tolerance:

- anchors: torchvision rounds its base anchors (mmdetection's are not rounded), so the proposal selector gets
  torchvision's exact anchors through a stand-in for our ``AnchorGenerator``;
- RPN: torchvision ranks the top 1000 per level by logit, we by sigmoid (the same order for unsaturated logits),
  keeps boxes with ``w, h >= 1e-3`` (``min_size=1e-3``), NMS 0.7 per level, 1000 kept;
- RoI pooling: ``MultiScaleRoIAlign`` is the legacy ``aligned=False`` form with ``sampling_ratio=2``
  (``pool_rois(aligned=False, sampling_ratio=2)``); its level rule ``floor(4 + log2(s / 224 + 1e-6)) - 2`` equals
  ours ``floor(log2(s / 56 + 1e-6))`` except where the 1e-6 tips a RoI at an exact level boundary;
- classifier: torchvision's background is the first class, ours the last (the rows of ``cls_score`` are rotated);
  its class-specific regression includes the background's 4 deltas (dropped) and divides by weights (10, 10, 5, 5),
  our coder multiplies by stds (0.1, 0.1, 0.2, 0.2); torchvision clamps ``dw, dh`` only from above, mmdetection
  from both sides (the random weights below keep deltas far from the clamp);
- post-processing: torchvision keeps score > 0.05, drops boxes under 0.01 px, runs NMS 0.5 in resized pixels and
  rescales after; mmdetection rescales before NMS and keeps small boxes; the weights below give no such boxes and
  near-uniform scale factors, so the 100 detections agree;
- masks: torchvision pastes a mask by resizing it to its integer-rounded box padded by one pixel, mmdetection samples
  the 28x28 grid at pixel centres: the 28x28 probabilities agree to float precision, pasted masks only by IoU.

Measured here (float32, CPU): boxes within 2.5e-4 px, scores within 6.2e-6, all 100 labels (9 classes) equal,
28x28 mask probabilities within 3e-4 (random heads amplify the 1e-6 relative feature differences of frozen vs.
plain batch norm). Pasting smooth masks (discs) into the photograph: IoU mean 0.88, median 0.90 (the 32 boxes over
32x32 px: mean 0.95, min 0.82; a few boxes of one or two pixels disagree entirely: integer rounding). The random
model's own masks are pixel noise at 28x28 and agree only at IoU 0.52 after pasting, hence the discs.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from media import photo
from torchvision_reference import detecting_maskrcnn
from vfe_hub.layers.box_coder import DeltaXYWHCoder
from vfe_hub.layers.box_head import ConvFCBoxHead, detect
from vfe_hub.layers.mask_head import FCNMaskHead, paste_masks
from vfe_hub.layers.necks import FPN
from vfe_hub.layers.resnet import ResNet
from vfe_hub.layers.roi import boxes_to_rois, pool_rois
from vfe_hub.layers.rpn import ProposalSelector, RPNHead

STRIDES = (4, 8, 16, 32)


class TorchvisionAnchors:
    """Stands in for ``AnchorGenerator``: ``grid(level, ...)`` returns torchvision's anchors of that level."""

    def __init__(self, per_level: tuple[torch.Tensor, ...]) -> None:
        self.per_level = per_level

    def grid(self, level: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        return self.per_level[level]


@pytest.fixture(scope="module")
def reference():
    """torchvision's Mask R-CNN adjusted to detect (:func:`torchvision_reference.detecting_maskrcnn`) on a
    photograph: the model, the photograph, the transformed input, the intermediate outputs and the results."""
    image = photo("chelsea")
    model, images, seen, result = detecting_maskrcnn(image, max_size=512)
    return model, image, images, seen, result


def _ours(model):
    """Our layers with the torchvision model's weights (names mapped, nothing else changed)."""
    sd = model.state_dict()

    def sub(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and "num_batches" not in k}

    backbone = ResNet(50, style="pytorch").eval()
    backbone.load_state_dict(sub("backbone.body."), strict=True)
    fpn = FPN([256, 512, 1024, 2048], 256, num_outs=5).eval()
    fpn.load_state_dict({f"{ours}.{i}.conv.{p}": sd[f"backbone.fpn.{theirs}.{i}.0.{p}"] for i in range(4)
                         for ours, theirs in (("lateral_convs", "inner_blocks"), ("fpn_convs", "layer_blocks"))
                         for p in ("weight", "bias")}, strict=True)
    rpn = RPNHead(256, 256, 3).eval()
    rpn.load_state_dict({"conv.weight": sd["rpn.head.conv.0.0.weight"], "conv.bias": sd["rpn.head.conv.0.0.bias"],
                         **{f"cls_logits.{k}": v for k, v in sub("rpn.head.cls_logits.").items()},
                         **{f"bbox_pred.{k}": v for k, v in sub("rpn.head.bbox_pred.").items()}}, strict=True)
    box_head = ConvFCBoxHead(256, 7, 90).eval()
    cls_w, cls_b = sd["roi_heads.box_predictor.cls_score.weight"], sd["roi_heads.box_predictor.cls_score.bias"]
    box_head.load_state_dict({
        "fcs.0.weight": sd["roi_heads.box_head.fc6.weight"], "fcs.0.bias": sd["roi_heads.box_head.fc6.bias"],
        "fcs.1.weight": sd["roi_heads.box_head.fc7.weight"], "fcs.1.bias": sd["roi_heads.box_head.fc7.bias"],
        "cls_score.weight": torch.cat([cls_w[1:], cls_w[:1]]), "cls_score.bias": torch.cat([cls_b[1:], cls_b[:1]]),
        "bbox_pred.weight": sd["roi_heads.box_predictor.bbox_pred.weight"][4:],
        "bbox_pred.bias": sd["roi_heads.box_predictor.bbox_pred.bias"][4:]}, strict=True)
    mask_head = FCNMaskHead(num_classes=91).eval()  # class-specific; channel 0 (background) is never read
    mask_head.load_state_dict({
        **{f"convs.{i}.{p}": sd[f"roi_heads.mask_head.{i}.0.{p}"] for i in range(4) for p in ("weight", "bias")},
        **{f"upsample.{p}": sd[f"roi_heads.mask_predictor.conv5_mask.{p}"] for p in ("weight", "bias")},
        **{f"conv_logits.{p}": sd[f"roi_heads.mask_predictor.mask_fcn_logits.{p}"] for p in ("weight", "bias")}},
        strict=True)
    return backbone, fpn, rpn, box_head, mask_head


@pytest.mark.slow
def test_detections_equal_torchvision(reference):
    model, image, images, seen, result = reference
    backbone, fpn, rpn, box_head, mask_head = _ours(model)
    (h, w), (height, width) = images.image_sizes[0], image.shape[:2]
    with torch.no_grad():
        feats = fpn(backbone(images.tensors))
        for ours, theirs in zip(feats, model.backbone(images.tensors).values()):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5 * theirs.abs().max().item())
        anchors = model.rpn.anchor_generator(images, feats)[0].split([f.shape[-2] * f.shape[-1] * 3 for f in feats])
        selector = ProposalSelector(TorchvisionAnchors(anchors), nms_pre=1000, iou=0.7, max_per_img=1000,
                                    min_size=1e-3)
        [(proposals, _)] = selector(rpn(feats), images.image_sizes)

        # The same 1000 proposals (their order differs only among equal scores).
        theirs = seen["proposals"]
        assert len(proposals) == len(theirs) == 1000
        nearest = torch.cdist(proposals, theirs, p=float("inf"))
        assert nearest.min(1).values.max() < 1e-2 and nearest.min(0).values.max() < 1e-2

        logits, deltas = box_head(pool_rois(feats[:4], boxes_to_rois([proposals]), STRIDES, 7, sampling_ratio=2,
                                            aligned=False))
        coder = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))
        boxes, scores, labels = detect(proposals, logits.softmax(dim=1)[:, :-1], deltas, coder, (h, w),
                                       (w / width, h / height), score_thr=0.05, iou=0.5, max_per_img=100)
    assert len(boxes) == len(result["boxes"]) == 100
    assert torch.equal(labels + 1, result["labels"])  # torchvision's labels count the background as 0
    torch.testing.assert_close(scores, result["scores"], rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes, result["boxes"], rtol=0, atol=1e-3)
    assert scores.min() > 0.05 and len(labels.unique()) >= 5


@pytest.mark.slow
def test_masks_equal_torchvision(reference):
    model, image, images, seen, result = reference
    backbone, fpn, _, _, mask_head = _ours(model)
    roi = seen["roi"]  # torchvision's final detections in resized pixels, with their 28x28 mask probabilities
    with torch.no_grad():
        feats = fpn(backbone(images.tensors))
        pooled = pool_rois(feats[:4], boxes_to_rois([roi["boxes"]]), STRIDES, 14, sampling_ratio=2, aligned=False)
        probs = mask_head(pooled).sigmoid()[torch.arange(len(roi["boxes"])), roi["labels"]]
    assert probs.shape == (100, 28, 28) and 0.1 < (probs > 0.5).float().mean() < 0.9
    torch.testing.assert_close(probs, roi["masks"][:, 0], rtol=0, atol=1e-3)

    # Pasting: smooth masks (discs of random centre and radius) through both pastes, compared by IoU.
    g = torch.Generator().manual_seed(1)
    n, size = len(result["boxes"]), image.shape[:2]
    yy, xx = torch.meshgrid(torch.arange(28.0) + 0.5, torch.arange(28.0) + 0.5, indexing="ij")
    centres, radii = 8 + 12 * torch.rand(n, 2, 1, 1, generator=g), 5 + 6 * torch.rand(n, 1, 1, generator=g)
    smooth = torch.sigmoid(2 * (radii - ((xx - centres[:, 0]) ** 2 + (yy - centres[:, 1]) ** 2).sqrt()))
    ours = paste_masks(smooth, result["boxes"], size, threshold=0.5)
    theirs = paste_masks_in_image(smooth[:, None], result["boxes"], size)[:, 0] >= 0.5
    iou = (ours & theirs).sum((1, 2)) / (ours | theirs).sum((1, 2))
    large = (result["boxes"][:, 2:] - result["boxes"][:, :2]).prod(1) > 32 * 32
    assert iou.mean() > 0.85 and iou.median() > 0.88
    assert large.sum() >= 10 and iou[large].mean() > 0.93 and iou[large].min() > 0.8
