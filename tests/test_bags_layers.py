"""The layers BAGS GS-HTC adds to the shared ones, against torchvision or float64 references written from the
original's definitions: ResNeXt + DCNv1 blocks, mmdetection v1's pixel-inclusive conventions, HTC's semantic
branch and mask information flow, and the balanced group softmax."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet as tv_resnet
from torchvision.ops import nms

from deform_reference import deform_conv_reference
from vfe_hub.layers.anchors import AnchorGenerator
from vfe_hub.layers.box_coder import DeltaXYWHCoder
from vfe_hub.layers.cascade import CascadeBoxHeads
from vfe_hub.layers.deform_conv import DeformConv
from vfe_hub.layers.group_softmax import (GroupTableError, check_group_tables, group_softmax_scores,
                                          groups_from_counts, tables_from_groups)
from vfe_hub.layers.htc import FusedSemanticHead, HTCMaskHead, info_flow_mask_probs
from vfe_hub.layers.mask_head import paste_masks_inclusive
from vfe_hub.layers.resnet import Bottleneck, ResNet
from vfe_hub.layers.rpn import ProposalSelector


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                else:
                    t.copy_(0.2 * torch.randn(t.shape, generator=g))


@pytest.mark.parametrize("stride,in_channels", [(2, 256), (1, 512)])
def test_resnext_block_equals_torchvision_with_the_same_weights(stride, in_channels):
    """A ResNeXt 64x4d bottleneck (planes 128: width 512, 64 groups of 8) against torchvision's (eval-mode BN)."""
    downsample = None
    if stride != 1 or in_channels != 512:
        downsample = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 512, 1, stride, bias=False),
                                         torch.nn.BatchNorm2d(512))
    reference = tv_resnet.Bottleneck(in_channels, 128, stride, downsample, groups=64, base_width=4).double().eval()
    _randomise(reference, 0)
    block = Bottleneck(in_channels, 128, stride, groups=64, base_width=4).double()
    assert block.conv2.weight.shape == (512, 8, 3, 3) and block.conv1.weight.shape == (512, in_channels, 1, 1)
    block.load_state_dict({k: v for k, v in reference.state_dict().items() if "num_batches" not in k}, strict=True)
    x = torch.randn(2, in_channels, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x), rtol=1e-10, atol=1e-10)


def test_resnext101_64x4d_has_torchvisions_parameters():
    ours = ResNet(101, groups=64, base_width=4).state_dict()
    theirs = {k: v for k, v in tv_resnet.resnext101_64x4d().state_dict().items()
              if not k.startswith("fc.") and "num_batches" not in k}
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_dcn_stages_put_dcnv1_in_every_block_including_the_strided_ones():
    net = ResNet(50, groups=32, base_width=4, deform_stages=(False, True, True, True))
    assert isinstance(net.layer1[0].conv2, torch.nn.Conv2d)
    for i in (2, 3, 4):
        layer = getattr(net, f"layer{i}")
        assert all(isinstance(b.conv2, DeformConv) and not b.conv2.modulated for b in layer)
        first = layer[0].conv2
        assert first.stride == 2 and first.offset.stride == (2, 2) and first.offset.bias is not None
        assert first.offset.weight.shape[0] == 18 and first.weight.shape[1] == first.weight.shape[0] // 32


def test_grouped_dcnv1_equals_float64_reference_per_group():
    torch.manual_seed(0)
    conv = DeformConv(8, 8, 3, 2, 1, groups=4, modulated=False, bias=False, offset_bias=True).double()
    with torch.no_grad():
        conv.offset.weight.normal_(0, 0.3)
        conv.offset.bias.uniform_(-3, 3)
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64)
    offset = conv.offset(x)
    expected = torch.cat([deform_conv_reference(x[:, 2 * g:2 * g + 2], offset, conv.weight[2 * g:2 * g + 2], None,
                                                2, 1, 1) for g in range(4)], dim=1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        conv.offset.weight.zero_()
        conv.offset.bias.zero_()
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 2, 1, groups=4), rtol=1e-10, atol=1e-10)


