"""BAGS GS-HTC: strict conversion of a synthetic release (mmcv checkpoint in the mmdetection v1 layout, BAGS's group
files or LVIS v0.5 instance counts), the group tables travelling with the weights, and the two protocols."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import random
import re

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import nms

import vfe_hub
from media import photo, write_image
from original_layouts import bags_htc_layout
from roi_reference import mmdet_v1_level, roi_align as roi_align_reference
from small_models import BAGS, DETPRO_SMALL, bags_model, bags_state
from vfe_hub import cli, hub, registry
from vfe_hub.engine import preprocess
from vfe_hub.io import Frame
from vfe_hub.layers.mask_head import paste_masks_inclusive
from vfe_hub.structures import Detections
from vfe_hub.errors import VfeHubError, WeightsNotFoundError
from vfe_hub.layers.group_softmax import GroupTableError, tables_from_groups
from vfe_hub.models.bags import PROTOCOLS, Protocol
from vfe_hub.weights import convert_checkpoint

COMMAND = (f"vfe-hub convert {BAGS} <checkpoint.pth> <out_dir> --groups <folder with label2binlabel.pt and "
           f"pred_slice_with0.pt, or lvis_v0.5_train.json>")
SIZES = (294, 453, 302, 181)
DOSSIER_SLICES = [[0, 2], [2, 295], [297, 454], [751, 303], [1054, 182]]


def lvis_v05_like_categories() -> list[dict]:
    """1230 categories with ids 1..1230 listed in a shuffled order, with made-up instance counts giving BAGS's
    group sizes 294 / 453 / 302 / 181."""
    rng = random.Random(0)
    counts = [rng.randint(1, 9) for _ in range(294)] + [rng.randint(10, 99) for _ in range(453)] + \
        [rng.randint(100, 999) for _ in range(302)] + [rng.randint(1000, 30000) for _ in range(181)]
    rng.shuffle(counts)
    ids = list(range(1, 1231))
    rng.shuffle(ids)
    return [{"id": i, "name": f"thing_{i:04d}", "instance_count": counts[i - 1]} for i in ids]


def bags_group_files(categories: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """BAGS's ``get_cate_gs`` written out: categories in file order, per-group counters from 1."""
    counters = [1, 1, 1, 1, 1]
    table = torch.zeros(5, 1231, dtype=torch.int64)
    table[0, 1:] = 1
    counters[0] += 1
    for cat in categories:
        n = cat["instance_count"]
        g = 1 if n < 10 else 2 if n < 100 else 3 if n < 1000 else 4
        table[g, cat["id"]] = counters[g]
        counters[g] += 1
    slices, start = [], 0
    for n in counters:
        slices.append([start, n])
        start += n
    return table, torch.tensor(slices)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bags_release")
    state = bags_state(seed=3)
    checkpoint = folder / "gs_htc.pth"
    torch.save({"meta": {"epoch": 12, "iter": 1000, "mmdet_version": "1.0rc0+90e04fd"}, "state_dict": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.005}]}}, checkpoint)
    categories = lvis_v05_like_categories()
    train = folder / "lvis_v0.5_train.json"
    train.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    table, slices = bags_group_files(categories)
    groups = folder / "gs_files"
    groups.mkdir()
    torch.save(table, groups / "label2binlabel.pt")
    torch.save(slices, groups / "pred_slice_with0.pt")
    return {"checkpoint": checkpoint, "train": train, "groups": groups, "state": state, "table": table,
            "slices": slices, "folder": folder}


def convert(release: dict, out, groups) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["convert", BAGS, str(release["checkpoint"]), str(out), "--groups", str(groups)]) == 0
    return printed.getvalue()


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "bags"
    return out, convert(release, out, release["groups"])


