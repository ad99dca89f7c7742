"""Shared layers against references that can run here: torchvision, mmdetection's documented values, float64."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vfe_hub.layers.anchors import AnchorGenerator
from vfe_hub.layers.attention import MemoryBank, RelationAttention
from vfe_hub.layers.box_coder import DeltaXYWHCoder
from vfe_hub.layers.box_head import ConvFCBoxHead, detect
from vfe_hub.layers.necks import FPN
from vfe_hub.layers.resnet import ResNet
from vfe_hub.layers.mask_head import FCNMaskHead
from vfe_hub.layers.roi import pool_rois, unique_rois
from vfe_hub.layers.rpn import ProposalSelector


@pytest.mark.slow
@pytest.mark.parametrize("style", ["pytorch", "caffe"])
def test_resnet_equals_torchvision_with_the_same_weights(style):
    """torchvision's ResNet is the pytorch style; moving each first block's stride from its 3x3 conv to its first
    1x1 conv makes it the caffe style."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    for m in reference.modules():  # non-trivial BN statistics so a mis-mapped buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    if style == "caffe":
        for layer in (reference.layer2, reference.layer3, reference.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    ours = ResNet(50, style=style).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.") and "num_batches" not in k}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        body = torchvision.models._utils.IntermediateLayerGetter(reference, {f"layer{i}": str(i) for i in range(1, 5)})
        expected = list(body(x).values())
        got = ours(x)
    for e, g in zip(expected, got):  # frozen BN folds scale and shift: float32 rounding differs, nothing else
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-4 * e.abs().max().item())


def test_dilated_stage_keeps_resolution_and_dilates_every_block():
    net = ResNet(101, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), out_indices=(3,))
    [c5] = net(torch.randn(1, 3, 64, 96))
    assert c5.shape == (1, 2048, 4, 6)  # stride 16
    assert all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in net.layer4)


def test_anchors_follow_mmdetection():
    gen = AnchorGenerator([16], ratios=(0.5, 1.0, 2.0), scales=(4, 8, 16, 32))
    base = gen.base[0]
    assert base.shape == (12, 4)
    # ratio 0.5, scale 8: w = 16 * 8 / sqrt(0.5), h = 16 * 8 * sqrt(0.5), centred on 0, not rounded
    w, h = 128 / math.sqrt(0.5), 128 * math.sqrt(0.5)
    torch.testing.assert_close(base[1], torch.tensor([-w / 2, -h / 2, w / 2, h / 2]))
    grid = gen.grid(0, (2, 3), torch.device("cpu"))
    assert grid.shape == (2 * 3 * 12, 4)
    # (y=1, x=2) cell, anchor 5: shift (32, 16); H, W, A order
    torch.testing.assert_close(grid[(1 * 3 + 2) * 12 + 5], base[5] + torch.tensor([32.0, 16.0, 32.0, 16.0]))


def test_box_coder_reproduces_mmdetection_docstring_example():
    rois = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, -1.0], [0.7, -1.9, -0.5, 0.3]])
    expected = torch.tensor([[0.0000, 0.0000, 1.0000, 1.0000], [0.1409, 0.1409, 2.8591, 2.8591],
                             [0.0000, 0.3161, 4.1945, 0.6839], [5.0000, 5.0000, 5.0000, 5.0000]])
    torch.testing.assert_close(DeltaXYWHCoder().decode(rois, deltas, (32, 32)), expected, atol=1e-4, rtol=0)


def test_box_coder_class_specific_equals_float64_formula():
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(5, 2, generator=g) * 50
    boxes = torch.cat([boxes, boxes + 1 + torch.rand(5, 2, generator=g) * 50], 1)
    deltas = torch.randn(5, 12, generator=g) * 3
    got = DeltaXYWHCoder(stds=(0.2,) * 4).decode(boxes, deltas, None).double()
    b, d = boxes.double(), deltas.double().view(5, 3, 4) * 0.2
    clip = abs(math.log(16 / 1000))
    cx, cy = ((b[:, 0] + b[:, 2]) / 2)[:, None], ((b[:, 1] + b[:, 3]) / 2)[:, None]
    w, h = (b[:, 2] - b[:, 0])[:, None], (b[:, 3] - b[:, 1])[:, None]
    nx, ny = cx + w * d[..., 0], cy + h * d[..., 1]
    nw, nh = w * d[..., 2].clamp(-clip, clip).exp(), h * d[..., 3].clamp(-clip, clip).exp()
    expected = torch.stack([nx - nw / 2, ny - nh / 2, nx + nw / 2, ny + nh / 2], -1).view(5, 12)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_relation_attention_equals_float64_reference():
    torch.manual_seed(0)
    att = RelationAttention(64, heads=4).double()
    x, refs = torch.randn(7, 64, dtype=torch.float64), torch.randn(11, 64, dtype=torch.float64)
    q, k, v = att.query_proj(x), att.key_proj(refs), att.value_proj(refs)
    heads = []
    for i in range(4):
        s = slice(16 * i, 16 * (i + 1))
        weights = torch.softmax(q[:, s] @ k[:, s].T / 4.0, dim=1)
        heads.append(weights @ v[:, s])
    expected = att.out_proj(torch.cat(heads, 1))
    torch.testing.assert_close(att(x, refs), expected)