def test_legacy_anchors_are_mmdetection_v1s():
    """The rounded base anchors of mmdetection v1's generator (computed by running it), strides 4 and 64."""
    anchors = AnchorGenerator((4, 8, 16, 32, 64), (0.5, 1.0, 2.0), (8,), legacy=True)
    assert anchors.base[0].tolist() == [[-21, -9, 24, 12], [-14, -14, 17, 17], [-9, -21, 12, 24]]
    assert anchors.base[4].tolist() == [[-330, -149, 393, 212], [-224, -224, 287, 287], [-149, -330, 212, 393]]


def test_legacy_delta_coder_is_delta2bbox_with_plus_one_widths():
    box = torch.tensor([[10.0, 20.0, 49.0, 39.0]], dtype=torch.float64)
    delta = torch.tensor([[0.5, -1.0, 0.3, 9.0]], dtype=torch.float64)
    stds = (0.1, 0.1, 0.2, 0.2)
    out = DeltaXYWHCoder(stds, legacy=True).decode(box, delta, (60, 80))
    pw, ph, px, py = 40.0, 20.0, 29.5, 29.5
    dx, dy, dw, dh = 0.05, -0.1, 0.06, min(1.8, abs(math.log(16 / 1000)))
    gx, gy, gw, gh = px + pw * dx, py + ph * dy, pw * math.exp(dw), ph * math.exp(dh)
    expected = [max(gx - gw / 2 + 0.5, 0), max(gy - gh / 2 + 0.5, 0), min(gx + gw / 2 - 0.5, 79),
                min(gy + gh / 2 - 0.5, 59)]
    torch.testing.assert_close(out[0], torch.tensor(expected, dtype=torch.float64))
    assert out[0, 3] == 59  # clipped to H - 1


def test_legacy_proposals_decode_and_suppress_with_plus_one_widths():
    anchors = AnchorGenerator((8,), (0.5, 1.0, 2.0), (2,), legacy=True)
    selector = ProposalSelector(anchors, nms_pre=30, iou=0.5, max_per_img=8, legacy=True)
    g = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(1, 3, 3, 4, generator=g), 0.3 * torch.randn(1, 12, 3, 4, generator=g)
    boxes, scores = selector([(logits, deltas)], [(20, 30)])[0]
    grid = anchors.grid(0, (3, 4), torch.device("cpu"))
    ref_scores = logits.permute(0, 2, 3, 1).reshape(-1).sigmoid()
    d = deltas.permute(0, 2, 3, 1).reshape(-1, 4)
    w, h = grid[:, 2] - grid[:, 0] + 1, grid[:, 3] - grid[:, 1] + 1
    cx, cy = (grid[:, 0] + grid[:, 2]) / 2 + w * d[:, 0], (grid[:, 1] + grid[:, 3]) / 2 + h * d[:, 1]
    gw, gh = w * d[:, 2].exp(), h * d[:, 3].exp()
    ref = torch.stack([(cx - gw / 2 + 0.5).clamp(0, 29), (cy - gh / 2 + 0.5).clamp(0, 19),
                       (cx + gw / 2 - 0.5).clamp(0, 29), (cy + gh / 2 - 0.5).clamp(0, 19)], 1)
    keep = nms(ref + torch.tensor([0.0, 0.0, 1.0, 1.0]), ref_scores, 0.5)[:8]
    assert len(keep) == len(boxes) > 1
    torch.testing.assert_close(boxes, ref[keep])
    torch.testing.assert_close(scores, ref_scores[keep])


