"""Res2Net v1b (DCN) against its blocks written out by hand in float64, and against the detectron2 key layout."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.layers.centernet import CenterNetHead
from vfe_hub.layers.necks import FPN
from vfe_hub.layers.res2net import Bottle2neck, Res2Net

from deform_reference import deform_conv_reference
from original_layouts import centernet2_dr2101_layout, random_state


def randomise(module: nn.Module, seed: int) -> None:
    """Random weights and frozen-BN statistics everywhere, offsets large enough to sample between pixels."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=g))
            elif name.endswith("offset.weight"):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=g))
            else:
                tensor.copy_(0.5 * torch.randn(tensor.shape, generator=g))


def frozen_bn(x, state, name):
    scale = state[f"{name}.weight"] / torch.sqrt(state[f"{name}.running_var"] + 1e-5)
    shift = state[f"{name}.bias"] - state[f"{name}.running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def average_pool_ceil(x, k):
    """Mean over each ``k x k`` window at stride ``k``, the last windows cut at the border (over what they cover)."""
    b, c, h, w = x.shape
    out = torch.zeros(b, c, -(-h // k), -(-w // k), dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * k:(i + 1) * k, j * k:(j + 1) * k].mean((2, 3))
    return out


def bottle2neck_reference(x, state, width, stride, first, deform):
    """The block as CenterNet2's detectron2 Res2Net computes it with the stride in the first 1x1 conv."""
    y = F.relu(frozen_bn(F.conv2d(x, state["conv1.weight"], stride=stride), state, "bn1"))
    chunks = y.split(width, 1)
    outs, sp = [], None
    for j in range(len(chunks) - 1):
        sp = chunks[j] if sp is None or first else sp + chunks[j]
        if deform:
            raw = F.conv2d(sp, state[f"convs.{j}.offset.weight"], padding=1)
            weight, mask = state[f"convs.{j}.weight"], raw[:, 18:].sigmoid()
            sp = deform_conv_reference(sp, raw[:, :18], weight, None, 1, 1, 1, mask)
        else:
            sp = F.conv2d(sp, state[f"convs.{j}.weight"], padding=1)
        sp = F.relu(frozen_bn(sp, state, f"bns.{j}"))
        outs.append(sp)
    y = frozen_bn(F.conv2d(torch.cat(outs + [chunks[-1]], 1), state["conv3.weight"]), state, "bn3")
    if first:
        x = frozen_bn(F.conv2d(average_pool_ceil(x, stride), state["downsample.1.weight"]), state, "downsample.2")
    return F.relu(y + x)


def test_deformable_block_equals_float64_reference():
    torch.manual_seed(0)
    block = Bottle2neck(32, 32, width=8, scale=4, deform=True).double().eval()
    randomise(block, 1)
    assert block.downsample is None
    x = torch.randn(2, 32, 6, 7, dtype=torch.float64)
    expected = bottle2neck_reference(x, block.state_dict(), 8, 1, first=False, deform=True)
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_first_block_strides_in_its_1x1_conv_and_pools_its_shortcut():
    torch.manual_seed(0)
    block = Bottle2neck(16, 32, width=4, scale=4, stride=2).double().eval()
    randomise(block, 2)
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)  # odd sizes: the pool's last windows are partial
    expected = bottle2neck_reference(x, block.state_dict(), 4, 2, first=True, deform=False)
    actual = block(x)
    assert actual.shape == (2, 32, 4, 5)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_res2net101_dcn_stages_have_the_documented_channels_and_strides():
    backbone = Res2Net().eval()
    assert backbone.out_channels == [512, 1024, 2048]
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 65, 97))
    assert [tuple(o.shape) for o in outs] == [(1, 512, 9, 13), (1, 1024, 5, 7), (1, 2048, 3, 4)]
    assert all(torch.isfinite(o).all() for o in outs)
    deformable = {name.split(".")[0] for name, m in backbone.named_modules() if name.endswith("convs.0.offset")}
    assert deformable == {"layer3", "layer4"}


def test_detectron2_checkpoint_maps_one_to_one_onto_backbone_neck_and_proposal_head():
    model = nn.Module()
    model.backbone = Res2Net()
    model.neck = FPN([512, 1024, 2048], 256, num_outs=5, extra="p6p7")
    model.proposal_head = CenterNetHead(256, num_levels=5)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    layout = centernet2_dr2101_layout()
    original = random_state(layout)
    state, dropped = convert_state_dict(original, table_for("detectron2"), expected)
    assert dropped == [] and len(state) == len(layout) == len(expected)
    model.load_state_dict(state, strict=True)
    renamed = dict(zip(original, state))  # spot checks of the mapping, in the original's key order
    assert renamed["backbone.bottom_up.stem.bn1.running_var"] == "backbone.stem.7.running_var"
    assert renamed["backbone.bottom_up.res4.22.conv2_offsets.2.weight"] == "backbone.layer3.22.convs.2.offset.weight"
    assert renamed["backbone.bottom_up.res3.0.shortcut.1.norm.bias"] == "backbone.layer2.0.downsample.2.bias"
    assert renamed["backbone.top_block.p7.bias"] == "neck.extra_convs.1.bias"
    assert renamed["proposal_generator.centernet_head.bbox_tower.9.conv.weight"] == "proposal_head.tower.9.weight"
    torch.testing.assert_close(model.backbone.layer4[2].convs[1].weight,
                               original["backbone.bottom_up.res5.2.convs.1.weight"])
