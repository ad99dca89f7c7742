"""The shared layers set to maskrcnn-benchmark's conventions (pixel-inclusive "+1" boxes: ``ProposalSelector``,
``Box2BoxCoder`` and ``detect`` with ``legacy=True``, ``pool_rois(legacy=True)``, base anchors from a checkpoint,
``paste_masks_padded``) reproduce torchvision's Mask R-CNN R50-FPN on a real photograph.

torchvision's detection code descends from maskrcnn-benchmark, with boxes as pixel edges instead of inclusive
corners. A box ``(x1, y1, x2, y2)`` of torchvision is ``(x1, y1, x2 - 1, y2 - 1)`` in maskrcnn-benchmark's
convention, and under that correspondence the "+1" formulas are torchvision's exactly: widths ``x2 - x1 + 1``,
decoding (``x2 = ctr + w / 2 - 1``), clipping to ``W - 1``, NMS IoU, and the RoI level rule
``floor(4 + log2(sqrt(area) / 224 + 1e-6))``. What differs, and how it is bridged here:

- network parts that LST sets differently and that are checked on their own in ``tests/test_lst.py``: the ResNet
  is torchvision's (stride in the 3x3, batch norm eps 1e-5; LST: stride in the 1x1, no eps), the box head has
  torchvision's linear classifier (LST: cosine), the mask head its 1x1 logits (LST: weight transfer + MLP_mask);
- anchors: torchvision's base anchors (rounded around 0), shifted to inclusive corners, are given to
  ``AnchorGenerator.from_base`` as LST's come from its checkpoint;
- RoIAlign: maskrcnn-benchmark pools a box's inclusive corners, torchvision its edges (both ``aligned=False``,
  sampling 2). ``pool_rois(legacy=True)`` on the inclusive corners is checked to take every RoI from the level of
  torchvision's ``LevelMapper``; the box and mask heads are then fed torchvision's RoIAlign of the edges
  (``pool_rois`` with its own level rule, which equals torchvision's but within 1e-6 of a level boundary);
- output: maskrcnn-benchmark rescales a box's inclusive corners, torchvision its edges, so ``detect``'s boxes plus
  one resized pixel (``1 / scale`` input pixels) at ``x2, y2`` are torchvision's;
- torchvision drops RPN boxes under 1e-3 px and detections under 1e-2 px, maskrcnn-benchmark none: the photograph
  fills the input (nothing padded), so no box is clipped to nothing.

Asserted (float32, CPU): the same 1000 proposals within 1e-2 px, the 100 detections' labels equal, scores within
1e-5, boxes within 2e-3 px; 28x28 mask probabilities within 1e-3; masks pasted by ``paste_masks_padded`` equal to
torchvision's ``paste_masks_in_image > 0.5`` but for samples within 1e-5 of 0.5 (the random head's logits are
often exactly 0), where float rounding tips them.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align
from torchvision.ops.poolers import LevelMapper

from media import photo
from torchvision_reference import detecting_maskrcnn
from vfe_hub.layers.anchors import AnchorGenerator
from vfe_hub.layers.box_coder import Box2BoxCoder
from vfe_hub.layers.box_head import ConvFCBoxHead, detect
from vfe_hub.layers.mask_head import FCNMaskHead, paste_masks_padded
from vfe_hub.layers.necks import FPN
from vfe_hub.layers.resnet import ResNet
from vfe_hub.layers.roi import boxes_to_rois, pool_rois
from vfe_hub.layers.rpn import ProposalSelector, RPNHead

pytestmark = pytest.mark.slow

STRIDES = (4, 8, 16, 32, 64)
EDGES = torch.tensor([0.0, 0.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def reference():
    """torchvision's Mask R-CNN with seeded random weights adjusted to detect (as in test_two_stage_reference.py)
    on a 320 x 448 photograph (a multiple of 64: nothing padded, and torchvision's anchor strides, the input size
    over the feature size, are the nominal ones); returns the model, the photograph, the
    transformed input, the intermediate proposals and RoI-head outputs and the final results."""
    image = photo("chelsea", (320, 448))
    model, images, seen, result = detecting_maskrcnn(image, max_size=480)
    assert tuple(images.tensors.shape[-2:]) == images.image_sizes[0] == (320, 448)
    return model, image, images, seen, result


def _ours(model):
    """Our layers with the torchvision model's weights (names mapped)."""
    sd = model.state_dict()

    def sub(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and "num_batches" not in k}

    backbone = ResNet(50, style="pytorch").eval()
    backbone.load_state_dict(sub("backbone.body."), strict=True)
    fpn = FPN([256, 512, 1024, 2048], 256, num_outs=5, extra="maxpool").eval()
    fpn.load_state_dict({f"{ours}.{i}.conv.{p}": sd[f"backbone.fpn.{theirs}.{i}.0.{p}"] for i in range(4)
                         for ours, theirs in (("lateral_convs", "inner_blocks"), ("fpn_convs", "layer_blocks"))
                         for p in ("weight", "bias")}, strict=True)
    rpn = RPNHead(256, 256, 3).eval()
    rpn.load_state_dict({"conv.weight": sd["rpn.head.conv.0.0.weight"], "conv.bias": sd["rpn.head.conv.0.0.bias"],
                         **{f"cls_logits.{k}": v for k, v in sub("rpn.head.cls_logits.").items()},
                         **{f"bbox_pred.{k}": v for k, v in sub("rpn.head.bbox_pred.").items()}}, strict=True)
    box_head = ConvFCBoxHead(256, 7, 90).eval()  # background moved last; its deltas dropped
    cls_w, cls_b = sd["roi_heads.box_predictor.cls_score.weight"], sd["roi_heads.box_predictor.cls_score.bias"]
    box_head.load_state_dict({
        "fcs.0.weight": sd["roi_heads.box_head.fc6.weight"], "fcs.0.bias": sd["roi_heads.box_head.fc6.bias"],
        "fcs.1.weight": sd["roi_heads.box_head.fc7.weight"], "fcs.1.bias": sd["roi_heads.box_head.fc7.bias"],
        "cls_score.weight": torch.cat([cls_w[1:], cls_w[:1]]), "cls_score.bias": torch.cat([cls_b[1:], cls_b[:1]]),
        "bbox_pred.weight": sd["roi_heads.box_predictor.bbox_pred.weight"][4:],
        "bbox_pred.bias": sd["roi_heads.box_predictor.bbox_pred.bias"][4:]}, strict=True)
    mask_head = FCNMaskHead(num_classes=91).eval()
    mask_head.load_state_dict({
        **{f"convs.{i}.{p}": sd[f"roi_heads.mask_head.{i}.0.{p}"] for i in range(4) for p in ("weight", "bias")},
        **{f"upsample.{p}": sd[f"roi_heads.mask_predictor.conv5_mask.{p}"] for p in ("weight", "bias")},
        **{f"conv_logits.{p}": sd[f"roi_heads.mask_predictor.mask_fcn_logits.{p}"] for p in ("weight", "bias")}},
        strict=True)
    return backbone, fpn, rpn, box_head, mask_head


