"""LST (Mask R-CNN R50-FPN on maskrcnn-benchmark conventions): conversion of every phase, the class order, the
weights status, and each maskrcnn-benchmark convention of the shared layers against a reference written from the
original's definition."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from torchvision.models.detection.roi_heads import paste_masks_in_image

import vfe_hub
from benchmark_layouts import CATEGORIES, write_lvis
from media import photo
from original_layouts import (MASKRCNN_BENCHMARK_CELL_ANCHORS, lst_layout, lst_state, random_state,
                              write_maskrcnn_benchmark_checkpoint)
from small_models import LST, lst_model
from vfe_hub import cli, engine
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.errors import ConversionError, WeightsNotFoundError
from vfe_hub.io import Frame
from vfe_hub.layers.anchors import detectron_cell_anchors
from vfe_hub.layers.box_coder import Box2BoxCoder
from vfe_hub.layers.box_head import CosineClassifier
from vfe_hub.layers.mask_head import paste_masks_padded
from vfe_hub.layers.resnet import ResNet
from vfe_hub.models.lst import read_sorted_ids
from vfe_hub.registry import get_spec, lvis_v05_categories
from vfe_hub.weights import LoadedWeights, convert_checkpoint, empty_model

LVIS_V05_IDS = [c["id"] for c in lvis_v05_categories()]


def sorted_ids(seed: int = 0) -> list[int]:
    """A frequency order of the LVIS v0.5 ids (a seeded permutation standing in for lvis_sorted_id_all.json)."""
    order = torch.randperm(len(LVIS_V05_IDS), generator=torch.Generator().manual_seed(seed)).tolist()
    return [LVIS_V05_IDS[i] for i in order]


def test_lvis_v05_categories():
    cats = lvis_v05_categories()
    assert len(cats) == 1230 and [c["id"] for c in cats] == list(range(1, 1231))
    assert cats[44]["name"] == "banana" and {c["frequency"] for c in cats} == {"r", "c", "f"}
    assert get_spec(LST).classes == tuple(c["name"] for c in cats)


def test_cell_anchors_are_maskrcnn_benchmarks():
    for level, (stride, size) in enumerate(zip((4, 8, 16, 32, 64), (32, 64, 128, 256, 512))):
        expected = torch.tensor(MASKRCNN_BENCHMARK_CELL_ANCHORS[level], dtype=torch.float32)
        assert torch.equal(detectron_cell_anchors(stride, size, (0.5, 1.0, 2.0)), expected)


@pytest.mark.slow
def test_final_phase_converts_strictly():
    """The 1231-class checkpoint of the last phase: every key mapped, shapes checked, tensors kept."""
    original = lst_state(1231)
    model = empty_model(get_spec(LST))
    state, dropped = convert_state_dict(original, table_for("maskrcnn_benchmark"),
                                        {k: v.shape for k, v in model.state_dict().items()})
    assert dropped == [] and len(state) == len(original) == len(model.state_dict())
    assert torch.equal(state["mlp_mask.weight"], original["roi_heads.mask.predictor.MLP_mask.weight"])
    assert torch.equal(state["classifier.scale"], torch.tensor([10.0]))
    assert torch.equal(state["cell_anchors.4"], original["rpn.anchor_generator.cell_anchors.4"])
    assert state["bbox_pred.weight"].shape == (4 * 1231, 1024)


def test_conversion_names_what_does_not_fit():
    """A maskrcnn-benchmark Mask R-CNN without LST's transfer (no MLP_mask, a mask_fcn_logits layer) is refused,
    naming the keys; so is a wrong class order."""
    layout = {k: v for k, v in lst_layout(11).items() if "MLP_mask" not in k and "bbox2mask" not in k}
    layout["roi_heads.mask.predictor.mask_fcn_logits.weight"] = (11, 256, 1, 1)
    model = empty_model(get_spec(LST), num_classes=11)
    with pytest.raises(ConversionError, match=r"mask_fcn_logits") as e:
        convert_state_dict(random_state(layout), table_for("maskrcnn_benchmark"),
                           {k: v.shape for k, v in model.state_dict().items()})
    assert "MLP_mask" not in str(e.value)


def test_sorted_ids_are_checked(tmp_path):
    good = tmp_path / "lvis_sorted_id_all.json"
    good.write_text(json.dumps(sorted_ids()))
    assert read_sorted_ids(good) == sorted_ids()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sorted_ids()[:-1] + [sorted_ids()[0]]))
    with pytest.raises(ConversionError, match="1230 LVIS v0.5 category ids"):
        read_sorted_ids(bad)
    with pytest.raises(ConversionError, match="--sorted-ids lvis_sorted_id_all.json"):
        convert_checkpoint(get_spec(LST), tmp_path / "model_final.pth")  # the class order is part of the model


@pytest.mark.slow
def test_base_phase_converts_with_its_class_order_and_fp16_mask(tmp_path):
    """``vfe-hub convert`` of a 271-class base-phase checkpoint: the number of classes comes from the checkpoint,
    the class order from --sorted-ids, optimizer/scheduler/iteration are reported dropped, MLP_mask is stored in
    float16 on request; the folder loads by itself."""
    original = lst_state(271, seed=1)
    checkpoint = write_maskrcnn_benchmark_checkpoint(tmp_path / "model_final.pth", original)
    order = tmp_path / "lvis_sorted_id_all.json"
    order.write_text(json.dumps(sorted_ids()))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["convert", LST, str(checkpoint), str(tmp_path / "out"), "--sorted-ids", str(order),
                         "--fp16-mask"]) == 0
    assert "optimizer (checkpoint entry)" in printed.getvalue() and "scheduler" in printed.getvalue()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["config"]["num_classes"] == 271 and config["category_ids"] == sorted_ids()[:270]
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        assert f.get_slice("mlp_mask.weight").get_dtype() == "F16"
    model = vfe_hub.load(weights=tmp_path / "out", device="cpu")
    assert model.classifier.weight.shape == (271, 1024) and model.category_ids == sorted_ids()[:270]
    names = {c["id"]: c["name"] for c in lvis_v05_categories()}
    assert model.class_names == tuple(names[i] for i in sorted_ids()[:270])
    assert torch.equal(model.backbone.layer3[5].conv2.weight,
                       original["backbone.body.layer3.5.conv2.weight"])
    mlp = original["roi_heads.mask.predictor.MLP_mask.weight"]
    assert torch.equal(model.mlp_mask.weight, mlp.half().float())
    # the mask filters were computed from the loaded classifier
    torch.testing.assert_close(model.mask_filters, model.bbox2mask(model.classifier.weight))


def test_fp16_mask_storage_changes_mask_logits_little():
    """The measured effect of storing MLP_mask in float16 (the model card quotes it): on mask features of the
    scale the head produces, the logits move by under 1e-3 (mean under 2e-4); under one mask cell in 1,000 crosses
    the 0.5 threshold."""
    model = vfe_hub.registry.get_spec(LST).build(num_classes=11)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.mlp_mask.weight.copy_(torch.randn(model.mlp_mask.weight.shape, generator=g) * (1 / 200704) ** 0.5)
        features = torch.relu(torch.randn(64, 256, 28, 28, generator=g))
        labels = torch.randint(0, 10, (64,), generator=g)
        full = model.mask_logits(features, labels)
        model.mlp_mask.weight.copy_(model.mlp_mask.weight.half().float())
        half = model.mask_logits(features, labels)
    diff = (full - half).abs()
    assert 0 < diff.max() < 1e-3 and diff.mean() < 2e-4 and full.abs().mean() > 0.5
    assert ((full > 0) != (half > 0)).float().mean() < 1e-3


def test_load_without_weights_says_none_were_released():
    with pytest.raises(WeightsNotFoundError) as e:
        vfe_hub.load(LST, device="cpu")
    message = str(e.value)
    assert "No trained LST weights were ever released" in message
    assert "https://github.com/JoyHuYY1412/LST_LVIS" in message
    assert "--sorted-ids" in message and "weights=" in message


def test_cosine_classifier_against_float64():
    g = torch.Generator().manual_seed(0)
    head = CosineClassifier(1024, 31)
    with torch.no_grad():
        head.weight.copy_(torch.randn(31, 1024, generator=g) * 0.05)
        head.scale.fill_(12.5)
    x = torch.randn(40, 1024, generator=g)
    w64, x64 = head.weight.detach().double(), x.double()
    expected = 12.5 * (x64 / x64.norm(dim=1, keepdim=True)) @ (w64 / w64.norm(dim=1, keepdim=True)).T
    got = head(x).detach()
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)
    assert got.abs().max() <= 12.5 + 1e-4


def test_weight_transfer_and_mlp_mask_against_float64():
    """Mask logits of class ``k`` = conv1x1 with bbox2mask(raw cls_score row k) + MLP_mask(flatten C,H,W)."""
    model = get_spec(LST).build(num_classes=11)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.bbox2mask.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        model.classifier.weight.copy_(torch.randn(11, 1024, generator=g))
        model.update_mask_filters()
        features = torch.relu(torch.randn(6, 256, 28, 28, generator=g))
        labels = torch.tensor([0, 3, 9, 9, 5, 1])
        got = model.mask_logits(features, labels)
    p = {k: v.double() for k, v in model.state_dict().items()}
    hidden = F.leaky_relu(p["classifier.weight"] @ p["bbox2mask.0.weight"].T + p["bbox2mask.0.bias"], 0.01)
    filters = F.leaky_relu(hidden @ p["bbox2mask.2.weight"].T + p["bbox2mask.2.bias"], 0.01)  # (11, 256)
    x = features.double()
    transfer = F.conv2d(x, filters[:, :, None, None])[torch.arange(6), labels + 1]
    shared = (x.reshape(6, -1) @ p["mlp_mask.weight"].T + p["mlp_mask.bias"]).view(6, 28, 28)
    expected = transfer + shared
    assert (filters < 0).any() and (filters > 0).any()  # both sides of the LeakyReLU are exercised
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-4 * expected.abs().max().item())


def test_frozen_bn_without_eps():
    net = ResNet(50, style="caffe", bn_eps=0.0)
    bn = net.bn1
    g = torch.Generator().manual_seed(0)
    for name in ("weight", "bias", "running_mean"):
        getattr(bn, name).copy_(torch.randn(64, generator=g))
    bn.running_var.copy_(torch.rand(64, generator=g) * 1e-4 + 1e-6)  # tiny variances: eps 1e-5 would matter
    x = torch.randn(2, 64, 5, 5, generator=g)
    scale = bn.weight.double() / bn.running_var.double().sqrt()
    shift = bn.bias.double() - bn.running_mean.double() * scale
    expected = x.double() * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    torch.testing.assert_close(bn(x).double(), expected, rtol=1e-5, atol=1e-4)
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)


def test_legacy_box_coder_is_maskrcnn_benchmarks():
    """maskrcnn-benchmark ``BoxCoder.decode`` (TO_REMOVE = 1) and ``clip_to_image`` written out."""
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(50, 2, generator=g) * 200
    boxes = torch.cat([boxes, boxes + torch.rand(50, 2, generator=g) * 100], dim=1)
    deltas = torch.randn(50, 8, generator=g) * 2
    deltas[0, 2] = 30.0  # beyond the clamp
    weights = (10.0, 10.0, 5.0, 5.0)
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    out = []
    for k in range(2):
        d = deltas[:, 4 * k:4 * k + 4]
        dx, dy = d[:, 0] / 10, d[:, 1] / 10
        dw, dh = (d[:, 2] / 5).clamp(max=math.log(1000 / 16)), (d[:, 3] / 5).clamp(max=math.log(1000 / 16))
        px, py, pw, ph = dx * w + cx, dy * h + cy, dw.exp() * w, dh.exp() * h
        out.append(torch.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw - 1, py + 0.5 * ph - 1], dim=1))
    expected = torch.cat(out, dim=1)
    coder = Box2BoxCoder(weights, legacy=True)
    torch.testing.assert_close(coder.decode(boxes, deltas, None), expected)
    clipped = coder.decode(boxes, deltas, (240, 320))
    assert clipped[:, 0::2].max() <= 319 and clipped[:, 1::2].max() <= 239
    torch.testing.assert_close(clipped[:, 0::2], expected[:, 0::2].clamp(0, 319))


def test_masker_paste_is_maskrcnn_benchmarks():
    """Masker(threshold 0.5, padding 1) equals torchvision's ``paste_masks_in_image`` (maskrcnn-benchmark's code,
    carried over) followed by ``> 0.5``, on boxes inside and across the image edges."""
    g = torch.Generator().manual_seed(0)
    n, size = 60, (120, 160)
    yy, xx = torch.meshgrid(torch.arange(28.0) + 0.5, torch.arange(28.0) + 0.5, indexing="ij")
    centres, radii = 6 + 16 * torch.rand(n, 2, 1, 1, generator=g), 4 + 8 * torch.rand(n, 1, 1, generator=g)
    probs = torch.sigmoid(3 * (radii - ((xx - centres[:, 0]) ** 2 + (yy - centres[:, 1]) ** 2).sqrt()))
    # boxes overlap the image (the original's slicing fails for boxes wholly outside it)
    corner = torch.rand(n, 2, generator=g) * torch.tensor([150.0, 100.0]) - 20
    boxes = torch.cat([corner, corner + 25 + torch.rand(n, 2, generator=g) * 80], dim=1)
    ours = paste_masks_padded(probs, boxes, size, 0.5)
    theirs = paste_masks_in_image(probs[:, None], boxes, size, padding=1)[:, 0] > 0.5
    assert theirs.any() and (~theirs).any()
    differing = (ours != theirs).sum().item()
    assert differing <= 2, differing  # float rounding of a sample position can tip a pixel at exactly 0.5


@pytest.mark.parametrize("height, width, expected", [
    (480, 640, (800, 1066)),   # mmcv rounds to 1067; maskrcnn-benchmark truncates 1066.67
    (427, 640, (800, 1199)),
    (300, 1000, (400, 1333)),  # the long side limits: short = round(1333 * 300 / 1000) = 400, long = int(1333.3)
    (640, 359, (1333, 748)),   # round(1333 * 359 / 640) = 748, int(748 * 640 / 359) = int(1333.5) = 1333
    (800, 600, (1066, 800)),
    (800, 1000, (800, 1000)),  # the short side already 800: unchanged
])
def test_resize_rule(height, width, expected):
    assert engine.resized_size(height, width, get_spec(LST).preprocess) == expected


@pytest.mark.parametrize("size", [(480, 640), (1200, 1600)])  # upscaled, downscaled (antialiased)
def test_preprocessing_against_pil(size):
    """PIL's bilinear resize of the RGB image, BGR x 255 minus the pixel mean: equal to PIL but for under one pixel
    in 1,000 off by one grey level (PIL's fixed-point rounding)."""
    image = photo("chelsea", size)
    rule = get_spec(LST).preprocess
    batch = engine.preprocess([Frame(image, "x", 0, "<stream>", None)], rule, torch.device("cpu"))
    h, w = batch.image_sizes[0]
    pil = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR)).astype(np.float32)
    expected = torch.from_numpy(pil[:, :, ::-1].copy()).permute(2, 0, 1) - torch.tensor(rule.mean).view(3, 1, 1)
    got = batch.images[0, :, :h, :w]
    diff = (got - expected).abs()
    assert diff.max() <= 1.0 and (diff > 0).float().mean() < 1e-3, (diff.max(), (diff > 0).float().mean())
    assert batch.images.shape[-2] % 32 == 0 and batch.images.shape[-1] % 32 == 0
    assert batch.images[0, :, h:, :].abs().sum() == 0 and batch.images[0, :, :, w:].abs().sum() == 0


