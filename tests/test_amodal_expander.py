"""The Amodal Expander: its sinusoidal code and MLP against float64 write-outs, and its use in the cascade."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vfe_hub.layers.amodal_expander import AmodalExpander, sinusoidal_code
from vfe_hub.layers.box_coder import Box2BoxCoder, clip_boxes
from vfe_hub.layers.cascade import CascadeBoxHeads

WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


def code_reference(deltas: list[float]) -> list[float]:
    """The code of one row written out: 32 frequencies 10 ** (j / 32), each giving sin, cos of d0, d1, d2, d3."""
    out = []
    for j in range(32):
        for d in deltas:
            out += [math.sin(d / 10 ** (j / 32)), math.cos(d / 10 ** (j / 32))]
    return out


def test_sinusoidal_code_equals_the_written_out_layout():
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(6, 4, generator=g, dtype=torch.float64) * 3
    code = sinusoidal_code(deltas)
    assert code.shape == (6, 256) and code.dtype == torch.float64
    expected = torch.tensor([code_reference(row) for row in deltas.tolist()], dtype=torch.float64)
    torch.testing.assert_close(code, expected, rtol=0, atol=1e-13)
    d0, d1, d2, d3 = deltas[2].tolist()
    row = code[2].tolist()  # single columns: the period-8 interleave, and the lowest frequency at j = 31
    assert math.isclose(row[0], math.sin(d0)) and math.isclose(row[1], math.cos(d0))
    assert math.isclose(row[2], math.sin(d1)) and math.isclose(row[5], math.cos(d2))
    assert math.isclose(row[7], math.cos(d3)) and math.isclose(row[8], math.sin(d0 / 10 ** (1 / 32)))
    assert math.isclose(row[8 * 31 + 6], math.sin(d3 / 10 ** (31 / 32)))
    assert math.isclose(row[255], math.cos(d3 / 10 ** (31 / 32)))
    float32 = sinusoidal_code(deltas.float())
    assert float32.dtype == torch.float32
    torch.testing.assert_close(float32.double(), expected, rtol=0, atol=1e-5)


def test_expander_equals_its_float64_reference_and_names_parameters_as_the_original():
    torch.manual_seed(0)
    expander = AmodalExpander().double().eval()
    shapes = {k: tuple(v.shape) for k, v in expander.state_dict().items()}
    assert shapes == {"expand_modal_box.layers.0.weight": (256, 1280), "expand_modal_box.layers.0.bias": (256,),
                      "expand_modal_box.layers.1.weight": (4, 256), "expand_modal_box.layers.1.bias": (4,)}
    features = torch.rand(5, 1024, dtype=torch.float64)
    modal = torch.randn(5, 4, dtype=torch.float64) * 2
    with torch.no_grad():
        got = expander(features, modal)
    (w0, b0), (w1, b1) = [(layer.weight, layer.bias) for layer in expander.expand_modal_box.layers]
    code = torch.tensor([code_reference(row) for row in modal.tolist()], dtype=torch.float64)
    hidden = F.relu(F.linear(torch.cat([features, code], dim=1), w0, b0))  # features first, then the code
    expected = modal + F.linear(hidden, w1, b1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    swapped = modal + F.linear(F.relu(F.linear(torch.cat([code, features], dim=1), w0, b0)), w1, b1)
    assert not torch.allclose(got, swapped)


def _cascade_case():
    torch.manual_seed(0)
    heads = CascadeBoxHeads([Box2BoxCoder(w) for w in WEIGHTS], num_classes=5, in_channels=4, roi_size=2,
                            fc_dim=16).eval()
    for stage in heads.stages:  # modal boxes that leave the image too, so that the clip between stages matters
        torch.nn.init.normal_(stage.bbox_pred.weight, std=20.0)
    expander = AmodalExpander(feature_dim=16, hidden_dim=8).eval()
    with torch.no_grad():  # dw, dh + 200: clamped at log(1000 / 16), amodal boxes 62.5 times wider than modal ones
        expander.expand_modal_box.layers[1].bias.copy_(torch.tensor([0.0, 0.0, 200.0, 200.0]))
    sizes = [(60, 80), (50, 40)]
    proposals = [torch.tensor([[10.0, 10.0, 40.0, 50.0], [0.0, 5.0, 79.0, 59.0], [30.0, 2.0, 35.0, 8.0]]),
                 torch.tensor([[1.0, 1.0, 39.0, 49.0], [5.0, 5.0, 15.0, 25.0]])]
    return heads, expander, sizes, proposals


def _features(boxes: list[torch.Tensor]) -> torch.Tensor:
    """RoI features as a function of the pooled boxes, so each stage's input depends on what it pooled."""
    return torch.cat(boxes).repeat(1, 4).reshape(-1, 4, 2, 2) / 100