def test_detections_equal_torchvision(reference):
    model, image, images, seen, result = reference
    backbone, fpn, rpn, box_head, _ = _ours(model)
    (h, w), (height, width) = images.image_sizes[0], image.shape[:2]
    with torch.no_grad():
        feats = fpn(backbone(images.tensors))
        tv_anchors = model.rpn.anchor_generator.cell_anchors  # torchvision's base anchors (edges), per level
        anchors = AnchorGenerator.from_base(STRIDES, [a - EDGES for a in tv_anchors])
        selector = ProposalSelector(anchors, nms_pre=1000, iou=0.7, max_per_img=1000, legacy=True)
        [(proposals, _)] = selector(rpn(feats), images.image_sizes)

        theirs = seen["proposals"]
        assert len(proposals) == len(theirs) == 1000
        nearest = torch.cdist(proposals + EDGES, theirs, p=float("inf"))
        assert nearest.min(1).values.max() < 1e-2 and nearest.min(0).values.max() < 1e-2

        # RoI pooling: maskrcnn-benchmark's level rule on the inclusive corners is torchvision's LevelMapper on the
        # edges (each RoI pooled from the same level, exactly)
        rois = boxes_to_rois([proposals])
        levels = LevelMapper(2, 5)([proposals + EDGES])
        by_level = torch.stack([roi_align(feats[int(level)], rois[i:i + 1], 7, 1 / STRIDES[int(level)], 2)[0]
                                for i, level in enumerate(levels)])
        assert torch.equal(pool_rois(feats[:4], rois, STRIDES[:4], 7, sampling_ratio=2, aligned=False, legacy=True),
                           by_level)
        assert len(levels.unique()) >= 3
        # ... and torchvision pools the edges
        pooled = pool_rois(feats[:4], boxes_to_rois([proposals + EDGES]), STRIDES[:4], 7, sampling_ratio=2,
                           aligned=False)
        logits, deltas = box_head(pooled)
        coder = Box2BoxCoder((10.0, 10.0, 5.0, 5.0), legacy=True)
        boxes, scores, labels = detect(proposals, logits.softmax(dim=1)[:, :-1], deltas, coder, (h, w),
                                       (w / width, h / height), score_thr=0.05, iou=0.5, max_per_img=100,
                                       legacy=True)
    sx, sy = w / width, h / height
    assert len(boxes) == len(result["boxes"]) == 100
    assert torch.equal(labels + 1, result["labels"])
    torch.testing.assert_close(scores, result["scores"], rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes + torch.tensor([0, 0, 1 / sx, 1 / sy]), result["boxes"], rtol=0, atol=2e-3)
    assert len(labels.unique()) >= 5


def test_masks_equal_torchvision(reference):
    model, image, images, seen, result = reference
    backbone, fpn, _, _, mask_head = _ours(model)
    roi = seen["roi"]  # torchvision's final detections in resized pixels (edges), with their 28x28 probabilities
    with torch.no_grad():
        feats = fpn(backbone(images.tensors))
        pooled = pool_rois(feats[:4], boxes_to_rois([roi["boxes"]]), STRIDES[:4], 14, sampling_ratio=2,
                           aligned=False)
        probs = mask_head(pooled).sigmoid()[torch.arange(len(roi["boxes"])), roi["labels"]]
    assert probs.shape == (100, 28, 28) and 0.1 < (probs > 0.5).float().mean() < 0.9
    torch.testing.assert_close(probs, roi["masks"][:, 0], rtol=0, atol=1e-3)

    # Pasting, of torchvision's own probabilities into the photograph at its final boxes.
    size = image.shape[:2]
    ours = paste_masks_padded(roi["masks"][:, 0], result["boxes"], size, 0.5)
    sampled = paste_masks_in_image(roi["masks"], result["boxes"], size, padding=1)[:, 0]
    theirs = sampled > 0.5
    assert theirs.sum() > 10_000
    # the random head's logits are often exactly 0 (probability 0.5): only samples within rounding of 0.5 differ
    differing = ours != theirs
    assert differing.sum() < 1e-2 * theirs.sum() and (sampled[differing] - 0.5).abs().max() < 1e-5
