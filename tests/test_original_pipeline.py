"""pipeline="original": the original's size rule, resize library (PIL, cv2) and normalisation, bit for bit; the
switch in load, the engine and the CLI; box clipping and LST's mask paste as each original does them."""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import vfe_hub
from media import PHOTOS, photo
from small_models import DETPRO_SMALL, detpro_model
from vfe_hub import cli, engine
from vfe_hub.errors import MissingDependencyError, VfeHubError
from vfe_hub.io import Frame
from vfe_hub.layers.mask_head import paste_masks_padded
from vfe_hub.registry import MODELS, get_spec
from vfe_hub.structures import FrameInfo

cv2 = pytest.importorskip("cv2")  # the test extra installs OpenCV (lvis pulls opencv-python)

#: (h, w) that hit each size rule at 800/1333: upscaling, maskrcnn-benchmark's truncation (640 x 480 -> 1066 x 800
#: there, 1067 x 800 with mmcv's rounding), the max-size cap, detectron2's float rounding of a .5 (3 x 62: 64 x 1333
#: there, 65 x 1333 with mmcv's rule), no resize at all
SIZES = [(100, 140), (480, 640), (200, 800), (3, 62), (800, 1000), (1333, 600)]


def _mmcv_size(h: int, w: int, long: int, short: int) -> tuple[int, int]:
    """mmcv's ``rescale_size`` + ``_scale_size``."""
    s = min(long / max(h, w), short / min(h, w))
    return int(h * float(s) + 0.5), int(w * float(s) + 0.5)


def _maskrcnn_benchmark_size(h: int, w: int, size: int, max_size: int) -> tuple[int, int]:
    """maskrcnn-benchmark's ``Resize.get_size``."""
    lo, hi = float(min(w, h)), float(max(w, h))
    if hi / lo * size > max_size:
        size = int(round(max_size * lo / hi))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    return (int(size * h / w), size) if w < h else (size, int(size * w / h))


def _detectron2_size(h: int, w: int, size: int, max_size: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge.get_output_shape``."""
    scale = size * 1.0 / min(h, w)
    newh, neww = (size, scale * w) if h < w else (scale * h, size)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


RULES = {"mmcv": lambda h, w, r: _mmcv_size(h, w, r.max_size, r.min_size),
         "maskrcnn_benchmark": lambda h, w, r: _maskrcnn_benchmark_size(h, w, r.min_size, r.max_size),
         "detectron2": lambda h, w, r: _detectron2_size(h, w, r.min_size, r.max_size)}
#: one registered model per distinct input pipeline
PIPELINES = {spec.preprocess: name for name, spec in reversed(MODELS.items())}


@pytest.mark.parametrize("name", sorted(PIPELINES.values()))
def test_sizes_follow_the_originals_rule(name):
    rule = get_spec(name).preprocess
    sizes = [engine.resized_size(h, w, rule) for h, w in SIZES]
    assert sizes == [RULES[rule.style](h, w, rule) for h, w in SIZES]
    if rule.style == "detectron2":
        assert sizes[3] == (64, 1333) != _mmcv_size(3, 62, 1333, 800)
    if rule.style == "maskrcnn_benchmark":
        assert sizes[1] == (800, 1066)


def _original_input(image: np.ndarray, size: tuple[int, int], rule) -> torch.Tensor:
    """The original's normalised input ``(3, h, w)``, written out with its own library."""
    h, w = size
    if (h, w) == image.shape[:2]:
        resized = image
    elif rule.library == "pil":
        resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    else:
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    x = resized.astype(np.float32)
    if rule.style == "maskrcnn_benchmark":
        x = (x / np.float32(255))[:, :, ::-1] * np.float32(255)  # to_tensor, then BGR x 255
    mean = np.array(rule.mean, dtype=np.float32)
    if rule.std_reciprocal:  # mmcv >= 1.0's imnormalize: cv2.subtract, cv2.multiply by 1 / std
        x = x.copy()
        cv2.subtract(x, np.float64(np.array(rule.mean).reshape(1, -1)), x)
        cv2.multiply(x, 1 / np.float64(np.array(rule.std).reshape(1, -1)), x)
    else:
        x = (x - mean) / np.array(rule.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)


@pytest.mark.parametrize("name", sorted(PIPELINES.values()))
@pytest.mark.parametrize("size", [(100, 140), (480, 640), (200, 800), (800, 1000)])
def test_original_pipeline_input_is_the_originals_bit_for_bit(name, size):
    rule = get_spec(name).preprocess
    image = photo(PHOTOS[len(name) % len(PHOTOS)], size)
    frame = Frame(image, "photo", 0, "<stream>", None)
    got = engine.preprocess([frame], rule, torch.device("cpu"), original=True)
    (h, w), = got.image_sizes
    assert torch.equal(got.images[0, :, :h, :w], _original_input(image, (h, w), rule))
    assert not got.images[0, :, h:].any() and not got.images[0, :, :, w:].any()
    fast = engine.preprocess([frame], rule, torch.device("cpu"))
    assert (fast.images - got.images).abs().max() * max(rule.std) < 1.5  # the default: within about a grey level


def test_load_checks_the_pipeline_and_the_opencv_extra(monkeypatch):
    with pytest.raises(VfeHubError, match="pipeline='slow' is not a pipeline"):
        vfe_hub.load("detpro_r50_fpn_lvis1", pipeline="slow")
    monkeypatch.setitem(sys.modules, "cv2", None)  # OpenCV not installed
    with pytest.raises(MissingDependencyError, match=r"vfe_hub\[original\]"):
        vfe_hub.load("detpro_r50_fpn_lvis1", pipeline="original")
    with pytest.raises(MissingDependencyError, match="opencv-python-headless"):
        engine.original_resize(photo("coffee", (60, 80)), (30, 40), "cv2")


def test_cli_passes_the_pipeline_to_load():
    args = cli.parser().parse_args(["predict", "detpro_r50_fpn_lvis1", "a.jpg", "--pipeline", "original"])
    assert args.pipeline == "original"
    assert cli.parser().parse_args(["evaluate", "detpro_r50_fpn_lvis1", "lvis_v1_val"]).pipeline == "fast"
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["predict", "detpro_r50_fpn_lvis1", "a.jpg", "--pipeline", "exact"])


