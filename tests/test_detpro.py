"""DetPro: strict conversion of the released layout (with CLIP inside), the model end to end on photographs, the
score fusion against float64, open vocabularies through the test Hub, and the way to the weights when they are not
published."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil

import open_clip
import pytest
import torch
import torch.nn.functional as F

import vfe_hub
from media import photo
from original_layouts import detpro_layout
from small_models import (DETPRO, DETPRO_SMALL, FAST, LVIS_SPEAKER, MMDET_SPEAKER, TINY_TEXT, convert_detpro,
                          lvis_like_categories, small_spec, write_detpro_release)
from vfe_hub import cli, hub, registry, weights
from vfe_hub.errors import ChecksumError, ConversionError, VfeHubError, WeightsNotFoundError
from vfe_hub.layers.clip_text import CLIPTextEncoder
from vfe_hub.text import class_embeddings, clip_tokenizer

COMMAND = (f"vfe-hub convert {DETPRO} <checkpoint.pth> <out_dir> --embeddings <iou_neg5_ens.pth> "
           f"--categories <lvis_v1_val.json>")
DRIVE_IDS = ("1ktTMZWFjUAGjzjlOdzxGfKQR8u9x_OmX", "1T-Ydo0YgneDbZYU2hu3wWm9MZ2plxGT_")
OPEN_CLIP_VOCAB = open_clip.__file__.rsplit("/", 1)[0] + "/bpe_simple_vocab_16e6.txt.gz"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The released layout with the full CLIP ViT-B/32 (mixed float16 / float32) and two prompt contexts."""
    return write_detpro_release(tmp_path_factory.mktemp("release"), contexts=2)


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "detpro"
    return out, convert_detpro(release, out)


@pytest.fixture(scope="module")
def model(converted):
    """The converted weights loaded from the folder, at the small input size with fewer proposals."""
    net = vfe_hub.load(weights=converted[0], **FAST)
    net.spec = dataclasses.replace(net.spec, preprocess=DETPRO_SMALL)
    return net


# ------------------------------------------------------------------------------------------------ conversion


@pytest.mark.slow
def test_release_converts_strictly(release, converted):
    out, printed = converted
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                    "prompt_contexts.safetensors", "text_encoder.safetensors"]
    original = release["state"]
    layout = detpro_layout()
    visual = [k for k in layout if k.startswith("roi_head.clip_model.visual.")]
    tracked = [k for k in layout if k.endswith("num_batches_tracked")]
    assert len(visual) == 152 and len(tracked) == 69
    assert (f"*.num_batches_tracked ({len(tracked)}), roi_head.clip_model.visual.* ({len(visual)}), "
            f"roi_head.clip_model.logit_scale (1)") in printed

    config, state = hub.read_model_dir(out)
    detector = [k for k in detpro_layout(clip=False) if not k.endswith("num_batches_tracked")]
    assert set(state) == set(registry.get_spec(DETPRO).build().state_dict())
    assert len(state) == len(detector) + 2  # every detector tensor, plus class_embeddings and novel
    pairs = {
        "backbone.layer2.0.conv1.weight": "backbone.layer2.0.conv1.weight",
        "neck.lateral_convs.3.bn.running_var": "neck.lateral_convs.3.bn.running_var",
        "neck.fpn_convs.1.conv.weight": "neck.fpn_convs.1.conv.weight",
        "rpn_head.rpn_reg.weight": "rpn.bbox_pred.weight",
        "roi_head.bbox_head.shared_convs.3.bn.weight": "box_head.shared_convs.3.bn.weight",
        "roi_head.bbox_head.shared_fcs.0.bias": "box_head.fcs.0.bias",
        "roi_head.bbox_head.fc_reg.weight": "box_head.bbox_pred.weight",
        "roi_head.bbox_head.shared_convs_for_image.2.conv.weight": "image_head.shared_convs.2.conv.weight",
        "roi_head.bbox_head.shared_fcs_for_image.0.weight": "image_head.fcs.0.weight",
        "roi_head.projection.weight": "projection.weight",
        "roi_head.projection_for_image.bias": "projection_for_image.bias",
        "roi_head.bg_embedding.weight": "bg_embedding.weight",
        "roi_head.mask_head.convs.3.conv.bias": "mask_head.convs.3.bias",
        "roi_head.mask_head.upsample.weight": "mask_head.upsample.weight",
        "roi_head.mask_head.conv_logits.weight": "mask_head.conv_logits.weight",
    }
    for key, ours in pairs.items():
        assert torch.equal(state[ours], original[key]), key

    categories = sorted(json.loads(release["categories"].read_text())["categories"], key=lambda c: c["id"])
    assert config["classes"] == release["names"] == [c["name"] for c in categories]
    assert config["classes"][999] == LVIS_SPEAKER and config["category_ids"] == list(range(1, 1204))
    assert torch.equal(state["novel"], torch.tensor([c["frequency"] == "r" for c in categories]))
    torch.testing.assert_close(state["class_embeddings"], F.normalize(release["embeddings_tensor"][0], dim=1))
    assert config["source"]["format"] == "mmdet_v2"
    assert config["inputs"]["embeddings"]["sha256"] == hub.sha256_of(release["embeddings"])

    text = hub.read_safetensors(out / "text_encoder.safetensors")
    clip_text = {k.removeprefix("roi_head.clip_model."): v for k, v in original.items()
                 if k.startswith("roi_head.clip_model.") and k not in visual and not k.endswith("logit_scale")}
    assert set(text) == set(clip_text) == set(CLIPTextEncoder().state_dict())
    assert clip_text["transformer.resblocks.5.attn.in_proj_weight"].dtype == torch.float16
    assert all(t.dtype == torch.float32 and torch.equal(t, clip_text[k].float()) for k, t in text.items())
    contexts = hub.read_safetensors(out / "prompt_contexts.safetensors")["contexts"]
    assert torch.equal(contexts, torch.stack(release["context_tensors"]))
    assert config["files"] == {name: hub.sha256_of(out / name) for name in
                               ("text_encoder.safetensors", "prompt_contexts.safetensors")}