def test_memory_bank_reads_and_replaces_like_the_original():
    bank = MemoryBank(max_length=10, key_length=4, seed=3)
    bank.reset(torch.arange(3.0)[:, None])
    assert torch.equal(bank.sample(), torch.arange(3.0)[:, None])  # fewer than key_length: everything
    bank.update(torch.full((8, 1), 100.0))
    assert len(bank) == 11  # appends while below max_length, overshooting once
    assert bank.sample().shape == (4, 1) and len(set(bank.sample().flatten().tolist())) >= 2
    bank.update(torch.full((2, 1), -1.0))
    assert len(bank) == 11 and torch.equal(bank.rows[-2:], torch.full((2, 1), -1.0))
    first = bank.sample()
    bank.reset(torch.arange(20.0)[:, None])
    again = MemoryBank(max_length=10, key_length=4, seed=3)
    again.reset(torch.arange(20.0)[:, None])
    assert torch.equal(bank.sample(), again.sample()), "reset reseeds: runs are repeatable"
    assert first.shape == (4, 1)


def test_pool_rois_maps_levels_like_mmdetection():
    feats = [torch.full((1, 1, 64, 64), float(i)) for i in range(4)]
    # scale sqrt(w h): 56 -> level 0 ... 448 -> level 3; 1000 clamps to the last level
    rois = torch.tensor([[0, 0, 0, 55.9, 55.9], [0, 0, 0, 112, 112], [0, 0, 0, 224, 224], [0, 0, 0, 448, 448],
                         [0, 0, 0, 1000, 1000]])
    out = pool_rois(feats, rois, [4, 8, 16, 32])
    assert out[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 3.0]
    single = pool_rois(feats[:1], rois[:1], [4], sampling_ratio=2)
    expected = torchvision.ops.roi_align(feats[0], rois[:1], 7, 0.25, 2, aligned=True)
    assert torch.equal(single, expected)


