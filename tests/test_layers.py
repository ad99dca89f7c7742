"""Shared layers against references that can run here: torchvision, mmdetection's documented values, float64."""
from __future__ import annotations

import math

import torch
import torchvision

from vfe_hub.layers.anchors import AnchorGenerator
from vfe_hub.layers.attention import MemoryBank, RelationAttention
from vfe_hub.layers.box_coder import DeltaXYWHCoder
from vfe_hub.layers.resnet import ResNet
from vfe_hub.layers.roi import pool_rois


def test_resnet_equals_torchvision_with_the_same_weights():
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    for m in reference.modules():  # non-trivial BN statistics so a mis-mapped buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    ours = ResNet(50).eval()
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