def test_the_checkpoint_alone_does_not_load_on_the_fly(release, converted, tmp_path):
    """The checkpoint's meta holds a pickled object, which the automatic reading leaves inert (its tensors read as
    they are); DetPro needs more than its checkpoint, so loading it on the fly is refused with the conversion
    command; weights without config.json lack the vocabulary."""
    state = hub.read_checkpoint(release["checkpoint"])
    assert torch.equal(state["rpn_head.rpn_reg.weight"], release["state"]["rpn_head.rpn_reg.weight"])
    with pytest.raises(ConversionError, match=re.escape(COMMAND)):
        vfe_hub.load(DETPRO, weights=release["checkpoint"])
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        vfe_hub.load(DETPRO, weights=converted[0] / "model.safetensors")


@pytest.fixture
def in_memory(release, monkeypatch):
    """The release's checkpoint as loaded (``meta`` + ``state_dict``), served to the converter without re-reading
    the file: tests edit it to break one thing at a time."""
    classes = tuple(MMDET_SPEAKER if n == LVIS_SPEAKER else n for n in release["names"])  # mmdet's spelling
    checkpoint = {"meta": {"CLASSES": classes}, "state_dict": dict(release["state"])}
    read = hub.load_checkpoint
    monkeypatch.setattr(hub, "load_checkpoint",
                        lambda path: checkpoint if path == release["checkpoint"] else read(path))
    return checkpoint


def _convert_python(release, **changes):
    inputs = {"embeddings": release["embeddings"], "categories": release["categories"], **changes}
    return weights.convert_checkpoint(registry.get_spec(DETPRO), release["checkpoint"], **inputs)


@pytest.mark.parametrize("fault, needle", [
    ("missing", "model keys without a tensor (1):\n    projection_for_image.weight"),
    ("extra", "original keys no rule maps (1):\n    roi_head.bbox_head.fc_extra.weight"),
    ("class-specific regression", "box_head.bbox_pred.weight: file (4812, 1024) vs model (4, 1024)"),
    ("text tower", "text_encoder.text_projection: file (512, 256) vs model (512, 512)"),
])
def test_conversion_names_the_offending_key(release, in_memory, fault, needle):
    state = in_memory["state_dict"]
    if fault == "missing":
        del state["roi_head.projection_for_image.weight"]
    elif fault == "extra":
        state["roi_head.bbox_head.fc_extra.weight"] = torch.zeros(3)
    elif fault == "class-specific regression":
        state["roi_head.bbox_head.fc_reg.weight"] = torch.zeros(4812, 1024)
    else:
        state["roi_head.clip_model.text_projection"] = torch.zeros(512, 256)
    with pytest.raises(ConversionError) as info:
        _convert_python(release)
    assert needle in str(info.value)


