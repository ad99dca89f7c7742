"""STPN: strict conversion of the released key layout and the prompt procedure (shared behaviour:
test_video_models; the prompted Swin itself: test_swin)."""
from __future__ import annotations

import pytest
import torch

from media import panning_clip
from original_layouts import random_state, stpn_layout
from small_models import video_model
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.registry import get_spec


@pytest.fixture(scope="module")
def original_state():
    return random_state(stpn_layout(), seed=0)


def test_released_layout_converts_strictly(original_state):
    net = get_spec("stpn_swint_vid").build()
    expected = {k: v.shape for k, v in net.state_dict().items()}
    state, dropped = convert_state_dict(original_state, table_for("mmdet_v2"), expected)
    buffers = [k for k in original_state if k.endswith("relative_position_index")]
    assert len(original_state) == 230 and len(buffers) == 12
    floats = sum(v.numel() for k, v in original_state.items() if k not in buffers)
    assert floats == 45_006_624  # the dossier's parameter count of the released file
    assert dropped == [] and set(state) == set(expected)
    net.load_state_dict(state, strict=True)
    d = "detector."
    pairs = {
        d + "backbone.patch_embed.projection.weight": net.backbone.patch_embed.projection.weight,
        d + "backbone.stages.2.blocks.5.attn.w_msa.qkv.weight": net.backbone.stages[2].blocks[5].attn.qkv.weight,
        d + "backbone.stages.3.blocks.1.attn.w_msa.relative_position_bias_table":
            net.backbone.stages[3].blocks[1].attn.relative_position_bias_table,
        d + "backbone.stages.1.blocks.0.ffn.layers.0.0.weight": net.backbone.stages[1].blocks[0].mlp.fc1.weight,
        d + "backbone.stages.1.blocks.0.ffn.layers.1.bias": net.backbone.stages[1].blocks[0].mlp.fc2.bias,
        d + "backbone.stages.0.downsample.reduction.weight": net.backbone.stages[0].downsample.reduction.weight,
        d + "backbone.norm3.weight": net.backbone.norms[3].weight,
        d + "neck.lateral_convs.3.conv.weight": net.neck.lateral_convs[3].conv.weight,
        d + "neck.fpn_convs.0.conv.bias": net.neck.fpn_convs[0].conv.bias,
        d + "rpn_head.rpn_reg.weight": net.rpn.bbox_pred.weight,
        d + "roi_head.bbox_head.fc_reg.bias": net.box_head.bbox_pred.bias,
        "prompt_predictor.query": net.prompt_predictor.query,
        "prompt_predictor.reduction.weight": net.prompt_predictor.reduction.weight,
        "prompt_predictor.fc_embed.weight": net.prompt_predictor.attention.query_proj.weight,
        "prompt_predictor.ref_fc_embed.bias": net.prompt_predictor.attention.key_proj.bias,
        "prompt_predictor.ref_fc.weight": net.prompt_predictor.attention.value_proj.weight,
        "prompt_predictor.fc.bias": net.prompt_predictor.attention.out_proj.bias,
    }
    for key, tensor in pairs.items():
        assert torch.equal(original_state[key], tensor), key
    # The released index buffers are the ones the module computes: the relative position bias lines up.
    assert torch.equal(net.backbone.stages[0].blocks[0].attn.relative_position_index,
                       original_state[d + "backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"])


class _Recorder:
    """Records the backbone calls (batch size, prompted?) and the predictor inputs of a model."""

    def __init__(self, model):
        self.backbone: list[tuple[int, bool]] = []
        self.plain_outputs: list[torch.Tensor] = []
        self.predictor_inputs: list[torch.Tensor] = []

        def on_backbone(_, args, outputs):
            prompted = len(args) > 1 and args[1] is not None
            self.backbone.append((args[0].shape[0], prompted))
            if not prompted:
                self.plain_outputs.append(outputs[-1])

        self.handles = [model.backbone.register_forward_hook(on_backbone),
                        model.prompt_predictor.register_forward_hook(
                            lambda _, args, __: self.predictor_inputs.append(args[0]))]

    def close(self):
        for h in self.handles:
            h.remove()


@pytest.mark.slow
def test_paper_protocol_prompts_from_unprompted_references():
    model = video_model("stpn_swint_vid")
    frames = panning_clip(n=5, size=(120, 160))
    rec = _Recorder(model)
    try:
        model.predict(frames, protocol="paper", batch_size=2)
    finally:
        rec.close()
    # 14 references (spread over 5 frames) without prompts, once; then every frame with prompts, 2 + 2 + 1.
    assert rec.backbone == [(14, False), (2, True), (2, True), (1, True)]
    assert len(rec.predictor_inputs) == 1, "the paper protocol computes one prompt per video"
    with torch.inference_mode():
        expected_tokens = model.prompt_predictor.tokens(rec.plain_outputs[0])
    torch.testing.assert_close(rec.predictor_inputs[0], expected_tokens)
    assert rec.predictor_inputs[0].shape == (14 * rec.plain_outputs[0].shape[-2] * rec.plain_outputs[0].shape[-1], 96)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 4])
def test_streaming_prompt_is_refreshed_from_frames_already_seen(batch_size):
    model = video_model("stpn_swint_vid", prompt_interval=2)
    frames = panning_clip(n=5, size=(120, 160))
    rec = _Recorder(model)
    try:
        model.predict(frames, batch_size=batch_size)
    finally:
        rec.close()
    # Frames 0, 2 and 4 join the references: the prompt is recomputed from 1, 2, then 3 frames.
    per_frame = rec.plain_outputs[0].shape[-2] * rec.plain_outputs[0].shape[-1]
    assert [len(t) for t in rec.predictor_inputs] == [per_frame, 2 * per_frame, 3 * per_frame]
    assert sum(n for n, p in rec.backbone if not p) == 3 and sum(n for n, p in rec.backbone if p) == 5


@pytest.mark.slow
def test_streaming_references_are_a_bounded_window():
    model = video_model("stpn_swint_vid", prompt_interval=1)
    model.paper_references = 3  # the window length (14 by default); 3 keeps the test short
    rec = _Recorder(model)
    try:
        model.predict(panning_clip(n=5, size=(60, 80)), batch_size=5)
    finally:
        rec.close()
    sizes = [len(t) for t in rec.predictor_inputs]
    per_frame = sizes[0]
    assert sizes == [per_frame, 2 * per_frame, 3 * per_frame, 3 * per_frame, 3 * per_frame]


def test_prompt_interval_must_be_positive():
    with pytest.raises(ValueError, match="prompt_interval"):
        get_spec("stpn_swint_vid").build(prompt_interval=0)