@pytest.mark.slow
def test_original_pipeline_runs_the_originals_resize_and_nms():
    """A small random DetPro at the real pipeline's rules (cv2 resize, mmcv's batched_nms) in both pipelines: the
    original's input is cv2's, and its detections are those of mmcv's NMS arithmetic on that input."""
    model = detpro_model(seed=3)
    rule = dataclasses.replace(get_spec("detpro_r50_fpn_lvis1").preprocess, max_size=DETPRO_SMALL.max_size,
                               min_size=DETPRO_SMALL.min_size)
    model.spec = dataclasses.replace(model.spec, preprocess=rule)
    image = photo("chelsea", (150, 210))
    fast = model.predict(image)[0]
    model.pipeline = "original"
    original = model.predict(image)[0]
    batch = engine.preprocess([Frame(image, "chelsea", 0, "<stream>", None)], rule, torch.device("cpu"),
                              original=True)
    from vfe_hub.layers import nms

    with torch.inference_mode(), nms.arithmetic("mmcv"):
        expected = model(batch)[0]
    assert len(original) > 0 and torch.equal(original.boxes, expected.boxes)
    assert torch.equal(original.scores, expected.scores) and torch.equal(original.labels, expected.labels)
    assert len(fast) == len(original)
    assert (fast.provenance["pipeline"], original.provenance["pipeline"]) == ("fast", "original")


# ------------------------------------------------------------------------------------------------ boxes and masks


def _paste_mask_in_image(mask: torch.Tensor, box: torch.Tensor, im_h: int, im_w: int) -> torch.Tensor:
    """maskrcnn-benchmark's ``paste_mask_in_image`` (threshold 0.5, padding 1), written out."""
    m = mask.shape[-1]
    padded = torch.zeros(m + 2, m + 2)
    padded[1:-1, 1:-1] = mask
    scale = (m + 2) / m
    w_half, h_half = (box[2] - box[0]) * 0.5 * scale, (box[3] - box[1]) * 0.5 * scale
    x_c, y_c = (box[2] + box[0]) * 0.5, (box[3] + box[1]) * 0.5
    b = torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half]).to(torch.int32)
    w, h = max(int(b[2] - b[0] + 1), 1), max(int(b[3] - b[1] + 1), 1)
    resized = torch.nn.functional.interpolate(padded[None, None], size=(h, w), mode="bilinear",
                                              align_corners=False)[0, 0] > 0.5
    out = torch.zeros(im_h, im_w, dtype=torch.bool)
    x0, x1, y0, y1 = max(int(b[0]), 0), min(int(b[2]) + 1, im_w), max(int(b[1]), 0), min(int(b[3]) + 1, im_h)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = resized[y0 - int(b[1]):y1 - int(b[1]), x0 - int(b[0]):x1 - int(b[0])]
    return out


def test_masker_pastes_nothing_for_a_box_inverted_by_truncation():
    """LST: box (101.1, 50, 100.9, 80) is narrower than a pixel; truncated it is inverted, and maskrcnn-benchmark's
    paste slice is empty (0 pixels; vfe_hub pasted 32 before). Boxes around it paste as the original."""
    probs = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.4
    boxes = torch.tensor([[101.1, 50.0, 100.9, 80.0], [101.0, 50.0, 101.2, 80.0], [10.0, 20.0, 10.0, 20.0],
                          [5.5, 7.2, 60.3, 40.9], [150.2, 90.0, 150.1, 90.4]])
    got = paste_masks_padded(probs, boxes, (120, 160))
    expected = torch.stack([_paste_mask_in_image(p, b, 120, 160) for p, b in zip(probs, boxes)])
    assert got[0].sum() == 0 and got.sum() > 0
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name, clipped", [("lst_r50_fpn_lvis05", False), ("bags_gs_htc_x101_dcn_lvis05", False),
                                           ("detpro_r50_fpn_lvis1", True), ("gtr_dr2101_tao", True),
                                           ("mamba_r101_dc5_vid", True)])
def test_boxes_are_clipped_to_the_input_as_each_original_exports_them(name, clipped):
    """The pixel-inclusive originals (maskrcnn-benchmark, mmdetection v1) clip x2 to the last resized pixel and
    export x2 + 1: on a 480 x 640 frame resized to 800 x 1066, that edge is 639 * 640 / 1066 + 1 > 640, and it
    stays there; the others clip to the input image."""
    spec = get_spec(name)
    detector = vfe_hub.Detector(spec)
    detector.weight = torch.nn.Parameter(torch.zeros(1))  # a device to report
    frame = FrameInfo("f", 0, None, "<stream>", (480, 640), 1)
    edge = (1066 - 1) * 640 / 1066 + 1
    boxes = torch.tensor([[600.0, 400.0, edge, 480.4]])
    det = detector.make_detections(frame, boxes, torch.ones(1), torch.zeros(1, dtype=torch.long))
    assert spec.preprocess.clip_to_input == clipped
    expected = [600.0, 400.0, 640.0, 480.0] if clipped else [600.0, 400.0, edge, 480.4]
    torch.testing.assert_close(det.boxes[0], torch.tensor(expected), rtol=0, atol=1e-4)