@pytest.mark.slow
def test_conversion_inputs_are_checked(release, in_memory, tmp_path):
    coco = tmp_path / "instances_val2017.json"
    coco.write_text(json.dumps({"categories": [{"id": i, "name": f"c{i}", "frequency": "f"} for i in range(80)]}))
    with pytest.raises(ConversionError, match="has 80 categories; LVIS v1 has 1203"):
        _convert_python(release, categories=coco)
    coco.write_text(json.dumps({"images": []}))
    with pytest.raises(ConversionError, match="not an LVIS annotation file"):
        _convert_python(release, categories=coco)
    narrow = tmp_path / "narrow.pth"
    torch.save(torch.zeros(1203, 256), narrow)
    with pytest.raises(ConversionError, match=r"--embeddings .*narrow.pth has shape \(1203, 256\)"):
        _convert_python(release, embeddings=narrow)
    wide = tmp_path / "wide_prompt.pth"
    torch.save(torch.zeros(8, 640), wide)
    with pytest.raises(ConversionError, match=r"--contexts must be tensors of one shape \(K, 512\)"):
        _convert_python(release, contexts=[release["contexts"][0], wide])
    with pytest.raises(ConversionError, match=re.escape(COMMAND)):
        _convert_python(release, categories=None)
    names = list(in_memory["meta"]["CLASSES"])
    in_memory["meta"]["CLASSES"] = tuple(names[:5] + [names[6], names[5]] + names[7:])
    with pytest.raises(ConversionError, match="first differences: 5: 'thing_0007' vs 'thing_0006'"):
        _convert_python(release)
    in_memory["meta"]["CLASSES"] = tuple(names)  # mmdet's spelling of the speaker is accepted; names are LVIS's
    assert names[999] == MMDET_SPEAKER and _convert_python(release).config["classes"][999] == LVIS_SPEAKER


# ------------------------------------------------------------------------------------------------ inference


def _inside(det, size):
    h, w = size
    assert det.boxes.dtype == torch.float32 and 0 < len(det) <= FAST["max_per_img"]
    assert (det.boxes[:, :2] >= 0).all() and (det.boxes[:, 2] <= w).all() and (det.boxes[:, 3] <= h).all()
    assert (det.boxes[:, 2:] >= det.boxes[:, :2]).all()
    assert ((det.scores > 1e-4) & (det.scores <= 1)).all() and torch.all(det.scores[:-1] >= det.scores[1:])


@pytest.mark.slow
def test_predict_on_a_photograph(model, converted):
    image = photo("chelsea")
    [det] = model.predict(image)
    _inside(det, image.shape[:2])
    config = json.loads((converted[0] / "config.json").read_text())
    assert det.class_names == tuple(config["classes"]) and ((det.labels >= 0) & (det.labels < 1203)).all()
    assert len(det.masks) == len(det) and all(set(m) == {"size", "counts"} and m["size"] == [300, 451]
                                              for m in det.masks)
    masks = det.mask_tensor()
    assert masks.any(dim=(1, 2)).all(), "every detection has a mask"
    ys, xs = torch.arange(300)[:, None], torch.arange(451)[None, :]
    for mask, (x1, y1, x2, y2) in zip(masks, det.boxes.tolist()):  # pasted within the box, widened by one pixel
        outside = (xs < int(x1) - 1) | (xs >= int(x2) + 2) | (ys < int(y1) - 1) | (ys >= int(y2) + 2)
        assert not (mask & outside).any()
    ids = torch.tensor(model.category_ids)
    records = det.to_json(image_id=5, category_ids=model.category_ids)
    assert [r["category_id"] for r in records] == ids[det.labels].tolist()
    assert records[0]["segmentation"]["size"] == [300, 451] and isinstance(records[0]["segmentation"]["counts"], str)


