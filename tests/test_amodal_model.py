"""The Amodal Expander on GTR: three released weight variants of one architecture, amodal boxes out of frame."""
from __future__ import annotations

import dataclasses
import json

import av
import pytest
import torch

import vfe_hub
from media import panning_clip, photo, write_video
from original_layouts import gtr_layout, random_state, share_expander
from small_models import AMODAL, GTR, gtr_model, serve_amodal_release
from vfe_hub import cli, registry
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.weights import empty_model

VARIANTS = sorted(name for name, spec in registry.MODELS.items() if spec.architecture == AMODAL)


def test_three_variants_of_one_architecture():
    assert VARIANTS == [f"{AMODAL}.20k", f"{AMODAL}.pno_20k", f"{AMODAL}.pno_45k"]
    assert vfe_hub.model_info(AMODAL)["name"] == f"{AMODAL}.pno_45k"  # the authors' suggestion is the default
    files = {registry.MODELS[name].weights.filename for name in VARIANTS}
    assert files == {"Amodal_Expander_20k.pth", "Amodal_Expander_PnO_20k.pth", "Amodal_Expander_PnO_45k.pth"}
    assert vfe_hub.list_models("amodal*") == VARIANTS
    hubconf = __import__("hubconf")
    assert all(callable(getattr(hubconf, name)) for name in [*VARIANTS, AMODAL])


@pytest.mark.parametrize("name", VARIANTS)
def test_each_release_converts_strictly_with_one_shared_expander(name):
    """Every key maps; the expander's three saved stages become one module (stages 1 and 2 checked equal to 0)."""
    expected = {k: v.shape for k, v in empty_model(registry.get_spec(name)).state_dict().items()}
    layout = gtr_layout(expander=True)
    state, dropped = convert_state_dict(share_expander(random_state(layout)), table_for("detectron2"), expected)
    assert len(state) == len(expected) == 1037
    assert sorted(k for k in state if k.startswith("amodal_expander.")) == [
        f"amodal_expander.expand_modal_box.layers.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")]
    assert sorted(dropped) == sorted(k for k in layout if "freq_weight" in k or "amodal_expander.1" in k
                                     or "amodal_expander.2" in k)


@pytest.fixture(scope="module")
def amodal():
    """The small Amodal Expander, its expander pushed to widen every box about 20 times (deltas dw, dh of 45
    weighted by the last stage's 15: exp(3))."""
    model = gtr_model(name=AMODAL, min_track_len=1)
    with torch.no_grad():
        model.amodal_expander.expand_modal_box.layers[1].bias.copy_(torch.tensor([0.0, 0.0, 45.0, 45.0]))
    return model


@pytest.mark.slow
def test_amodal_boxes_leave_the_frame_where_modal_boxes_do_not(amodal):
    image = photo("coffee", (120, 160))
    for protocol in ("streaming", "paper"):
        [det] = amodal.predict(image, protocol=protocol)
        assert len(det) and det.amodal_boxes is not None and det.amodal_boxes.shape == det.boxes.shape
        h, w = image.shape[:2]
        assert ((det.boxes[:, 0::2] >= 0) & (det.boxes[:, 0::2] <= w)).all()
        assert ((det.boxes[:, 1::2] >= 0) & (det.boxes[:, 1::2] <= h)).all()
        outside = (det.amodal_boxes[:, :2] < 0).any(1) | (det.amodal_boxes[:, 2] > w) | (det.amodal_boxes[:, 3] > h)
        assert outside.all(), "boxes some 20 times wider than the detections of a 120 x 160 frame"
        widths = det.amodal_boxes[:, 2] - det.amodal_boxes[:, 0]
        assert (widths > 5 * (det.boxes[:, 2] - det.boxes[:, 0])).all()
    [record, *_] = det.to_json(video_id=2)
    assert record["bbox"][0] < 0 or record["bbox"][0] + record["bbox"][2] > w
    assert record["modal_bbox"][0] >= 0
    drawn = det.plot(image, score_thr=0, margin=40)
    assert drawn.size == (160 + 80, 120 + 80)


@pytest.fixture
def served(fake_hub, tmp_path, monkeypatch):
    """The default variant's file on the test Hub, at the small input size."""
    name = registry.ALIASES[AMODAL]
    serve_amodal_release(fake_hub, monkeypatch, tmp_path, name, seed=4)
    return name


@pytest.mark.slow
def test_the_architecture_name_loads_the_default_variant_and_tracks_from_the_command_line(served, tmp_path):
    model = vfe_hub.load(AMODAL, device="cpu")
    assert model.spec.name == served and model.amodal_expander is not None
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=2, size=(120, 160)), fps=5)
    out, drawn = tmp_path / "tracks.json", tmp_path / "drawn.mp4"
    assert cli.main(["track", AMODAL, str(video), "-o", str(out), "--save-video", str(drawn), "--device", "cpu",
                     "--score-thr", "0"]) == 0
    records = json.loads(out.read_text())
    assert records and all("modal_bbox" in r and "track_id" in r for r in records)
    with av.open(str(drawn)) as container:
        sizes = {(f.height, f.width) for f in container.decode(video=0)}
    assert sizes == {(120 + 2 * 40, 160 + 2 * 40)}, "one canvas size, a quarter of the frame more on each side"


@pytest.mark.slow
def test_models_sharing_a_file_keep_their_own_conversions(fake_hub, tmp_path, monkeypatch):
    """GTR and the Amodal Expander's 20k variant read the same release file, and GTR leaves the expander out: each
    model caches its own conversion (one shared cache file would fail the other's strict load)."""
    serve_amodal_release(fake_hub, monkeypatch, tmp_path, GTR, seed=4)
    gtr = registry.MODELS[GTR]
    variant = f"{AMODAL}.20k"
    monkeypatch.setitem(registry.MODELS, variant, dataclasses.replace(
        registry.MODELS[variant], weights=gtr.weights, preprocess=gtr.preprocess,
        config={**registry.MODELS[variant].config, "proposals": 20}))
    first = vfe_hub.load(GTR, device="cpu")
    amodal = vfe_hub.load(variant, device="cpu")
    again = vfe_hub.load(GTR, device="cpu")
    assert first.amodal_expander is None and again.amodal_expander is None and amodal.amodal_expander is not None
    assert first.weights_provenance == amodal.weights_provenance == again.weights_provenance  # one file
