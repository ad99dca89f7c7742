"""Each code base's RoIAlign rule against a float64 reference written from its kernel: mmdetection v1's (BAGS) for
RoIs of zero, sub-pixel, one-pixel and ordinary sizes on every FPN level and at the image edges; maskrcnn-benchmark's
(LST) and mmcv's aligned one (DetPro, MAMBA, STPN; detectron2's ROIAlignV2 for GTR) through torchvision."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align as torchvision_roi_align

from roi_reference import mmdet_v1_level, roi_align as reference
from vfe_hub.layers.roi import pool_rois, roi_align_inclusive

STRIDES = (4, 8, 16, 32)
H, W = 480, 640  # input pixels of the maps below


def _maps(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, H // s, W // s, generator=g) for s in STRIDES]


def _boxes() -> torch.Tensor:
    """Pixel-inclusive ``[batch, x1, y1, x2, y2]``: zero size (``x2 + 1 == x1``), sub-pixel, exactly one feature pixel
    of P2 (4 input pixels), ordinary; at the left, right and bottom edges, past the right edge; and large enough for
    P3-P5."""
    rows = []
    for b, (x1, y1, w, h) in enumerate([
        (40.0, 30.0, 0.0, 10.0), (40.0, 30.0, 10.0, 0.0), (20.3, 11.7, 0.4, 0.9), (60.0, 20.0, 2.5, 3.9),
        (60.0, 20.0, 4.0, 4.0), (10.2, 40.6, 17.3, 9.1), (0.0, 0.0, 1.0, 30.0), (W - 1.0, 12.0, 1.0, 20.0),
        (W - 1.4, 50.0, 1.4, 1.0), (W - 0.5, H - 0.5, 0.5, 0.5), (W + 3.0, 5.0, 2.0, 8.0), (-2.0, 60.0, 3.0, 2.0),
        (5.0, 5.0, 120.0, 80.0), (10.0, 20.0, 200.0, 150.0), (20.0, 30.0, 400.0, 300.0), (0.0, 0.0, W, H),
        (W - 27.0, 8.0, 27.0, 180.0), (W - 1.0, 0.0, 1.0, H), (W - 200.5, 100.0, 200.5, 380.0),
    ]):
        rows.append([b % 2, x1, y1, x1 + w - 1, y1 + h - 1])  # inclusive x2 = x1 + width - 1
    return torch.tensor(rows)


def test_boxes_cover_every_level_and_narrow_rois():
    boxes = _boxes()
    assert {mmdet_v1_level(b) for b in boxes[:, 1:].tolist()} == {0, 1, 2, 3}
    widths = boxes[:, 3] - boxes[:, 1] + 1
    assert (widths == 0).any() and ((widths > 0) & (widths < 4)).any() and (widths == 4).any()


@pytest.mark.parametrize("size", [7, 14])
def test_mmdet_v1_rule_on_every_level_equals_the_kernel(size):
    """``pool_rois(inclusive=True)`` (BAGS) equals mmdetection v1's kernel with its level rule for every RoI;
    torchvision's unaligned RoIAlign on the ends ``x2 + 1`` alone differs on the narrow ones."""
    feats, boxes = _maps(), _boxes()
    got = pool_rois(feats, boxes, STRIDES, output_size=size, sampling_ratio=2, inclusive=True)
    levels = [mmdet_v1_level(b) for b in boxes[:, 1:].tolist()]
    expected = torch.cat([reference(feats[lv], boxes[i:i + 1], size, 1 / STRIDES[lv], 2, "mmdet_v1")
                          for i, lv in enumerate(levels)])
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-4)
    edges = boxes + torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])
    widened = torch.cat([torchvision_roi_align(feats[lv], edges[i:i + 1], size, 1 / STRIDES[lv], 2, aligned=False)
                         for i, lv in enumerate(levels)])
    narrow = ((edges[:, 3:5] - edges[:, 1:3]) / torch.tensor(STRIDES, dtype=torch.float32)[levels][:, None] < 1)
    differs = (widened.double() - expected).abs().amax(dim=(1, 2, 3)) > 1e-3
    inside = boxes[:, 1] < W  # a RoI past the right edge samples zeros either way
    assert differs.tolist() == (narrow.any(1) & inside).tolist() and differs.sum() >= 8


def test_mmdet_v1_rule_on_one_map_equals_the_kernel():
    """The single-map form (BAGS's stride-8 semantic RoIs): every RoI pooled by the kernel's rule."""
    feat, boxes = _maps(1)[1], _boxes()
    got = pool_rois([feat], boxes, (8,), output_size=14, sampling_ratio=2, inclusive=True)
    torch.testing.assert_close(got.double(), reference(feat, boxes, 14, 1 / 8, 2, "mmdet_v1"), rtol=0, atol=1e-4)
    assert torch.equal(roi_align_inclusive(feat, boxes, 14, 1 / 8, 2), got)


def test_inclusive_rule_needs_a_fixed_sampling_ratio():
    with pytest.raises(ValueError, match="sampling_ratio > 0"):
        pool_rois(_maps(), _boxes(), STRIDES, sampling_ratio=0, inclusive=True)


@pytest.mark.parametrize("rule, aligned", [("maskrcnn_benchmark", False), ("mmcv_aligned", True)])
def test_other_code_bases_rules_are_torchvisions(rule, aligned):
    """maskrcnn-benchmark's kernel (LST) is torchvision's unaligned RoIAlign; mmcv's aligned one (DetPro, MAMBA,
    STPN) and detectron2's ROIAlignV2 (GTR) are torchvision's aligned one, also for RoIs narrower than a pixel."""
    feat, boxes = _maps(2)[0], _boxes()
    got = pool_rois([feat], boxes, (4,), output_size=7, sampling_ratio=2, aligned=aligned)
    torch.testing.assert_close(got.double(), reference(feat, boxes, 7, 1 / 4, 2, rule), rtol=0, atol=1e-4)