@pytest.mark.slow
def test_release_converts_strictly(release, converted):
    out, printed = converted
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "groups.safetensors",
                                                    "model.safetensors"]
    layout = bags_htc_layout()
    tracked = [k for k in layout if k.endswith("num_batches_tracked")]
    assert len(tracked) == 1 + 3 * (3 + 4 + 23 + 3) + 4  # bn1, three BNs per block, four downsample BNs
    assert f"*.num_batches_tracked ({len(tracked)})" in printed and "optimizer" in printed
    config, state = hub.read_model_dir(out)
    assert set(state) == set(registry.get_spec(BAGS).build().state_dict())
    assert len(state) == len(layout) - len(tracked)
    original = release["state"]
    pairs = {
        "backbone.layer2.0.conv2_offset.weight": "backbone.layer2.0.conv2.offset.weight",
        "backbone.layer4.2.conv2_offset.bias": "backbone.layer4.2.conv2.offset.bias",
        "backbone.layer3.22.conv2.weight": "backbone.layer3.22.conv2.weight",
        "backbone.layer1.0.downsample.1.running_var": "backbone.layer1.0.downsample.1.running_var",
        "neck.lateral_convs.3.conv.weight": "neck.lateral_convs.3.conv.weight",
        "rpn_head.rpn_reg.bias": "rpn.bbox_pred.bias",
        "semantic_head.lateral_convs.4.conv.weight": "semantic_head.lateral_convs.4.conv.weight",
        "semantic_head.conv_embedding.conv.bias": "semantic_head.conv_embedding.conv.bias",
        "semantic_head.conv_logits.weight": "semantic_head.conv_logits.weight",
        "bbox_head.1.shared_fcs.0.weight": "box_heads.stages.1.fcs.0.weight",
        "bbox_head.2.fc_cls.weight": "box_heads.stages.2.cls_score.weight",
        "bbox_head.0.fc_reg.bias": "box_heads.stages.0.bbox_pred.bias",
        "mask_head.2.convs.3.conv.weight": "mask_heads.2.convs.3.weight",
        "mask_head.1.upsample.weight": "mask_heads.1.upsample.weight",
        "mask_head.0.conv_res.conv.weight": "mask_heads.0.conv_res.conv.weight",
        "mask_head.2.conv_logits.bias": "mask_heads.2.conv_logits.bias",
    }
    for before, after in pairs.items():
        assert torch.equal(state[after], original[before]), before
    # every original tensor arrives unchanged: the same multiset of (shape, values)
    fingerprint = sorted((tuple(t.shape), float(t.double().sum()), float(t.double().abs().sum()))
                         for k, t in original.items() if not k.endswith("num_batches_tracked"))
    assert fingerprint == sorted((tuple(t.shape), float(t.double().sum()), float(t.double().abs().sum()))
                                 for t in state.values())
    groups = hub.read_safetensors(out / "groups.safetensors")
    assert torch.equal(groups["label2binlabel"], release["table"])
    assert groups["pred_slice"].tolist() == DOSSIER_SLICES
    assert config["classes"] == list(registry.get_spec(BAGS).classes) and config["source"]["format"] == "mmdet_v1"


def test_groups_from_instance_counts_equal_bags_files(release):
    model = registry.get_spec(BAGS).build()
    converted = convert_checkpoint(registry.get_spec(BAGS), release["checkpoint"], model, groups=release["train"])
    tables = converted.files["groups.safetensors"]
    assert torch.equal(tables["label2binlabel"], release["table"])
    assert tables["pred_slice"].tolist() == DOSSIER_SLICES
    assert converted.config["inputs"]["groups"]["file"] == "lvis_v0.5_train.json"


def test_groups_that_do_not_fit_the_classifier_are_rejected(release, tmp_path):
    table, slices = release["table"], release["slices"]
    # a fifth group split off the last one: 1237 logits for a classifier of 1236
    members = [(row > 0).nonzero().squeeze(1).tolist() for row in table[1:]]
    members = members[:3] + [members[3][:90], members[3][90:]]
    split, split_slices = tables_from_groups(members)
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(split, bad / "label2binlabel.pt")
    torch.save(split_slices, bad / "pred_slice_with0.pt")
    spec = registry.get_spec(BAGS)
    with pytest.raises(GroupTableError, match="cover 1237 logits but the classifier has 1236"):
        convert_checkpoint(spec, release["checkpoint"], spec.build(), groups=bad)
    torch.save(slices.float(), bad / "pred_slice_with0.pt")
    torch.save(table, bad / "label2binlabel.pt")
    with pytest.raises(VfeHubError, match="no integer tensor"):
        convert_checkpoint(spec, release["checkpoint"], spec.build(), groups=bad)
    with pytest.raises(VfeHubError, match=re.escape("--groups")):
        convert_checkpoint(spec, release["checkpoint"], spec.build())