@pytest.mark.slow
def test_labels_map_to_lvis_v05_ids():
    """Results carry LVIS v0.5 category ids: label k is the k-th id of the weights' frequency order."""
    model = lst_model(num_classes=1231)
    order = sorted_ids(3)
    model.load_weights(LoadedWeights(model.state_dict(), {"weights": "test", "revision": None, "sha256": None},
                                     {"category_ids": order}))
    [dets] = model.predict([photo("coffee", (120, 160))])
    assert len(dets) == 20 and dets.masks is not None
    names = {c["id"]: c["name"] for c in lvis_v05_categories()}
    records = dets.to_json(image_id=7, category_ids=model.category_ids)
    assert [r["category_id"] for r in records] == [order[k] for k in dets.labels.tolist()]
    assert [dets.class_names[k] for k in dets.labels.tolist()] == [names[order[k]] for k in dets.labels.tolist()]
    # boxes are pixel edges within the input
    assert (dets.boxes[:, 2:] >= dets.boxes[:, :2]).all() and dets.boxes[:, 2].max() <= 160


def test_weights_without_class_order_are_refused():
    model = get_spec(LST).build(num_classes=11)
    with pytest.raises(WeightsNotFoundError, match="class order"):
        model.load_weights(LoadedWeights(model.state_dict(), {"weights": "x.safetensors"}, {}))



