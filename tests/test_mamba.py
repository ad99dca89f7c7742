"""MAMBA: strict conversion of the released key layout and the DC5 backbone (shared behaviour: test_video_models)."""
from __future__ import annotations

import pytest
import torch

from original_layouts import mamba_layout, random_state
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.errors import ConversionError
from vfe_hub.registry import get_spec


@pytest.fixture(scope="module")
def original_state():
    return random_state(mamba_layout(), seed=0)


@pytest.mark.slow
def test_released_layout_converts_strictly(original_state):
    net = get_spec("mamba_r101_dc5_vid").build()
    expected = {k: v.shape for k, v in net.state_dict().items()}
    state, dropped = convert_state_dict(original_state, table_for("mmdet_v2"), expected)
    assert len(original_state) == 656
    assert len(dropped) == 104 and all(k.endswith("num_batches_tracked") for k in dropped)
    assert set(state) == set(expected) and len(state) == 552
    net.load_state_dict(state, strict=True)
    head = "detector.roi_head.bbox_head."
    pairs = {
        head + "fc_cls.weight": net.box_head.cls_score.weight,
        head + "fc_reg.bias": net.box_head.bbox_pred.bias,
        head + "aggregator.1.ref_fc_embed.weight": net.aggregators[1].key_proj.weight,
        head + "aggregator.0.ref_fc.bias": net.aggregators[0].value_proj.bias,
        head + "aggregator.0.fc.weight": net.aggregators[0].out_proj.weight,
        "detector.rpn_head.rpn_reg.weight": net.rpn.bbox_pred.weight,
        "detector.neck.convs.0.conv.bias": net.neck.convs[0].bias,
        "detector.backbone.layer4.2.bn3.running_var": net.backbone.layer4[2].bn3.running_var,
    }
    for key, tensor in pairs.items():
        assert torch.equal(original_state[key], tensor), key
    # DC5: every layer4 block is dilated (mmdetection), unlike torchvision's replace_stride_with_dilation.
    assert [b.conv2.dilation for b in net.backbone.layer4] == [(2, 2)] * 3
    assert net.backbone.layer4[0].conv2.stride == (1, 1)


@pytest.mark.parametrize("fault", ["missing", "extra", "shape"])
def test_conversion_names_the_offending_key(original_state, fault):
    state = dict(original_state)
    key = "detector.roi_head.bbox_head.fc_cls.weight"
    if fault == "missing":
        del state[key]
        needle = "box_head.cls_score.weight"
    elif fault == "extra":
        key = "detector.roi_head.bbox_head.fc_extra.weight"
        state[key] = torch.zeros(3)
        needle = key
    else:
        state[key] = torch.zeros(32, 1024)
        needle = "box_head.cls_score.weight: file (32, 1024) vs model (31, 1024)"
    net = get_spec("mamba_r101_dc5_vid").build()
    expected = {k: v.shape for k, v in net.state_dict().items()}
    with pytest.raises(ConversionError, match=r"(?s).*" + __import__("re").escape(needle)):
        convert_state_dict(state, table_for("mmdet_v2"), expected)