def test_pixel_inclusive_cascade_clips_intermediate_boxes_to_the_last_pixel():
    torch.manual_seed(0)
    heads = CascadeBoxHeads([DeltaXYWHCoder(legacy=True)] * 2, 3, in_channels=1, roi_size=1, fc_dim=4,
                            pixel_inclusive=True)
    with torch.no_grad():
        heads.stages[0].bbox_pred.bias.copy_(torch.tensor([0.0, 0.0, 3.0, 3.0]))  # boxes grow far past the image
    seen = []
    heads(lambda b: seen.append(b[0]) or torch.ones(len(b[0]), 1, 1, 1), [torch.tensor([[2.0, 2.0, 9.0, 9.0]])],
          [(20, 30)])
    assert seen[1].tolist() == [[0.0, 0.0, 29.0, 19.0]]


def test_fused_semantic_head_equals_a_step_by_step_reference():
    torch.manual_seed(0)
    head = FusedSemanticHead(num_ins=3, fusion_level=1, num_convs=2, channels=4, num_classes=5).double()
    feats = [torch.randn(1, 4, 16 // 2**i, 20 // 2**i, dtype=torch.float64) for i in range(3)]

    def conv_relu(module, x):
        return torch.relu(F.conv2d(x, module.conv.weight, module.conv.bias, padding=module.conv.padding))

    x = conv_relu(head.lateral_convs[1], feats[1])
    x = x + conv_relu(head.lateral_convs[0], F.interpolate(feats[0], (8, 10), mode="bilinear", align_corners=True))
    x = x + conv_relu(head.lateral_convs[2], F.interpolate(feats[2], (8, 10), mode="bilinear", align_corners=True))
    for conv in head.convs:
        x = conv_relu(conv, x)
    expected = conv_relu(head.conv_embedding, x)
    torch.testing.assert_close(head(feats), expected, rtol=1e-12, atol=1e-12)


def test_info_flow_averages_per_stage_sigmoids_of_the_detected_class():
    torch.manual_seed(0)
    heads = [HTCMaskHead(4, 4, 2, num_classes=6).double() for _ in range(3)]
    feats = torch.randn(5, 4, 7, 7, dtype=torch.float64)
    labels = torch.tensor([1, 5, 0, 3, 3])
    res, probs = None, []
    for k, head in enumerate(heads):  # stage k sees feats + relu(conv_res_k(stage k-1's conv output))
        x = feats if res is None else feats + torch.relu(head.conv_res.conv(res))
        for conv in head.convs:
            x = torch.relu(conv(x))
        res = x
        logits = head.conv_logits(torch.relu(head.upsample(x)))
        probs.append(logits[torch.arange(5), labels].sigmoid())
        assert head(feats)[0].shape == (5, 6, 14, 14)  # without labels: every class's logits
    averaged = info_flow_mask_probs(heads, feats, labels)
    assert averaged.dtype == torch.float32
    torch.testing.assert_close(averaged.double(), sum(probs) / 3, rtol=1e-6, atol=1e-7)
    # detections of several classes on one RoI: the heads run once per RoI, each detection takes its class
    rows = torch.tensor([4, 0, 4, 2, 1, 4])
    several = torch.tensor([2, 5, 3, 0, 1, 3])
    expected = info_flow_mask_probs(heads, feats[rows], several)
    assert torch.equal(info_flow_mask_probs(heads, feats, several, rows), expected)
    assert not torch.equal(expected[0], expected[2])  # one RoI, two classes: two masks


def test_inclusive_paste_resizes_like_opencv_onto_the_truncated_box():
    probs = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = paste_masks_inclusive(probs, torch.tensor([[2.7, 1.2, 8.9, 4.99]]), (8, 12))
    x1, y1, w, h = 2, 1, 7, 4  # truncated box 2..8 x 1..4
    expected = torch.zeros(8, 12, dtype=torch.bool)
    for i in range(h):
        for j in range(w):  # OpenCV INTER_LINEAR: source (d + 0.5) * 4 / size - 0.5, edges repeated
            sy, sx = min(max((i + 0.5) * 4 / h - 0.5, 0), 3), min(max((j + 0.5) * 4 / w - 0.5, 0), 3)
            y0, x0 = int(sy), int(sx)
            y1_, x1_ = min(y0 + 1, 3), min(x0 + 1, 3)
            v = ((1 - (sy - y0)) * ((1 - (sx - x0)) * probs[0, y0, x0] + (sx - x0) * probs[0, y0, x1_])
                 + (sy - y0) * ((1 - (sx - x0)) * probs[0, y1_, x0] + (sx - x0) * probs[0, y1_, x1_]))
            expected[y1 + i, x1 + j] = v > 0.5
    assert torch.equal(out[0], expected) and expected.any()
    clipped = paste_masks_inclusive(torch.ones(1, 4, 4), torch.tensor([[9.0, 6.0, 14.0, 9.0]]), (8, 12))
    assert clipped[0].sum() == 3 * 2 and clipped[0, 6:, 9:].all()


# ---------------------------------------------------------------------------------------------- group softmax

#: classes 1..7 in four groups, not in label order: group 1 = {3, 6}, group 2 = {1, 4, 7}, group 3 = {2}, group 4 = {5}
MEMBERS = [[6, 3], [1, 4, 7], [2], [5]]


def test_tables_follow_bags_layout():
    table, slices = tables_from_groups(MEMBERS)
    assert table.tolist() == [[0, 1, 1, 1, 1, 1, 1, 1],
                              [0, 0, 0, 2, 0, 0, 1, 0],
                              [0, 1, 0, 0, 2, 0, 0, 3],
                              [0, 0, 1, 0, 0, 0, 0, 0],
                              [0, 0, 0, 0, 0, 1, 0, 0]]
    assert slices.tolist() == [[0, 2], [2, 3], [5, 4], [9, 2], [11, 2]]
    check_group_tables(table, slices, 13)


def test_dossier_slice_table_from_lvis_v05_group_sizes():
    starts = [1, 295, 748, 1050]
    _, slices = tables_from_groups([range(s, s + n) for s, n in zip(starts, (294, 453, 302, 181))])
    assert slices.tolist() == [[0, 2], [2, 295], [297, 454], [751, 303], [1054, 182]]


def test_group_softmax_equals_a_float64_hand_computation():
    table, slices = tables_from_groups(MEMBERS)
    logits = torch.randn(6, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    scores = group_softmax_scores(logits, table, slices)
    expected = torch.zeros(6, 8, dtype=torch.float64)
    for n in range(6):
        def softmax(start, length):
            e = [math.exp(v) for v in logits[n, start:start + length].tolist()]
            return [v / sum(e) for v in e]
        p0 = softmax(0, 2)
        expected[n, 0] = p0[0]
        for g, (start, length) in enumerate(slices.tolist()[1:], start=1):
            pg = softmax(start, length)  # column 0: "others", dropped
            for position, label in enumerate(MEMBERS[g - 1], start=1):
                expected[n, label] = p0[1] * pg[position]
    torch.testing.assert_close(scores.double(), expected, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(scores.sum(1).double(), torch.ones(6, dtype=torch.float64))  # not renormalised


def test_groups_from_instance_counts_use_bags_bounds():
    assert groups_from_counts([1, 9, 10, 99, 100, 999, 1000, 50000]) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_bad_group_tables_are_rejected_with_the_reason():
    table, slices = tables_from_groups(MEMBERS)
    with pytest.raises(GroupTableError, match="the classifier has 1236"):
        check_group_tables(table, slices, 1236)
    twice = table.clone()
    twice[1, 1] = 3
    with pytest.raises(GroupTableError, match="exactly one group"):
        check_group_tables(twice, slices, 13)
    shifted = slices.clone()
    shifted[2, 0] += 1
    with pytest.raises(GroupTableError, match="does not match the group sizes"):
        check_group_tables(table, shifted, 13)
