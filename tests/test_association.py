"""GTR's association layers against float64 references written from the functional ops, and the parameter layout
of the original checkpoint (``roi_heads.transformer.*``, ``roi_heads.asso_predictor.*``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vfe_hub.layers.association import TrackingTransformer, per_frame_softmax
from vfe_hub.layers.box_head import ConvFCBoxHead


def test_per_frame_softmax_equals_a_float64_reference():
    g = torch.Generator().manual_seed(0)
    counts = [3, 0, 1, 4]
    logits = torch.randn(5, sum(counts), generator=g) * 4
    expected, start = torch.zeros(5, sum(counts), dtype=torch.float64), 0
    for n in counts:
        for i in range(5):
            exp = [float(v) for v in logits[i, start:start + n].double().exp()]
            for j, e in enumerate(exp):
                expected[i, start + j] = e / (sum(exp) + 1.0)  # the extra logit 0.0 contributes exp(0) = 1
        start += n
    got = per_frame_softmax(logits, counts)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)
    assert per_frame_softmax(logits[:, :0], []).shape == (5, 0)


def attention(x, memory, prefix, state, heads):
    """Multi-head attention from its packed projections, in float64: softmax(q k^T / sqrt(d)) v, then out_proj."""
    w, b = state[f"{prefix}.in_proj_weight"], state[f"{prefix}.in_proj_bias"]
    dim = x.shape[1]
    q = x @ w[:dim].T + b[:dim]
    k = memory @ w[dim:2 * dim].T + b[dim:2 * dim]
    v = memory @ w[2 * dim:].T + b[2 * dim:]
    d = dim // heads
    out = torch.cat([F.softmax(q[:, h * d:(h + 1) * d] @ k[:, h * d:(h + 1) * d].T / d ** 0.5, dim=1)
                     @ v[:, h * d:(h + 1) * d] for h in range(heads)], dim=1)
    return out @ state[f"{prefix}.out_proj.weight"].T + state[f"{prefix}.out_proj.bias"]


def ffn(x, prefix, state):
    hidden = F.relu(F.linear(x, state[f"{prefix}.linear1.weight"], state[f"{prefix}.linear1.bias"]))
    return x + F.linear(hidden, state[f"{prefix}.linear2.weight"], state[f"{prefix}.linear2.bias"])


def mlp(x, prefix, state):
    x = F.relu(F.linear(x, state[f"{prefix}.layers.0.weight"], state[f"{prefix}.layers.0.bias"]))
    return F.linear(x, state[f"{prefix}.layers.1.weight"], state[f"{prefix}.layers.1.bias"])


def test_tracking_transformer_equals_a_float64_reference():
    torch.manual_seed(0)
    dim, heads = 64, 8
    model = TrackingTransformer(dim, heads).eval()
    for p in model.parameters():  # non-zero biases everywhere, scaled so that attention is not uniform
        torch.nn.init.normal_(p, std=0.3 if p.dim() > 1 else 0.1)
    state = {k: v.double() for k, v in model.state_dict().items()}
    features = torch.randn(11, dim)
    query = features[7:]  # the last frame's detections
    with torch.no_grad():
        got = model(features, query)
    x = features.double()
    memory = ffn(x + attention(x, x, "encoder.layers.0.self_attn", state, heads), "encoder.layers.0", state)
    q = query.double()
    out = ffn(q + attention(q, memory, "decoder.layers.0.multihead_attn", state, heads), "decoder.layers.0", state)
    expected = mlp(out, "q_proj", state) @ mlp(memory, "k_proj", state).T
    assert got.shape == (4, 11)
    assert expected.abs().max() > 10  # unscaled dot products of the projections
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    model.train()  # dropout acts in training only
    assert not torch.equal(model(features, query), got)


def test_parameter_names_and_shapes_follow_the_original_checkpoint():
    """Every key of roi_heads.transformer.* and roi_heads.asso_predictor.* maps 1:1 by dropping the prefix; no
    norm, no decoder self-attention, no positional embedding."""
    attn = {"in_proj_weight": (3072, 1024), "in_proj_bias": (3072,), "out_proj.weight": (1024, 1024),
            "out_proj.bias": (1024,)}
    linear = {"weight": (1024, 1024), "bias": (1024,)}
    expected = {}
    for part, name in (("encoder", "self_attn"), ("decoder", "multihead_attn")):
        expected.update({f"{part}.layers.0.{name}.{k}": v for k, v in attn.items()})
        for layer in ("linear1", "linear2"):
            expected.update({f"{part}.layers.0.{layer}.{k}": v for k, v in linear.items()})
    for proj in ("q_proj", "k_proj"):
        for i in (0, 1):
            expected.update({f"{proj}.layers.{i}.{k}": v for k, v in linear.items()})
    got = {k: tuple(v.shape) for k, v in TrackingTransformer().state_dict().items()}
    assert got == expected
    head = {k: tuple(v.shape) for k, v in ConvFCBoxHead(256, 7, None, with_reg=False).state_dict().items()}
    assert head == {"fcs.0.weight": (1024, 12544), "fcs.0.bias": (1024,), "fcs.1.weight": (1024, 1024),
                    "fcs.1.bias": (1024,)}  # the re-ID head: roi_heads.asso_head.fc{1,2}