def test_mask_head_on_distinct_rois_equals_the_head_on_every_roi():
    """Detections of several classes on one box (class-agnostic regression) share their RoI: the head runs once
    per distinct RoI and its output is gathered back, bit for bit what it gives on every row."""
    torch.manual_seed(0)
    feats = [torch.randn(2, 8, 64 // 2**i, 80 // 2**i) for i in range(4)]
    xy = torch.rand(7, 2) * 150
    boxes = torch.cat([xy, xy + 8 + torch.rand(7, 2) * 150], dim=1)
    distinct = torch.cat([torch.tensor([0, 0, 0, 1, 1, 1, 1.0])[:, None], boxes], dim=1)
    rois = distinct[torch.tensor([3, 0, 3, 5, 1, 0, 6, 2, 4, 3, 6])]  # repeated rows, in no particular order
    head = FCNMaskHead(8, 8, 2).eval()
    with torch.inference_mode():
        direct = head(pool_rois(feats, rois, [4, 8, 16, 32], output_size=14))
        unique, rows = unique_rois(rois)
        shared = head(pool_rois(feats, unique, [4, 8, 16, 32], output_size=14))[rows]
    assert len(unique) == 7 and torch.equal(unique[rows], rois)
    assert torch.equal(shared, direct)


def test_resnet_style_is_checked():
    with pytest.raises(ValueError, match="style must be one of"):
        ResNet(50, style="tensorflow")


class _FixedAnchors:
    def __init__(self, boxes: torch.Tensor) -> None:
        self.boxes = boxes

    def grid(self, level: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        return self.boxes


@pytest.mark.parametrize("min_size, kept", [(0.0, [0.25, 0.5, 1.0]), (0.5, [0.5, 1.0])])
def test_proposal_min_size_follows_mmdetection(min_size, kept):
    """mmdetection 2.7 keeps ``w >= min_bbox_size`` (and h) when the size is positive; with 0 we keep ``w > 0``."""
    widths = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x = torch.arange(4.0) * 10  # far apart: NMS keeps every box
    anchors = torch.stack([x, x, x + widths, x + 2], dim=1)
    selector = ProposalSelector(_FixedAnchors(anchors), nms_pre=10, iou=0.7, max_per_img=10, min_size=min_size)
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0]).view(1, 4, 1, 1)  # one cell with 4 "anchors", zero deltas
    [(boxes, _)] = selector([(logits, torch.zeros(1, 16, 1, 1))], [(100, 100)])
    assert (boxes[:, 2] - boxes[:, 0]).tolist() == kept


def test_conv_fc_box_head_equals_explicit_layers():
    """4conv1fc with BN (DetPro's branches): conv (no bias) -> frozen BN -> ReLU, C-major flatten, fc -> ReLU."""
    torch.manual_seed(0)
    head = ConvFCBoxHead(8, 5, 3, num_convs=2, conv_channels=6, norm=True, num_fcs=1, fc_dim=10,
                         class_agnostic=True).double()
    for name, buffer in head.named_buffers():
        buffer.uniform_(0.5, 1.5) if name.endswith("running_var") else buffer.uniform_(-0.3, 0.3)
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
    y = x
    for block in head.shared_convs:
        assert block.conv.bias is None
        bn = block.bn
        y = F.conv2d(y, block.conv.weight, padding=1)
        y = (y - bn.running_mean[:, None, None]) / (bn.running_var[:, None, None] + bn.eps).sqrt()
        y = (y * bn.weight[:, None, None] + bn.bias[:, None, None]).clamp(min=0)
    embedding = (y.reshape(4, -1) @ head.fcs[0].weight.T + head.fcs[0].bias).clamp(min=0)
    torch.testing.assert_close(head.embed(x), embedding)
    logits, deltas = head(x)
    assert logits.shape == (4, 4) and deltas.shape == (4, 4)
    assert {k.split(".")[0] for k in head.state_dict()} == {"shared_convs", "fcs", "cls_score", "bbox_pred"}
    branch = ConvFCBoxHead(8, 5, None, num_convs=1, num_fcs=1, fc_dim=10, with_reg=False)
    assert branch.cls_score is None and branch.bbox_pred is None and branch(torch.randn(2, 8, 5, 5)) == (None, None)


def test_detect_with_class_agnostic_boxes_repeats_the_box_for_every_class():
    g = torch.Generator().manual_seed(0)
    proposals = torch.rand(30, 2, generator=g) * 80
    proposals = torch.cat([proposals, proposals + 5 + torch.rand(30, 2, generator=g) * 40], dim=1)
    scores = torch.rand(30, 5, generator=g).softmax(dim=1)
    deltas = torch.randn(30, 4, generator=g) * 0.3
    coder = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))
    args = (coder, (100, 120), (0.5, 0.25), 0.15, 0.5, 40)
    agnostic = detect(proposals, scores, deltas, *args)
    specific = detect(proposals, scores, deltas.repeat(1, 5), *args)
    assert len(agnostic[0]) > 10 and len(agnostic[2].unique()) == 5
    for a, b in zip(agnostic, specific):
        assert torch.equal(a, b)
    assert (agnostic[1] > 0.15).all()
    assert (agnostic[0][:, 2] <= 120 / 0.5).all() and (agnostic[0][:, 3] <= 100 / 0.25).all()  # input pixels


def fpn_inputs(channels=(8, 16, 32), sizes=((32, 48), (16, 24), (8, 12))):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes)]


def test_fpn_p6p7_convolves_p5_then_relu_p6():
    torch.manual_seed(0)
    fpn = FPN([8, 16, 32], 16, num_outs=5, extra="p6p7").eval()
    assert sorted(k for k in fpn.state_dict() if k.startswith("extra_convs")) == [
        "extra_convs.0.bias", "extra_convs.0.weight", "extra_convs.1.bias", "extra_convs.1.weight"]
    feats = fpn_inputs()
    with torch.no_grad():
        outs = fpn(feats)
        # detectron2's top-down path: 2x nearest upsampling, then the 3x3 output convs
        p5 = fpn.lateral_convs[2](feats[2])
        p4 = fpn.lateral_convs[1](feats[1]) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = fpn.lateral_convs[0](feats[0]) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        expected = [conv(x) for conv, x in zip(fpn.fpn_convs, (p3, p4, p5))]
        c6, c7 = fpn.extra_convs
        expected.append(F.conv2d(expected[2], c6.weight, c6.bias, stride=2, padding=1))
        expected.append(F.conv2d(expected[3].clamp(min=0), c7.weight, c7.bias, stride=2, padding=1))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 48), (2, 16, 16, 24), (2, 16, 8, 12), (2, 16, 4, 6),
                                              (2, 16, 2, 3)]
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert (outs[3] < 0).any(), "P6 itself is not rectified"


def test_fpn_maxpool_levels_stay_the_default():
    fpn = FPN([8, 16, 32, 64], 16, num_outs=5).eval()
    assert fpn.extra_convs is None and not any("extra" in k for k in fpn.state_dict())
    feats = fpn_inputs((8, 16, 32, 64), ((32, 48), (16, 24), (8, 12), (4, 6)))
    with torch.no_grad():
        outs = fpn(feats)
    assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])
    with pytest.raises(ValueError, match="extra"):
        FPN([8], 16, extra="conv")