@pytest.mark.slow
def test_batch_of_different_sizes_equals_one_at_a_time(model):
    """Coffee (400 x 600) and the astronaut crop (240 x 360) share a padded size and run together; chelsea
    (300 x 451) runs alone: each image sees the padding it has alone."""
    images = [photo("coffee"), photo("chelsea"), photo("astronaut", (240, 360))]
    batched = model.predict(images, batch_size=3)
    for image, b in zip(images, batched):
        [a] = model.predict(image)
        _inside(b, image.shape[:2])
        assert torch.equal(a.labels, b.labels)
        torch.testing.assert_close(b.scores, a.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(b.boxes, a.boxes, rtol=0, atol=1e-3)
        assert (a.mask_tensor() ^ b.mask_tensor()).float().mean() < 1e-4


def _fused_float64(model, text, image, lam=None):
    """DetPro's score rule in float64 from the model's tensors (the original's formulas, written out)."""
    w = {k: v.double() for k, v in model.state_dict().items()}
    classes = w["class_embeddings"] / w["class_embeddings"].norm(dim=1, keepdim=True)
    bg = w["bg_embedding.weight"][:, 0] + w["bg_embedding.bias"]
    table = torch.cat([classes, (bg / bg.norm())[None]])

    def logits(embedding, name):
        projected = embedding.double() @ w[f"{name}.weight"].T + w[f"{name}.bias"]
        return (projected / projected.norm(dim=1, keepdim=True)) @ table.T / 0.007

    p_text = logits(text, "projection").softmax(dim=1)[:, :-1]
    image_logits = logits(image, "projection_for_image")
    image_logits[:, -1] = -1e11
    p_image = image_logits.softmax(dim=1)[:, :-1]
    if lam is not None:
        return p_image ** (1 - lam) * p_text ** lam
    novel = model.novel.cpu()
    return torch.where(novel, p_image ** (2 / 3) * p_text ** (1 / 3), p_text ** (2 / 3) * p_image ** (1 / 3))


def _roi_embeddings(model, monkeypatch, image) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two branches' embeddings of the photograph's RoIs and the fused scores the model computed from them."""
    seen = []
    scores = type(model).class_scores

    def recording(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        seen.append((text, image, scores(self, text, image)))
        return seen[-1][2]

    with monkeypatch.context() as patch:
        patch.setattr(type(model), "class_scores", recording)
        model.predict(image)
    [(text, image_embedding, fused)] = seen
    return text, image_embedding, fused


@pytest.mark.slow
def test_score_fusion_equals_float64_base_novel_rule(model, monkeypatch):
    text, image, fused = _roi_embeddings(model, monkeypatch, photo("coffee"))
    assert fused.shape == (FAST["proposals"], 1203) and model.novel.sum() == 301 and model.score_lambda is None
    expected = _fused_float64(model, text[:6], image[:6])
    torch.testing.assert_close(fused[:6].double(), expected, rtol=1e-4, atol=1e-12)
    # the rule matters: with every class treated as base the scores of novel classes change
    base = _fused_float64(model, text[:6], image[:6], lam=2 / 3)
    assert (base - expected)[:, model.novel].abs().max() > 1e-3 * expected.max()


# ------------------------------------------------------------------------------------------------ vocabularies


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A release with a 2-layer, 64-wide CLIP text tower and two contexts, converted with the registry entry's
    text-encoder config set to match; yields the folder, the release and the patched entry."""
    release = write_detpro_release(tmp_path_factory.mktemp("tiny_release"), text_tower=(64, 2), contexts=2, seed=3)
    spec = registry.get_spec(DETPRO)
    patched = dataclasses.replace(spec, preprocess=DETPRO_SMALL, config={**spec.config, "text_encoder": TINY_TEXT})
    out = tmp_path_factory.mktemp("tiny") / "detpro"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.MODELS, DETPRO, patched)
        convert_detpro(release, out)
    return out, release, patched


def _expected_embeddings(folder, names, contexts=True):
    encoder = CLIPTextEncoder(**TINY_TEXT)
    encoder.load_state_dict(hub.read_safetensors(folder / "text_encoder.safetensors"), strict=True)
    ctx = hub.read_safetensors(folder / "prompt_contexts.safetensors")["contexts"] if contexts else None
    return class_embeddings(encoder.eval(), clip_tokenizer(OPEN_CLIP_VOCAB), names, contexts=ctx)


