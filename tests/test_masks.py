"""Instance masks: the FCN mask head, pasting RoI masks into the image (against a float64 reference of mmdetection's
``_do_paste_mask``), and masks on Detections (RLE round trip, results json, drawing, device moves)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from vfe_hub.layers.mask_head import FCNMaskHead, paste_masks
from vfe_hub.structures import Detections, FrameInfo, _colour

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
NEAR_THRESHOLD = 1e-5  # float32 and float64 samples differ by < 3e-6 here (sub-pixel boxes included)


# ---------------------------------------------------------------------------------------------------- head


def test_mask_head_parameter_names_and_shapes():
    head = FCNMaskHead()
    expected = {}
    for i in range(4):
        expected |= {f"convs.{i}.weight": (256, 256, 3, 3), f"convs.{i}.bias": (256,)}
    expected |= {"upsample.weight": (256, 256, 2, 2), "upsample.bias": (256,),
                 "conv_logits.weight": (1, 256, 1, 1), "conv_logits.bias": (1,)}
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == expected
    assert head(torch.randn(3, 256, 14, 14)).shape == (3, 1, 28, 28)
    assert head(torch.randn(0, 256, 14, 14)).shape == (0, 1, 28, 28)


def test_mask_head_forward_equals_explicit_layers():
    torch.manual_seed(0)
    head = FCNMaskHead(in_channels=8, conv_channels=16, num_convs=2, num_classes=3).double()
    for p in head.parameters():  # non-zero biases so a dropped bias or ReLU shows
        p.data.uniform_(-0.3, 0.3)
    x = torch.randn(5, 8, 7, 7, dtype=torch.float64)
    y = x
    for i in range(2):
        y = F.conv2d(y, head.convs[i].weight, head.convs[i].bias, padding=1).clamp(min=0)
    # A 2x2 stride-2 transposed conv writes w[c_in, c_out, a, b] * y[c_in, i, j] to output pixel (2i + a, 2j + b).
    up = torch.einsum("nchw,coab->nohawb", y, head.upsample.weight).reshape(5, 16, 14, 14)
    up = (up + head.upsample.bias[:, None, None]).clamp(min=0)
    expected = torch.einsum("nchw,oc->nohw", up, head.conv_logits.weight[:, :, 0, 0])
    expected = expected + head.conv_logits.bias[:, None, None]
    got = head(x)
    assert got.shape == (5, 3, 14, 14)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------- pasting


def reference_paste(prob: torch.Tensor, box: torch.Tensor, h: int, w: int, skip_empty: bool) -> torch.Tensor:
    """mmdetection's ``_do_paste_mask`` for one instance in float64, with the bilinear sampling of
    ``grid_sample(align_corners=False, padding_mode="zeros")`` written out. Returns the sampled ``(h, w)`` values."""
    x0, y0, x1, y1 = box.double().tolist()
    if skip_empty:
        x0_int, y0_int = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        x1_int, y1_int = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
    else:
        x0_int, y0_int, x1_int, y1_int = 0, 0, w, h
    img_x = (torch.arange(x0_int, x1_int, dtype=torch.float64) + 0.5 - x0) / torch.tensor(x1 - x0).double() * 2 - 1
    img_y = (torch.arange(y0_int, y1_int, dtype=torch.float64) + 0.5 - y0) / torch.tensor(y1 - y0).double() * 2 - 1
    img_x[img_x.isinf()] = 0
    img_y[img_y.isinf()] = 0
    m = prob.shape[0]
    padded = F.pad(prob.double(), (1, 1, 1, 1))  # zero padding: source index -1 and m are zeros
    out = torch.zeros(h, w, dtype=torch.float64)
    for r, gy in enumerate(img_y.tolist()):
        for c, gx in enumerate(img_x.tolist()):
            ix, iy = ((gx + 1) * m - 1) / 2, ((gy + 1) * m - 1) / 2  # source pixel coordinates, centres at integers
            if not (-1 < ix < m and -1 < iy < m):
                continue
            jx, jy = math.floor(ix), math.floor(iy)
            fx, fy = ix - jx, iy - jy
            patch = padded[jy + 1:jy + 3, jx + 1:jx + 3]
            out[y0_int + r, x0_int + c] = ((1 - fy) * ((1 - fx) * patch[0, 0] + fx * patch[0, 1])
                                           + fy * ((1 - fx) * patch[1, 0] + fx * patch[1, 1]))
    return out


def random_boxes(generator: torch.Generator, h: int, w: int) -> torch.Tensor:
    """Boxes inside the image, partly outside, larger than it, and narrower than a pixel (``xyxy``, ``(K, 4)``)."""
    def u(n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=torch.float64) * (hi - lo) + lo

    size = torch.tensor([w, h, w, h], dtype=torch.float64)
    rows = []
    for lo_start, hi_start, lo_ext, hi_ext in [(0.0, 0.6, 0.05, 0.4),    # inside
                                               (-0.5, 0.9, 0.3, 0.9),    # partly outside
                                               (-0.3, -0.1, 1.2, 1.5)]:  # around the whole image
        start, extent = u(4, lo_start, hi_start), u(4, lo_ext, hi_ext)
        x0y0 = torch.stack([start, u(4, lo_start, hi_start)], 1)
        rows.append(torch.cat([x0y0, x0y0 + torch.stack([extent, u(4, lo_ext, hi_ext)], 1)], 1) * size)
    sub = torch.stack([u(3, 0, w - 1), u(3, 0, h - 1)], 1)  # sub-pixel boxes in absolute pixels
    rows.append(torch.cat([sub, sub + torch.stack([u(3, 0.05, 0.9), u(3, 0.05, 0.9)], 1)], 1))
    return torch.cat(rows).float()


def random_probs(generator: torch.Generator, num: int) -> torch.Tensor:
    """``(num, 28, 28)`` probabilities: noise (many threshold crossings) and flat blobs in ``[0.5, 1)`` that reach
    three edges of the grid (so the zero padding beyond them decides the mask's border)."""
    noise = torch.rand(num, 28, 28, generator=generator)
    blob = (torch.rand(num, 1, 1, generator=generator) * 0.5 + 0.5).expand(num, 28, 28).clone()
    blob[:, :, 20:] = 0
    return torch.where(torch.arange(num)[:, None, None] % 2 == 0, noise, blob)


def assert_masks_match(got: torch.Tensor, values: torch.Tensor, threshold: float) -> None:
    """``got`` equals ``values >= threshold`` wherever ``values`` is not within float32 noise of the threshold."""
    decided = (values - threshold).abs() > NEAR_THRESHOLD
    assert decided.float().mean() > 0.999  # the comparison covers nearly every pixel
    assert torch.equal(got.cpu()[decided], (values >= threshold)[decided])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [(37, 53), (64, 48), (90, 20), (1, 9)])