@pytest.mark.slow
def test_evaluate_on_lvis_v05_val(tmp_path):
    """``evaluate("lvis_v05_val")``: LVIS v0.5 images named by COCO 2014 file names, found in the COCO 2017 folders;
    boxes and masks scored, labels mapped to the weights' LVIS v0.5 ids."""
    write_lvis(tmp_path)
    data = json.loads((tmp_path / "annotations" / "lvis_v1_val.json").read_text())
    for image in data["images"]:
        folder = image.pop("coco_url").split("/")[-2].removesuffix("2017")
        image["file_name"] = f"COCO_{folder}2014_{image['id']:012d}.jpg"
    (tmp_path / "annotations" / "lvis_v0.5_val.json").write_text(json.dumps(data))
    ids = [c["id"] for c in CATEGORIES]
    model = lst_model(num_classes=len(ids) + 1)
    model.load_weights(LoadedWeights(model.state_dict(), {"weights": "test"}, {"category_ids": ids}))
    out = tmp_path / "results.json"
    metrics = model.evaluate("lvis_v05_val", root=tmp_path, results_file=out)
    assert {"AP", "APr", "APc", "APf", "mask_AP", "mask_APr"} <= set(metrics)
    assert all(-1.0 <= v <= 1.0 for v in metrics.values())
    records = json.loads(out.read_text())
    assert {r["image_id"] for r in records} == {11, 4} and {r["category_id"] for r in records} <= set(ids)
    assert len(records) == 2 * 20 and all("segmentation" in r for r in records)