@pytest.mark.slow
def test_vocabulary_through_the_hub(fake_hub, github, tiny, tmp_path, monkeypatch):
    folder, _, patched = tiny
    shutil.copyfile(OPEN_CLIP_VOCAB, github)
    monkeypatch.setitem(registry.MODELS, DETPRO, patched)
    assert cli.main(["publish", str(folder), patched.weights.repo_id]) == 0
    [commit] = fake_hub.commits(patched.weights.repo_id)
    pinned = dataclasses.replace(patched, weights=dataclasses.replace(patched.weights, revision=commit))
    monkeypatch.setitem(registry.MODELS, DETPRO, pinned)  # a pinned commit: the Hub, not the Drive release

    names = ["zebra", "teapot"]
    net = vfe_hub.load(DETPRO, vocabulary=names, **FAST)
    assert net.class_names == ("zebra", "teapot") and net.category_ids == [1, 2]
    assert net.provenance()["revision"] == commit and not net.novel.any() and net.score_lambda == 0.6
    torch.testing.assert_close(net.class_embeddings, _expected_embeddings(folder, names), rtol=0, atol=1e-6)
    [det] = net.predict(photo("coffee"))
    assert det.class_names == ("zebra", "teapot") and set(det.labels.tolist()) <= {0, 1} and len(det) > 0
    fetched = [p for _, p in fake_hub.requests if p.endswith("text_encoder.safetensors")]
    assert fetched, "the text encoder came from the repository, at the commit of the weights"
    assert all(f"/resolve/{commit}/" in p for p in fetched)

    runs = []
    monkeypatch.setattr(CLIPTextEncoder, "forward", lambda self, *a, **k: runs.append(1))
    again = vfe_hub.load(DETPRO, vocabulary=names, **FAST)  # the cache answers: no text encoder is read or run
    assert runs == [] and [p for _, p in fake_hub.requests if p.endswith("text_encoder.safetensors")] == fetched
    assert torch.equal(again.class_embeddings, net.class_embeddings)
    piped = vfe_hub.pipeline("open-vocabulary-detection", model=DETPRO, vocabulary=names, **FAST)
    assert piped.model.class_names == ("zebra", "teapot") and runs == []


@pytest.mark.slow
def test_vocabulary_from_a_folder_with_and_without_contexts(github, tiny, tmp_path, monkeypatch):
    folder, _, patched = tiny
    shutil.copyfile(OPEN_CLIP_VOCAB, github)
    net = vfe_hub.load(weights=folder, **FAST)
    assert len(net.class_names) == 1203 and net.category_ids[:3] == [1, 2, 3]
    net.spec = patched
    net.set_vocabulary(["zebra", "teapot", "kite"], seen=["zebra"])
    assert net.novel.tolist() == [False, True, True] and net.score_lambda is None
    torch.testing.assert_close(net.class_embeddings, _expected_embeddings(folder, ["zebra", "teapot", "kite"]),
                               rtol=0, atol=1e-6)
    with pytest.raises(VfeHubError, match=r"not in it: \['dog'\]"):
        net.set_vocabulary(["zebra"], seen=["dog"])

    # Weights without learned contexts embed with ViLD's templates.
    config, state = hub.read_model_dir(folder)
    plain = tmp_path / "plain"
    text = {"text_encoder.safetensors": hub.read_safetensors(folder / "text_encoder.safetensors")}
    kept = {k: v for k, v in config.items() if k not in ("files", "sha256", "format_version")}
    hub.write_model_dir(plain, state, kept, "card", text)
    vild = vfe_hub.load(weights=plain, vocabulary=["zebra", "teapot"], **FAST)
    torch.testing.assert_close(vild.class_embeddings, _expected_embeddings(folder, ["zebra", "teapot"], contexts=False),
                               rtol=0, atol=1e-6)
    assert not torch.allclose(vild.class_embeddings, _expected_embeddings(folder, ["zebra", "teapot"]), atol=1e-2)