def test_unreachable_weights_say_how_to_convert(fake_hub):
    spec = registry.get_spec(BAGS)
    assert spec.weights.revision is None and spec.weights.format == "vfe_hub" and len(spec.classes) == 1230
    assert spec.weights.from_drive  # unpublished: loads take the Drive release (tests/test_drive.py)
    with pytest.raises(WeightsNotFoundError) as info:
        vfe_hub.load(BAGS, revision="0" * 40)
    message = str(info.value)
    assert COMMAND in message and "1QkfpYYAHgEym8KVg8a7zclSHe5LGssjH" in message
    assert "1UsCscmh7F6KOya1K7R2vTT5KswsIFVXd" in message


def test_protocols_are_the_lvis_and_tao_configs():
    assert PROTOCOLS == {"lvis": Protocol(score_thr=1e-3, iou=0.5, max_per_img=300, masks=True),
                         "tao": Protocol(score_thr=1e-5, iou=0.95, max_per_img=500, masks=False)}
    assert set(registry.get_spec(BAGS).protocols) == set(PROTOCOLS)


@pytest.mark.slow
def test_loaded_weights_run_both_protocols(converted):
    """The converted folder loads with its group tables; ``tao`` keeps up to 500 boxes above 1e-5 without masks,
    ``lvis`` up to 300 above 1e-3 with masks."""
    model = vfe_hub.load(weights=converted[0], proposals=60)
    model.spec = dataclasses.replace(model.spec, preprocess=DETPRO_SMALL)
    assert model.pred_slice.tolist() == DOSSIER_SLICES
    image = torch.randint(0, 255, (96, 128, 3), dtype=torch.uint8).numpy()
    tao, = model.predict([image], protocol="tao")
    assert 300 < len(tao) <= 500 and tao.masks is None and bool((tao.scores > 1e-5).all())
    lvis, = model.predict([image])
    assert 0 < len(lvis) <= 300 and bool((lvis.scores > 1e-3).all()) and lvis.masks is not None
    with pytest.raises(VfeHubError, match="did you mean 'tao'"):
        model.predict([image], protocol="tau")


# ------------------------------------------------------------------------------------------------ HTC test flow


def _delta2bbox(rois: torch.Tensor, deltas: torch.Tensor, stds, size) -> torch.Tensor:
    """mmdetection v1's ``delta2bbox``, written out: ``+1`` widths, corners moved half a pixel in, clamped to the
    last pixel of ``size = (h, w)``."""
    d = deltas * torch.tensor(stds)
    pw, ph = rois[:, 2] - rois[:, 0] + 1, rois[:, 3] - rois[:, 1] + 1
    px, py = (rois[:, 0] + rois[:, 2]) * 0.5, (rois[:, 1] + rois[:, 3]) * 0.5
    limit = abs(math.log(16 / 1000))
    gw, gh = pw * d[:, 2].clamp(-limit, limit).exp(), ph * d[:, 3].clamp(-limit, limit).exp()
    gx, gy = px + pw * d[:, 0], py + ph * d[:, 1]
    h, w = size
    return torch.stack([(gx - gw * 0.5 + 0.5).clamp(0, w - 1), (gy - gh * 0.5 + 0.5).clamp(0, h - 1),
                        (gx + gw * 0.5 - 0.5).clamp(0, w - 1), (gy + gh * 0.5 - 0.5).clamp(0, h - 1)], dim=1)