def test_paste_masks_equals_mmdetection_reference(size, device):
    h, w = size
    generator = torch.Generator().manual_seed(h * 1000 + w)
    boxes = random_boxes(generator, h, w)
    probs = random_probs(generator, len(boxes))
    got = paste_masks(probs.to(device), boxes.to(device), (h, w))
    assert got.shape == (len(boxes), h, w) and got.dtype == torch.bool and got.device.type == device
    assert got.any(dim=(1, 2)).sum() >= len(boxes) // 2  # mostly non-empty masks: the test compares something
    for i in range(len(boxes)):
        windowed = reference_paste(probs[i], boxes[i], h, w, skip_empty=True)
        whole = reference_paste(probs[i], boxes[i], h, w, skip_empty=False)
        assert_masks_match(got[i], windowed, 0.5)
        assert_masks_match(got[i], whole, 0.5)  # mmdetection's GPU path gives the same masks at 0.5
        assert_masks_match(paste_masks(probs[i:i + 1].to(device), boxes[i:i + 1].to(device), (h, w), 0.3)[0],
                           windowed, 0.3)


@pytest.mark.parametrize("device", DEVICES)
def test_paste_masks_chunking_bounds_memory_and_does_not_change_the_result(device, monkeypatch):
    generator = torch.Generator().manual_seed(7)
    h, w = 41, 67
    boxes = random_boxes(generator, h, w).to(device)
    probs = random_probs(generator, len(boxes)).to(device)
    full = paste_masks(probs, boxes, (h, w))
    assert full.any()
    sampled_pixels = []
    grid_sample = F.grid_sample

    def recording_grid_sample(input: torch.Tensor, grid: torch.Tensor, **kwargs) -> torch.Tensor:
        sampled_pixels.append(grid.shape[:3].numel())
        return grid_sample(input, grid, **kwargs)

    monkeypatch.setattr(F, "grid_sample", recording_grid_sample)
    for max_pixels in (1, h * w, 3 * h * w + 5, 10 * h * w):  # chunks of 1, 1, 3 and 10 instances
        sampled_pixels.clear()
        assert torch.equal(paste_masks(probs, boxes, (h, w), max_pixels=max_pixels), full)
        assert sampled_pixels and max(sampled_pixels) <= max(max_pixels, h * w)