@pytest.mark.slow
def test_transfer_rule_for_custom_vocabularies(github, tiny, monkeypatch):
    folder, _, patched = tiny
    shutil.copyfile(OPEN_CLIP_VOCAB, github)
    net = vfe_hub.load(weights=folder, vocabulary=["zebra", "teapot", "kite", "cup"], **FAST)
    net.spec = patched
    text, image, fused = _roi_embeddings(net, monkeypatch, photo("coffee"))
    assert fused.shape == (FAST["proposals"], 4)
    expected = _fused_float64(net, text[:6], image[:6], lam=0.6)
    torch.testing.assert_close(fused[:6].double(), expected, rtol=1e-4, atol=1e-12)


def test_fixed_vocabulary_models_refuse_a_vocabulary():
    with pytest.raises(VfeHubError, match="mamba_r101_dc5_vid detects a fixed set of 30 classes.*detpro_r50_fpn_lvis1"):
        vfe_hub.load("mamba_r101_dc5_vid", vocabulary=["cat"])  # raised before any download is attempted
    video = small_spec("stpn_swint_vid").build()
    with pytest.raises(VfeHubError, match="stpn_swint_vid detects a fixed set"):
        vfe_hub.pipeline("video-object-detection", model=video, vocabulary=["cat"])


# ------------------------------------------------------------------------------------------------ unpublished


def test_unreachable_weights_say_how_to_convert(fake_hub, tmp_path, monkeypatch):
    """Unpublished, the model loads from its Drive release (tests/test_drive.py); a revision of the converted
    repository that cannot be had names the Drive files and the command that converts them."""
    spec = registry.get_spec(DETPRO)
    assert spec.weights.revision is None and spec.weights.format == "vfe_hub" and spec.classes == ()
    assert spec.weights.from_drive and spec.weights.drive.checkpoint.id == DRIVE_IDS[0]
    with pytest.raises(WeightsNotFoundError) as info:
        vfe_hub.load(DETPRO, revision="0" * 40)
    message = str(info.value)
    assert "does not exist" in message and COMMAND in message and 'vfe_hub.load(weights="<out_dir>")' in message
    assert all(drive_id in message for drive_id in DRIVE_IDS)
    fake_hub.add_file(spec.weights.repo_id, "README.md", b"soon")
    with pytest.raises(WeightsNotFoundError, match="revision does not exist.*" + re.escape(COMMAND)):
        vfe_hub.load(DETPRO, revision="0" * 40)
    with pytest.raises(WeightsNotFoundError, match=re.escape(COMMAND)):
        vfe_hub.load(DETPRO, revision=fake_hub.commits(spec.weights.repo_id)[0])  # the files do not exist there


def test_companion_files_are_checked(tmp_path):
    """Files listed in config.json are read only if their bytes have the listed sha256."""
    path = tmp_path / "text_encoder.safetensors"
    path.write_bytes(b"tensors")
    files = hub.WeightFiles({path.name: hub.sha256_of(path), "prompt_contexts.safetensors": "0" * 64}, tmp_path)
    assert files.path(path.name) == path and path.name in files and "other.safetensors" not in files
    with pytest.raises(WeightsNotFoundError, match="prompt_contexts.safetensors is missing"):
        files.path("prompt_contexts.safetensors")
    with pytest.raises(WeightsNotFoundError, match="come without other.safetensors"):
        files.path("other.safetensors")
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="text_encoder.safetensors does not match the sha256"):
        files.path(path.name)


@pytest.mark.slow
def test_evaluates_on_an_lvis_layout(model, tmp_path):
    """model.evaluate runs DetPro over the images of an LVIS file and scores boxes and masks (random weights)."""
    from benchmark_layouts import write_lvis

    write_lvis(tmp_path, categories=lvis_like_categories())
    metrics = model.evaluate("lvis_v1_val", root=tmp_path, batch_size=2, results_file=tmp_path / "results.json")
    for prefix in ("", "mask_"):
        assert {f"{prefix}{k}" for k in ("AP", "APr", "APc", "APf", "AR@300")} <= set(metrics)
        assert all(-1.0 <= metrics[f"{prefix}{k}"] <= 1.0 for k in ("AP", "APr", "APc", "APf"))
    records = json.loads((tmp_path / "results.json").read_text())
    assert {r["image_id"] for r in records} == {11, 4} and all("segmentation" in r for r in records)
    assert {r["category_id"] for r in records} <= set(model.category_ids)