def _roi_align_v1(feats, semantic, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """mmdetection v1's RoIAlign (its kernel written out in float64: end ``(x2 + 1) * s``, sizes ``max(end - start,
    0)``, sampling 2, level ``floor(log2(sqrt(area_+1) / 56))``) on P2-P5, plus the semantic embedding's 14x14
    RoIs, averaged down to ``size``."""
    out = []
    for box in boxes:
        level = mmdet_v1_level(box.tolist())
        roi = torch.cat([torch.zeros(1), box])[None]
        pooled = roi_align_reference(feats[level], roi, size, 1 / 2 ** (level + 2), 2, "mmdet_v1")
        extra = roi_align_reference(semantic, roi, 14, 1 / 8, 2, "mmdet_v1")
        out.append(pooled + (extra if size == 14 else F.adaptive_avg_pool2d(extra, size)))
    return torch.cat(out).float()


def _narrow(boxes: torch.Tensor) -> int:
    """How many pixel-inclusive boxes are narrower or lower than one feature pixel at their level (or than one
    pixel of the stride-8 semantic map): those mmdetection v1 pools at their true size."""
    count = 0
    for box in boxes.tolist():
        stride = 2 ** (mmdet_v1_level(box) + 2)
        count += min(box[2] - box[0] + 1, box[3] - box[1] + 1) < max(stride, 8)
    return count


@pytest.mark.slow
def test_htc_test_flow_equals_a_step_by_step_reference():
    """One image through the small random BAGS model against HTC's ``simple_test`` written out from the original:
    semantic fusion, the three interleaved stages with mmdetection v1's RoIAlign kernel, the mean of raw logits,
    the group-softmax merge, per-class NMS with +1 widths, and the mask information flow with per-stage sigmoids
    averaged, pasted; boxes reported by their pixel edges, not clipped to the input (as BAGS exports them). Some
    stage RoIs are narrower than a feature pixel (slivers clipped at the image edges), which mmdetection v1 pools
    at their true size."""
    image_name, size = "astronaut", (100, 140)
    model = bags_model(seed=1, proposals=30, max_per_img=15)
    rule = dataclasses.replace(registry.get_spec(BAGS).preprocess, max_size=DETPRO_SMALL.max_size,
                               min_size=DETPRO_SMALL.min_size)
    model.spec = dataclasses.replace(model.spec, preprocess=rule)
    image = photo(image_name, size)
    batch = preprocess([Frame(image, image_name, 0, "<stream>", None)], rule, torch.device("cpu"))
    narrow = 0
    with torch.inference_mode():
        got, = model(batch)
        feats = model.neck(model.backbone(batch.images))
        rois = model.proposals(model.rpn(feats), batch.image_sizes)[0][0]
        semantic = model.semantic_head(feats)
        resized, logits = batch.image_sizes[0], []
        for k, stds in enumerate(((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))):
            stage = model.box_heads.stages[k]
            narrow += _narrow(rois)
            x = _roi_align_v1(feats, semantic, rois, 7).flatten(1)
            x = torch.relu(stage.fcs[1](torch.relu(stage.fcs[0](x))))
            logits.append(stage.cls_score(x))
            boxes = _delta2bbox(rois, stage.bbox_pred(x), stds, resized)
            if k < 2:
                rois = boxes
        assert narrow > 0
        mean = sum(logits) / 3
        table, slices = model.label2binlabel, model.pred_slice
        probs = [mean[:, s:s + n].softmax(1) for s, n in slices.tolist()]
        scores = torch.zeros(len(mean), 1230)
        for g in range(1, 5):
            for label in (table[g] > 0).nonzero().squeeze(1).tolist():
                scores[:, label - 1] = probs[0][:, 1] * probs[g][:, table[g, label]]
        factor = min(320 / max(size), 192 / min(size))
        boxes = boxes / factor
        kept = []
        for c in range(1230):
            rows = (scores[:, c] > 1e-3).nonzero().squeeze(1)
            keep = nms(boxes[rows] + torch.tensor([0.0, 0.0, 1.0, 1.0]), scores[rows, c], 0.5)
            kept += [(float(scores[r, c]), int(r), c) for r in rows[keep].tolist()]
        kept = sorted(kept, key=lambda t: -t[0])[:15]
        rows, labels = torch.tensor([r for _, r, _ in kept]), torch.tensor([c for _, _, c in kept])
        assert len(got) == 15 and got.labels.tolist() == labels.tolist()
        torch.testing.assert_close(got.scores, scores[rows, labels], rtol=0, atol=1e-6)
        # reported by pixel edges (the inclusive x2, y2 plus one), as exported: not clipped to the input
        edges = boxes[rows] + torch.tensor([0.0, 0.0, 1.0, 1.0])
        torch.testing.assert_close(got.boxes, edges, rtol=0, atol=1e-3)

        x = _roi_align_v1(feats, semantic, boxes[rows] * factor, 14)
        res, mask_probs = None, []
        for head in model.mask_heads:
            y = x if res is None else x + torch.relu(head.conv_res(res))
            for conv in head.convs:
                y = torch.relu(conv(y))
            res = y
            mask_logits = head.conv_logits(torch.relu(head.upsample(y)))
            mask_probs.append(mask_logits[torch.arange(15), labels + 1].sigmoid())
        masks = paste_masks_inclusive(sum(mask_probs) / 3, boxes[rows], size)
    assert masks.any() and got.masks == Detections.encode_masks(masks)


@pytest.mark.slow
def test_tao_frame_list_writes_one_json_per_frame_and_restarts(tmp_path):
    model = bags_model(seed=0, proposals=20, max_per_img=None)
    root = tmp_path / "frames"
    names = ["val/YFCC100M/v_1/frame0001.jpg", "val/YFCC100M/v_1/frame0002.jpg"]
    for name, subject in zip(names, ("astronaut", "coffee")):
        write_image(root / name, photo(subject, (60, 80)))
    frame_list = tmp_path / "validation_img_list.txt"
    frame_list.write_text("\n".join(names) + "\n")
    out = tmp_path / "results"
    assert model.write_tao_detections(frame_list, root, out) == 2
    first = json.loads((out / f"{names[0]}.json").read_text())["instances"]
    assert set(first) == {"pred_boxes", "scores", "pred_classes"}
    assert 0 < len(first["scores"]) <= 500 and min(first["scores"]) > 1e-5
    assert all(0 <= c < 1230 for c in first["pred_classes"]) and len(first["pred_boxes"][0]) == 4
    assert all(0 <= b[0] <= 80 and 0 <= b[3] <= 60 for b in first["pred_boxes"])
    (out / f"{names[1]}.json").unlink()
    stamp = (out / f"{names[0]}.json").stat().st_mtime_ns
    assert model.write_tao_detections(frame_list, root, out) == 1  # only the missing frame runs again
    assert (out / f"{names[0]}.json").stat().st_mtime_ns == stamp and (out / f"{names[1]}.json").is_file()
    assert model.write_tao_detections(frame_list, root, out) == 0


def test_predict_frame_list_needs_one_root_and_an_output_folder(tmp_path, capsys):
    frame_list = tmp_path / "list.txt"
    frame_list.write_text("a.jpg\n")
    assert cli.main(["predict", BAGS, str(tmp_path), str(tmp_path), "--frame-list", str(frame_list),
                     "--per-frame-dir", str(tmp_path / "out")]) == 1
    assert "--frame-list takes one input" in capsys.readouterr().err
    assert cli.main(["predict", BAGS, str(tmp_path), "--frame-list", str(frame_list)]) == 1
    assert "--per-frame-dir" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_on_lvis_v05_val(tmp_path):
    """``evaluate("lvis_v05_val")`` with LVIS v0.5's 1230 categories: box and mask metrics, labels as v0.5 ids."""
    from benchmark_layouts import write_lvis

    write_lvis(tmp_path)
    data = json.loads((tmp_path / "annotations" / "lvis_v1_val.json").read_text())
    for image in data["images"]:
        folder = image.pop("coco_url").split("/")[-2].removesuffix("2017")
        image["file_name"] = f"COCO_{folder}2014_{image['id']:012d}.jpg"
    data["categories"] = [dict(c) for c in registry.lvis_v05_categories()]
    (tmp_path / "annotations" / "lvis_v0.5_val.json").write_text(json.dumps(data))
    out = tmp_path / "results.json"
    metrics = bags_model().evaluate("lvis_v05_val", root=tmp_path, results_file=out)
    assert {"AP", "APr", "APc", "APf", "mask_AP", "mask_APr"} <= set(metrics)
    assert all(-1.0 <= v <= 1.0 for v in metrics.values())
    records = json.loads(out.read_text())
    assert records and {r["image_id"] for r in records} == {11, 4} and all("segmentation" in r for r in records)
    assert all(1 <= r["category_id"] <= 1230 for r in records)