def test_paste_masks_exact_cases():
    ones = torch.ones(3, 28, 28)
    # Integer box, saturated mask: exactly the box's pixels (the half-mask-pixel halo stays within pixel centres).
    # Half-integer box: the edge pixel centres sample the grid's edge, 0.5 * 1 >= 0.5, so they are set, but not the
    # four corners (0.5 * 0.5).
    # Zero-width box at x = 30.3: the infinite grid coordinates become the centre line, within x in [29, 31].
    boxes = torch.tensor([[10.0, 5.0, 20.0, 15.0], [10.5, 5.5, 20.5, 15.5], [30.3, 2.0, 30.3, 8.0]])
    got = paste_masks(ones, boxes, (24, 40))
    expected = torch.zeros(3, 24, 40, dtype=torch.bool)
    expected[0, 5:15, 10:20] = True
    expected[1, 5:16, 10:21] = True
    expected[1, [5, 5, 15, 15], [10, 20, 10, 20]] = False
    expected[2, 2:8, 29:32] = True
    assert torch.equal(got, expected)
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (24, 40)).shape == (0, 24, 40)
    outside = paste_masks(ones[:1], torch.tensor([[50.0, 30.0, 60.0, 40.0]]), (24, 40))
    assert not outside.any()


# ---------------------------------------------------------------------------------------------------- Detections


def detections(masks: torch.Tensor, boxes: torch.Tensor | None = None, scores: list[float] | None = None,
               labels: list[int] | None = None) -> Detections:
    n, h, w = masks.shape
    boxes = torch.tensor([[0.0, 0.0, w, h]] * n) if boxes is None else boxes
    scores = torch.tensor(scores if scores is not None else [0.9] * n)
    labels = torch.tensor(labels if labels is not None else [0] * n)
    frame = FrameInfo("frame", 0, "<stream>", None, (h, w), image_id=1)
    return Detections(boxes, scores, labels, ("cat", "dog", "bird"), frame, masks=Detections.encode_masks(masks))


def mask_examples(h: int = 23, w: int = 31) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    masks = torch.zeros(6, h, w, dtype=torch.bool)
    masks[0] = torch.rand(h, w, generator=generator) > 0.5
    masks[2] = True  # full
    masks[3, 0, w - 1] = True  # one corner pixel: a transposed layout moves it
    masks[4, 3:9, 2:25] = True
    masks[5, h - 1] = True  # last row
    return masks  # masks[1] is empty


def test_masks_round_trip_through_rle_exactly():
    masks = mask_examples()
    det = detections(masks)
    assert len(det.masks) == 6 and all(m["size"] == [23, 31] and isinstance(m["counts"], bytes) for m in det.masks)
    assert mask_utils.area(det.masks).tolist() == masks.sum(dim=(1, 2)).tolist()
    back = det.mask_tensor()
    assert back.dtype == torch.bool and back.shape == (6, 23, 31)
    assert torch.equal(back, masks)
    none = detections(torch.zeros(0, 23, 31, dtype=torch.bool))
    assert none.masks == [] and none.mask_tensor().shape == (0, 23, 31)