def test_cascade_expander_decodes_amodal_boxes_and_feeds_the_next_stage_the_modal_ones():
    heads, expander, sizes, proposals = _cascade_case()
    pooled, seen = [], []

    def pool(boxes):
        pooled.append([b.clone() for b in boxes])
        return _features(boxes)

    def recording_expander(features, deltas):
        seen.append((features, deltas))
        return expander(features, deltas)

    with torch.no_grad():
        outputs = heads(pool, proposals, sizes, expander=recording_expander)
        plain = heads(lambda b: _features(b), proposals, sizes)
    assert len(pooled) == len(seen) == 3
    for k, (out, ref) in enumerate(zip(outputs, plain)):
        stage, coder = heads.stages[k], Box2BoxCoder(WEIGHTS[k])
        feats = _features(pooled[k])
        assert torch.equal(out.logits, ref.logits) and ref.amodal_boxes is None  # the modal path is untouched
        assert all(torch.equal(a, b) for a, b in zip(out.boxes, ref.boxes))
        assert all(torch.equal(a, b) for a, b in zip(out.proposals, ref.proposals))
        torch.testing.assert_close(seen[k][0], stage.embed(feats))  # the stage's own fc output and deltas
        torch.testing.assert_close(seen[k][1], stage(feats)[1])
        expected = coder.decode(torch.cat(pooled[k]), expander(stage.embed(feats), stage(feats)[1]), None)
        torch.testing.assert_close(torch.cat(out.amodal_boxes), expected)
        assert [len(b) for b in out.amodal_boxes] == [3, 2]
        for amodal, box, (h, w) in zip(out.amodal_boxes, pooled[k], sizes):  # unclipped: they leave the image
            assert ((amodal[:, 0] < 0) & (amodal[:, 2] > w)).any() and ((amodal[:, 1] < 0) & (amodal[:, 3] > h)).any()
            torch.testing.assert_close(amodal[:, 2:] - amodal[:, :2], (box[:, 2:] - box[:, :2]) * 1000 / 16)
        if k:  # stage k pools stage k - 1's modal boxes, clipped; never the amodal ones
            for prev, now, size in zip(outputs[k - 1].boxes, pooled[k], sizes):
                assert torch.equal(now, clip_boxes(prev, size))
            assert not torch.allclose(torch.cat(pooled[k]), torch.cat(
                [clip_boxes(a, s) for a, s in zip(outputs[k - 1].amodal_boxes, sizes)]))


def test_cascade_without_expander_matches_the_box_heads_run_directly():
    """The stage embedding is computed once and shared: logits and boxes equal ``head(features)`` bit for bit."""
    heads, _, sizes, proposals = _cascade_case()
    with torch.no_grad():
        outputs = heads(_features, proposals, sizes)
        boxes = proposals
        for k, out in enumerate(outputs):
            if k:
                boxes = [clip_boxes(b, s) for b, s in zip(outputs[k - 1].boxes, sizes)]
            logits, deltas = heads.stages[k](_features(boxes))
            assert torch.equal(out.logits, logits) and out.amodal_boxes is None
            assert torch.equal(torch.cat(out.boxes), Box2BoxCoder(WEIGHTS[k]).decode(torch.cat(boxes), deltas, None))
