"""CenterNet proposal head: parameter layout, forward, and proposals on hand-made heatmaps with known boxes."""
from __future__ import annotations

import math

import pytest
import torch

from vfe_hub.layers.centernet import CenterNetHead, centernet_proposals

STRIDES = (8, 16)
SIZES = ((8, 10), (4, 5))
QUIET = -20.0  # sigmoid(-20) ~ 2e-9, below the 1e-4 candidate threshold


def blank(batch: int = 1):
    """Heatmap logits far below the threshold and zero distances, on two levels of strides 8 and 16."""
    heat = [torch.full((batch, 1, h, w), QUIET) for h, w in SIZES]
    regs = [torch.zeros(batch, 4, h, w) for h, w in SIZES]
    return heat, regs


def peak(heat, regs, level, y, x, logit, ltrb=(0.0, 0.0, 0.0, 0.0), image=0):
    heat[level][image, 0, y, x] = logit
    regs[level][image, :, y, x] = torch.tensor(ltrb)


def sqrt_sigmoid(logit: float) -> float:
    return math.sqrt(1 / (1 + math.exp(-logit)))


def test_head_parameters_map_onto_the_original_tower():
    head = CenterNetHead(256, num_levels=5)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    expected = {f"scales.{level}.scale": (1,) for level in range(5)}
    for i in (0, 3, 6):
        expected |= {f"tower.{i}.weight": (256, 256, 3, 3), f"tower.{i}.bias": (256,)}
    for i in (1, 4, 7, 10):
        expected |= {f"tower.{i}.weight": (256,), f"tower.{i}.bias": (256,)}
    expected |= {"tower.9.offset.weight": (27, 256, 3, 3), "tower.9.offset.bias": (27,),
                 "tower.9.weight": (256, 256, 3, 3), "tower.9.bias": (256,),
                 "agn_hm.weight": (1, 256, 3, 3), "agn_hm.bias": (1,),
                 "bbox_pred.weight": (4, 256, 3, 3), "bbox_pred.bias": (4,)}
    assert shapes == expected
    assert [type(m).__name__ for m in head.tower] == ["Conv2d", "GroupNorm", "ReLU"] * 3 + [
        "DeformConv", "GroupNorm", "ReLU"]
    assert head.tower[1].num_groups == 32 and head.tower[9].modulated