def test_masks_must_match_detections_and_image():
    det = detections(mask_examples())
    with pytest.raises(ValueError, match="masks"):
        Detections(det.boxes[:5], det.scores[:5], det.labels[:5], det.class_names, det.frame, masks=det.masks)
    with pytest.raises(ValueError, match="masks"):
        Detections(det.boxes, det.scores, det.labels, det.class_names, FrameInfo("f", 0, "s", None, (31, 23)),
                   masks=det.masks)
    plain = Detections(det.boxes, det.scores, det.labels, det.class_names, det.frame)
    assert plain.masks is None
    with pytest.raises(ValueError, match="no masks"):
        plain.mask_tensor()


def test_to_json_has_segmentation_that_decodes_to_the_mask():
    masks = mask_examples()
    det = detections(masks)
    records = json.loads(json.dumps(det.to_json(image_id=4)))
    assert len(records) == 6
    for record, mask in zip(records, masks):
        segmentation = record["segmentation"]
        assert segmentation["size"] == [23, 31] and isinstance(segmentation["counts"], str)
        decoded = mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), mask.numpy())
        assert record["bbox"] == [0.0, 0.0, 31.0, 23.0] and record["image_id"] == 4
    plain = Detections(det.boxes, det.scores, det.labels, det.class_names, det.frame)
    assert all("segmentation" not in r for r in plain.to_json())


def test_pasted_masks_survive_detections():
    generator = torch.Generator().manual_seed(11)
    boxes = random_boxes(generator, 40, 60)
    pasted = paste_masks(random_probs(generator, len(boxes)), boxes, (40, 60))
    det = detections(pasted, boxes=boxes)
    assert torch.equal(det.mask_tensor(), pasted)
    for record, mask in zip(det.to_json(), pasted):
        assert np.array_equal(mask_utils.decode({**record["segmentation"]}).astype(bool), mask.numpy())


@pytest.mark.parametrize("device", DEVICES)
def test_cpu_keeps_masks(device):
    masks = mask_examples()
    det = detections(masks)
    det = Detections(det.boxes.to(device), det.scores.to(device), det.labels.to(device), det.class_names, det.frame,
                     masks=det.masks)
    assert det.mask_tensor().device.type == device
    moved = det.cpu()
    assert moved.masks == det.masks and moved.boxes.device.type == "cpu"
    assert moved.mask_tensor().device.type == "cpu" and torch.equal(moved.mask_tensor(), masks)


def test_plot_fills_masks_in_the_box_colour():
    h, w, grey = 60, 80, 100
    image = np.full((h, w, 3), grey, dtype=np.uint8)
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    masks[0, 20:40, 25:55] = True
    masks[1, 48:60, 0:15] = True  # across the outline of box 1
    masks[2, 2:8, 60:75] = True  # below score_thr: not drawn
    boxes = torch.tensor([[10.0, 10.0, 70.0, 50.0], [3.0, 50.0, 17.0, 59.0], [58.0, 1.0, 77.0, 9.0]])
    det = detections(masks, boxes=boxes, scores=[0.9, 0.8, 0.1], labels=[0, 1, 2])
    drawn = torch.from_numpy(np.asarray(det.plot(image, score_thr=0.3, line_width=1)).astype(np.float64))
    plain = Detections(det.boxes, det.scores, det.labels, det.class_names, det.frame)
    boxes_only = torch.from_numpy(np.asarray(plain.plot(image, score_thr=0.3, line_width=1)).astype(np.float64))
    free = (boxes_only == grey).all(dim=2)  # pixels that no outline or label text covers
    assert not torch.equal(drawn, boxes_only)
    for i in (0, 1):
        filled = masks[i] & free
        assert filled.sum() > masks[i].sum() // 2
        fill = 0.5 * torch.tensor(_colour(i), dtype=torch.float64) + 0.5 * grey
        assert (drawn[filled] - fill).abs().max() <= 1  # translucent fill in the box colour
    outside = free & ~masks[0] & ~masks[1]
    assert outside[masks[2]].all() and outside[42:48, 58:68].all()  # the low-score mask; inside box 0, off its mask
    assert (drawn[outside] == grey).all()
    outline = drawn[50:60, 3]  # the left edge of box 1, over its mask
    assert (outline == torch.tensor(_colour(1), dtype=torch.float64)).all()  # boxes are drawn over the masks
