"""detectron2's box decoding (Box2BoxCoder) against its formula in float64, and the cascade's stage chaining."""
from __future__ import annotations

import math

import torch

from vfe_hub.layers.box_coder import Box2BoxCoder, DeltaXYWHCoder
from vfe_hub.layers.cascade import CascadeBoxHeads

WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


def box2box_reference(box, delta, weights):
    """Box2BoxTransform.apply_deltas for one box, written out in float64."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + 0.5 * w, y1 + 0.5 * h
    dx, dy, dw, dh = (d / s for d, s in zip(delta, weights))
    clamp = math.log(1000.0 / 16)
    pw, ph = math.exp(min(dw, clamp)) * w, math.exp(min(dh, clamp)) * h
    px, py = dx * w + cx, dy * h + cy
    return [px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph]


def test_box2box_coder_equals_the_formula_including_the_clamp():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(64, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + 1 + torch.rand(64, 2, generator=g) * 300], dim=1).double()
    deltas = torch.randn(64, 8, generator=g, dtype=torch.float64) * 15  # dw / 5 beyond log(1000 / 16) = 4.135 often
    deltas[0, 2:4] = torch.tensor([-60.0, 40.0])  # very small boxes are not clamped from below
    coder = Box2BoxCoder(WEIGHTS[0])
    got = coder.decode(boxes, deltas, None)
    expected = torch.tensor([box2box_reference(b, d, WEIGHTS[0]) for b, row in zip(boxes.tolist(), deltas.tolist())
                             for d in (row[:4], row[4:])], dtype=torch.float64).reshape(64, 8)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-9)
    assert (deltas[:, 2::4] / 5 > math.log(1000 / 16)).any() and (got[0, 2] - got[0, 0]) < 1e-3
    clipped = coder.decode(boxes, deltas, (240, 320))  # clipping only when a shape is given
    torch.testing.assert_close(clipped[:, 0::2], expected[:, 0::2].clamp(0, 320))
    torch.testing.assert_close(clipped[:, 1::2], expected[:, 1::2].clamp(0, 240))


def test_delta_xywh_coder_keeps_its_own_conventions():
    """mmdetection: centre (x1 + x2) / 2, deltas times stds, dw clamped on both sides to |log(16 / 1000)|."""
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0]], dtype=torch.float64)
    deltas = torch.tensor([[1.0, -1.0, -50.0, 50.0]], dtype=torch.float64)
    got = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2)).decode(boxes, deltas, None)
    r = math.log(1000 / 16)
    w, h = 40 * math.exp(-r), 80 * math.exp(r)
    cx, cy = 30 + 40 * 0.1, 60 - 80 * 0.1
    torch.testing.assert_close(got, torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]],
                                                 dtype=torch.float64))


def test_cascade_pools_each_stage_on_the_clipped_boxes_of_the_previous_one():
    torch.manual_seed(0)
    coders = [Box2BoxCoder(w) for w in WEIGHTS]
    heads = CascadeBoxHeads(coders, num_classes=5, in_channels=4, roi_size=2, fc_dim=16).eval()
    for stage in heads.stages:  # large deltas so that boxes leave the image and the clip matters
        torch.nn.init.normal_(stage.bbox_pred.weight, std=20.0)
    sizes = [(60, 80), (50, 40)]
    proposals = [torch.tensor([[10.0, 10.0, 40.0, 50.0], [0.0, 5.0, 79.0, 59.0], [30.0, 2.0, 35.0, 8.0]]),
                 torch.tensor([[1.0, 1.0, 39.0, 49.0], [5.0, 5.0, 15.0, 25.0]])]
    pooled = []

    def pool(boxes):  # features as a function of the boxes, so each stage's input depends on what it pooled
        pooled.append([b.clone() for b in boxes])
        return torch.cat(boxes).repeat(1, 4).reshape(-1, 4, 2, 2) / 100

    with torch.no_grad():
        outputs = heads(pool, proposals, sizes)
    assert len(outputs) == 3 and len(pooled) == 3
    assert all(torch.equal(a, b) for a, b in zip(pooled[0], proposals))
    left_image = False
    for k, out in enumerate(outputs):
        assert out.logits.shape == (5, 6)
        assert [len(b) for b in out.boxes] == [3, 2] and all(torch.equal(a, b) for a, b in zip(out.proposals,
                                                                                          pooled[k]))
        stage = heads.stages[k]
        feats = torch.cat(pooled[k]).repeat(1, 4).reshape(-1, 4, 2, 2) / 100
        expected = Box2BoxCoder(WEIGHTS[k]).decode(torch.cat(pooled[k]), stage(feats)[1], None)
        torch.testing.assert_close(torch.cat(out.boxes), expected)  # stage k decodes with its own weights
        torch.testing.assert_close(out.logits, stage(feats)[0])
        if k:
            for prev, now, (h, w) in zip(outputs[k - 1].boxes, pooled[k], sizes):
                clipped = torch.stack([prev[:, 0].clamp(0, w), prev[:, 1].clamp(0, h),
                                       prev[:, 2].clamp(0, w), prev[:, 3].clamp(0, h)], dim=1)
                assert torch.equal(now, clipped)
                left_image |= not torch.equal(prev, clipped)
    assert left_image  # some box was outside its image, and the returned boxes are the unclipped ones
    wrong_weights = Box2BoxCoder(WEIGHTS[0]).decode(torch.cat(pooled[2]), heads.stages[2](
        torch.cat(pooled[2]).repeat(1, 4).reshape(-1, 4, 2, 2) / 100)[1], None)
    assert not torch.allclose(torch.cat(outputs[2].boxes), wrong_weights)


def test_cascade_parameter_names():
    heads = CascadeBoxHeads([Box2BoxCoder(w) for w in WEIGHTS], num_classes=1203)
    shapes = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
    for k in range(3):  # roi_heads.box_head.{k}.fc{1,2} and roi_heads.box_predictor.{k}.{cls_score,bbox_pred}
        assert shapes[f"stages.{k}.fcs.0.weight"] == (1024, 12544)
        assert shapes[f"stages.{k}.fcs.1.weight"] == (1024, 1024)
        assert shapes[f"stages.{k}.cls_score.weight"] == (1204, 1024)
        assert shapes[f"stages.{k}.bbox_pred.weight"] == (4, 1024)
    assert len(shapes) == 3 * 8