def test_head_scales_each_level_and_clamps_distances_at_zero():
    torch.manual_seed(0)
    head = CenterNetHead(32, num_levels=2, num_convs=2).eval()
    with torch.no_grad():
        head.bbox_pred.bias.copy_(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
        head.scales[1].scale.fill_(2.5)
    feat = torch.randn(2, 32, 6, 7)
    with torch.no_grad():
        heat, regs = head([feat, feat])
        raw = head.bbox_pred(head.tower(feat))
    assert [tuple(h.shape) for h in heat] == [(2, 1, 6, 7)] * 2 and [tuple(r.shape) for r in regs] == [(2, 4, 6, 7)] * 2
    torch.testing.assert_close(regs[0], raw.clamp(min=0))
    torch.testing.assert_close(regs[1], (2.5 * raw).clamp(min=0))
    assert (regs[0][:, 0] == 0).float().mean() > 0.5  # the -1 bias channel is mostly clamped
    torch.testing.assert_close(heat[0], heat[1])


def test_a_peak_gives_its_box_and_the_square_root_of_its_probability():
    heat, regs = blank()
    peak(heat, regs, level=1, y=2, x=3, logit=2.0, ltrb=(1.0, 0.5, 2.0, 1.5))
    [(boxes, scores)] = centernet_proposals(heat, regs, STRIDES)
    # centre (3 * 16 + 8, 2 * 16 + 8) = (56, 40); distances in strides of 16
    torch.testing.assert_close(boxes, torch.tensor([[40.0, 32.0, 88.0, 64.0]]))
    torch.testing.assert_close(scores, torch.tensor([sqrt_sigmoid(2.0)]))


def test_zero_distances_give_boxes_of_a_hundredth_of_a_pixel():
    heat, regs = blank()
    peak(heat, regs, level=0, y=0, x=0, logit=0.0)
    [(boxes, _)] = centernet_proposals(heat, regs, STRIDES)
    torch.testing.assert_close(boxes, torch.tensor([[4.0, 4.0, 4.01, 4.01]]))


def test_candidates_must_lie_strictly_above_the_threshold():
    heat, regs = blank()
    peak(heat, regs, level=0, y=1, x=1, logit=0.0)  # probability exactly 0.5
    assert len(centernet_proposals(heat, regs, STRIDES, score_thr=0.5)[0][1]) == 0
    assert len(centernet_proposals(heat, regs, STRIDES, score_thr=0.4999)[0][1]) == 1


def test_each_level_keeps_its_own_top_candidates_before_nms():
    heat, regs = blank()
    for k in range(6):  # level 0: six far-apart candidates, logits 0 .. 5
        peak(heat, regs, level=0, y=k, x=k, logit=float(k))
    for k in range(3):  # level 1: three, logits -1, -2, -3 (all below level 0's)
        peak(heat, regs, level=1, y=k, x=4 - k, logit=-1.0 - k)
    [(boxes, scores)] = centernet_proposals(heat, regs, STRIDES, pre_nms=4)
    expected = [sqrt_sigmoid(v) for v in (5, 4, 3, 2, -1, -2, -3)]
    torch.testing.assert_close(scores, torch.tensor(expected))
    # level 0's survivors are cells 5..2 (centres 8k + 4), then level 1's in score order
    torch.testing.assert_close(boxes[:4, 0], torch.tensor([44.0, 36.0, 28.0, 20.0]))
    torch.testing.assert_close(boxes[4:, 0], torch.tensor([72.0, 56.0, 40.0]))


def test_nms_suppresses_above_iou_0_7_across_levels():
    heat, regs = blank()
    # level 0, row 4: boxes 80 x 80 centred at x = 12, 20, 36 (8 and 24 pixels apart) -> IoU 72/88 and 56/104
    for x, logit in ((1, 3.0), (2, 2.0), (4, 1.0)):
        peak(heat, regs, level=0, y=4, x=x, logit=logit, ltrb=(5.0, 5.0, 5.0, 5.0))
    # level 1, centre (8, 40): the box of level 0's best shifted by (2, 2) px (IoU 0.91), lower score -> suppressed
    peak(heat, regs, level=1, y=2, x=0, logit=2.5, ltrb=(2.125, 2.625, 2.875, 2.375))
    [(boxes, scores)] = centernet_proposals(heat, regs, STRIDES)
    torch.testing.assert_close(scores, torch.tensor([sqrt_sigmoid(3.0), sqrt_sigmoid(1.0)]))
    torch.testing.assert_close(boxes, torch.tensor([[-28.0, -4.0, 52.0, 76.0], [-4.0, -4.0, 76.0, 76.0]]))
    assert (boxes[:, :2] < 0).any(), "proposals are not clipped to the image"


def test_post_nms_keeps_every_score_tied_with_the_last_kept_one():
    heat, regs = blank()
    for k, logit in enumerate((3.0, 2.0, 1.0, 1.0, 0.0)):
        peak(heat, regs, level=0, y=k, x=2 * k, logit=logit)
    [(_, scores)] = centernet_proposals(heat, regs, STRIDES, post_nms=3)
    torch.testing.assert_close(scores, torch.tensor([sqrt_sigmoid(v) for v in (3.0, 2.0, 1.0, 1.0)]))
    [(_, scores)] = centernet_proposals(heat, regs, STRIDES, post_nms=2)
    assert len(scores) == 2


def test_images_are_independent_and_may_have_no_proposals():
    heat, regs = blank(batch=2)
    peak(heat, regs, level=1, y=1, x=1, logit=4.0, image=1)
    (boxes0, scores0), (boxes1, scores1) = centernet_proposals(heat, regs, STRIDES)
    assert boxes0.shape == (0, 4) and scores0.shape == (0,) and boxes0.dtype == torch.float32
    assert boxes1.shape == (1, 4) and scores1.item() == pytest.approx(sqrt_sigmoid(4.0))
