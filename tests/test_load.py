"""Weights end to end through the real huggingface_hub client against the test Hub on 127.0.0.1."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import vfe_hub
from original_layouts import mamba_layout, random_state, stpn_layout, write_mmcv_checkpoint
from vfe_hub import cards, cli, hub, registry
from vfe_hub.errors import (ChecksumError, ConversionError, CorruptWeightsError, DownloadError, UnknownModelError,
                            WeightsNotFoundError)

NAME = "mamba_r101_dc5_vid"
SPEC = registry.get_spec(NAME)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def original():
    """The synthetic released checkpoint: its state dict and its bytes as the Hub serves them."""
    state = random_state(mamba_layout(), seed=1)
    buffer = io.BytesIO()
    write_mmcv_checkpoint(buffer, state)
    return state, buffer.getvalue()


@pytest.fixture
def served(fake_hub, original, tmp_path, monkeypatch):
    """The checkpoint on the test Hub; the registry entry pinned to that commit (and the cache in tmp)."""
    _, data = original
    commit = fake_hub.add_file(SPEC.weights.repo_id, SPEC.weights.filename, data)
    pinned = dataclasses.replace(SPEC, weights=dataclasses.replace(SPEC.weights, revision=commit[:7]))
    monkeypatch.setitem(registry.MODELS, NAME, pinned)
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    return fake_hub, commit


def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.mark.slow
def test_load_by_name_then_from_cache_with_the_server_stopped(served, original, monkeypatch):
    hub_server, commit = served
    state, data = original
    model = vfe_hub.load(NAME)
    assert torch.equal(model.box_head.cls_score.weight, state["detector.roi_head.bbox_head.fc_cls.weight"])
    assert not model.training
    prov = model.provenance()
    assert prov["revision"] == commit[:7] and prov["sha256"] == hashlib.sha256(data).hexdigest()
    cached = hub.converted_path(NAME, registry.get_spec(NAME).weights, commit[:7])
    assert cached.is_file() and json.loads(cached.with_suffix(".json").read_text())["sha256"] == prov["sha256"]

    hub_server.stop()
    seen = len(hub_server.requests)
    again = vfe_hub.load(NAME)
    assert len(hub_server.requests) == seen
    assert torch.equal(again.box_head.cls_score.weight, model.box_head.cls_score.weight)
    _offline(monkeypatch)
    assert vfe_hub.load(NAME).provenance()["sha256"] == prov["sha256"]


@pytest.mark.slow
def test_revision_is_pinned(served, original):
    hub_server, commit = served
    newer = random_state(mamba_layout(), seed=2)
    buffer = io.BytesIO()
    write_mmcv_checkpoint(buffer, newer)
    latest = hub_server.add_file(SPEC.weights.repo_id, SPEC.weights.filename, buffer.getvalue())
    key = "detector.roi_head.bbox_head.fc_cls.weight"
    assert torch.equal(vfe_hub.load(NAME).box_head.cls_score.weight, original[0][key])
    assert torch.equal(vfe_hub.load(NAME, revision=latest).box_head.cls_score.weight, newer[key])


def test_missing_file_names_repo_file_and_revision(served, monkeypatch):
    spec = registry.get_spec(NAME)
    missing = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, filename="work_dirs/nope.pth"))
    monkeypatch.setitem(registry.MODELS, NAME, missing)
    with pytest.raises(WeightsNotFoundError) as info:
        vfe_hub.load(NAME)
    message = str(info.value)
    assert "work_dirs/nope.pth" in message and spec.weights.repo_id in message and spec.weights.revision in message
    with pytest.raises(WeightsNotFoundError, match="revision does not exist"):
        vfe_hub.load(NAME, revision="0" * 40)


@pytest.mark.slow
def test_corrupt_download_is_rejected_and_not_kept(served):
    hub_server, commit = served
    hub_server.corrupt(SPEC.weights.repo_id, SPEC.weights.filename)
    with pytest.raises(ChecksumError, match="removed from the cache"):
        vfe_hub.load(NAME)
    assert not hub.converted_path(SPEC.name, SPEC.weights, commit[:7]).exists()
    blobs = list(Path(constants.HF_HUB_CACHE).rglob("blobs/*"))
    assert not [b for b in blobs if b.stat().st_size > 0 and not b.name.endswith(".incomplete")]


def test_pinned_sha256_mismatch(served, monkeypatch):
    spec = registry.get_spec(NAME)
    pinned = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, sha256="0" * 64))
    monkeypatch.setitem(registry.MODELS, NAME, pinned)
    with pytest.raises(ChecksumError, match="0" * 64):
        vfe_hub.load(NAME)


@pytest.mark.slow
def test_truncated_download_fails_cleanly(served):
    hub_server, commit = served
    hub_server.truncate(SPEC.weights.repo_id, SPEC.weights.filename)
    with pytest.raises((DownloadError, ChecksumError)):
        vfe_hub.load(NAME)
    assert not hub.converted_path(SPEC.name, SPEC.weights, commit[:7]).exists()


@pytest.fixture(scope="module")
def converted_dir(original, tmp_path_factory):
    """``vfe-hub convert`` of the synthetic original checkpoint."""
    root = tmp_path_factory.mktemp("convert")
    checkpoint = root / "epoch_6_model.pth"
    checkpoint.write_bytes(original[1])
    assert cli.main(["convert", NAME, str(checkpoint), str(root / "out")]) == 0
    return root / "out"


@pytest.mark.slow
def test_convert_writes_a_loadable_folder(converted_dir, original):
    assert sorted(p.name for p in converted_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((converted_dir / "config.json").read_text())
    assert config["name"] == NAME and config["sha256"] == hub.sha256_of(converted_dir / "model.safetensors")
    assert (converted_dir / "README.md").read_text() == cards.render(registry.get_spec(NAME))
    for model in (vfe_hub.load(weights=converted_dir), vfe_hub.load(NAME, weights=converted_dir / "model.safetensors")):
        assert torch.equal(model.box_head.bbox_pred.bias, original[0]["detector.roi_head.bbox_head.fc_reg.bias"])


def test_truncated_safetensors_is_a_clear_error(converted_dir, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((converted_dir / "model.safetensors").read_bytes()[:4096])
    with pytest.raises(CorruptWeightsError, match="broken.safetensors"):
        vfe_hub.load(NAME, weights=broken)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.json").write_text((converted_dir / "config.json").read_text())
    (folder / "model.safetensors").write_bytes(broken.read_bytes())
    with pytest.raises(ChecksumError, match="does not match the sha256"):
        vfe_hub.load(weights=folder)


def test_wrong_shape_in_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in SPEC.build().state_dict().items()}
    state["box_head.cls_score.weight"] = torch.zeros(30, 1024)
    save_file(state, tmp_path / "wrong.safetensors")
    with pytest.raises(ConversionError, match=r"box_head.cls_score.weight: file \(30, 1024\) vs model \(31, 1024\)"):
        vfe_hub.load(NAME, weights=tmp_path / "wrong.safetensors")


def test_other_bad_weights(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nothing.pth"):
        vfe_hub.load(NAME, weights=tmp_path / "nothing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CorruptWeightsError, match="notes.pth"):
        vfe_hub.load(NAME, weights=text)
    with pytest.raises(vfe_hub.VfeHubError, match="float16"):
        vfe_hub.load(NAME, weights=text, dtype=torch.int8)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match="mamba_r101_dc5_vid"):
        vfe_hub.load("mamba_r101_vid")
    with pytest.raises(UnknownModelError, match="list_models"):
        vfe_hub.model_info("zzz")


def test_publish_uploads_the_folder(fake_hub, converted_dir, capsys):
    assert cli.main(["publish", str(converted_dir), "someone/mamba-vfe"]) == 0
    files = fake_hub.files("someone/mamba-vfe")
    assert files["model.safetensors"] == (converted_dir / "model.safetensors").read_bytes()
    assert json.loads(files["config.json"])["name"] == NAME
    assert "uploaded" in capsys.readouterr().out


def test_torch_hub_entry_point(converted_dir):
    model = torch.hub.load(str(REPO), NAME, source="local", trust_repo=True, weights=converted_dir)
    assert isinstance(model, vfe_hub.VideoDetector) and model.spec.name == NAME
    import hubconf

    assert {n for n in registry.MODELS if callable(getattr(hubconf, n, None))} == set(registry.MODELS)
    assert SPEC.summary in getattr(hubconf, NAME).__doc__


@pytest.mark.slow
def test_cli_list_and_info():
    out = subprocess.run([sys.executable, "-m", "vfe_hub.cli", "list", "*vid*"], capture_output=True, text=True,
                         check=True).stdout
    assert NAME in out
    info = json.loads(subprocess.run([sys.executable, "-m", "vfe_hub.cli", "info", NAME], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["weights"]["repo_id"] == "guanxiongsun/vfe.pytorch"
    bad = subprocess.run([sys.executable, "-m", "vfe_hub.cli", "info", "mamba"], capture_output=True, text=True)
    assert bad.returncode == 1 and "Did you mean" in bad.stderr


def test_unavailable_device_is_a_clear_error(converted_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(vfe_hub.VfeHubError, match="CUDA is not available"):
        vfe_hub.load(weights=converted_dir, device="cuda")


@pytest.mark.slow
def test_cli_predict_writes_results_and_drawings(converted_dir, tmp_path):
    from media import photo, write_image

    image = write_image(tmp_path / "cat.png", photo("chelsea", (120, 180)))
    out = tmp_path / "results.json"
    args = ["predict", NAME, str(image), "--weights", str(converted_dir), "-o", str(out), "--save-dir",
            str(tmp_path / "drawn"), "--quiet", "--score-thr", "0"]
    assert cli.main(args) == 0
    document = json.loads(out.read_text())
    assert [i["name"] for i in document["images"]] == [str(image)]
    assert document["results"] and all(r["image_id"] == 1 and len(r["bbox"]) == 4 for r in document["results"])
    [drawn] = (tmp_path / "drawn").iterdir()
    assert drawn.suffix == ".jpg"


@pytest.mark.slow
def test_stpn_loads_through_the_same_hub_path(fake_hub, tmp_path, monkeypatch):
    """STPN's entry pins the released file's sha256: the synthetic file is refused under it, and loads by name,
    through torch.hub, the pipeline and the CLI once the pin is the synthetic file's."""
    name = "stpn_swint_vid"
    state = random_state(stpn_layout(), seed=3)
    buffer = io.BytesIO()
    write_mmcv_checkpoint(buffer, state)
    data = buffer.getvalue()
    spec = registry.get_spec(name)
    commit = fake_hub.add_file(spec.weights.repo_id, spec.weights.filename, data)
    monkeypatch.setitem(registry.MODELS, name, dataclasses.replace(
        spec, weights=dataclasses.replace(spec.weights, revision=commit[:7])))
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    with pytest.raises(ChecksumError, match=registry.get_spec(name).weights.sha256):
        vfe_hub.load(name)
    spec = registry.get_spec(name)
    monkeypatch.setitem(registry.MODELS, name, dataclasses.replace(
        spec, weights=dataclasses.replace(spec.weights, sha256=hashlib.sha256(data).hexdigest())))
    model = vfe_hub.load(name)
    key = "prompt_predictor.fc_embed.weight"
    assert torch.equal(model.prompt_predictor.attention.query_proj.weight, state[key])
    assert model.provenance()["sha256"] == hashlib.sha256(data).hexdigest()
    hubbed = torch.hub.load(str(REPO), name, source="local", trust_repo=True)
    assert torch.equal(hubbed.prompt_predictor.query, state["prompt_predictor.query"])
    assert vfe_hub.pipeline("video-object-detection", model=name).model.spec.name == name
    out = tmp_path / "results.json"
    from media import panning_clip, write_video

    video = write_video(tmp_path / "clip.mp4", panning_clip(n=2, size=(64, 96)))
    assert cli.main(["predict", name, str(video), "-o", str(out), "--quiet", "--score-thr", "0"]) == 0
    assert len({r["image_id"] for r in json.loads(out.read_text())["results"]}) == 2


# ------------------------------------------------------------------------------------------------ no network


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _endpoint(monkeypatch, endpoint: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.mark.parametrize(("host", "cause"), [
    ("closed port", "127.0.0.1 is unreachable (ConnectError"),
    ("vfe-hub-test.invalid", "no network: the host name vfe-hub-test.invalid cannot be resolved"),
])
def test_unreachable_hub_fails_at_once_with_the_cause_and_the_ways_out(served, monkeypatch, host, cause):
    _endpoint(monkeypatch, f"http://127.0.0.1:{_closed_port()}" if host == "closed port" else f"http://{host}")
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        vfe_hub.load(NAME)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 5, f"took {elapsed:.1f} s"  # huggingface_hub alone retries for about half a minute
    assert cause in message and SPEC.weights.filename in message
    assert all(way in message for way in ("weights=", "HF_HUB_OFFLINE=1", "HF_ENDPOINT"))


def test_unreachable_hub_names_where_the_original_release_is(served, monkeypatch):
    spec = registry.get_spec(NAME)
    originals = {"epoch_6_model.pth": "https://example.org/release"}
    monkeypatch.setitem(registry.MODELS, NAME, dataclasses.replace(
        spec, weights=dataclasses.replace(spec.weights, originals=originals)))
    _endpoint(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(DownloadError, match="original release \\(epoch_6_model.pth: https://example.org/release\\)"):
        vfe_hub.load(NAME)


def test_offline_without_cache_names_offline_mode_and_the_ways_out(served, monkeypatch):
    hub_server, _ = served
    _offline(monkeypatch)
    with pytest.raises(DownloadError) as info:
        vfe_hub.load(NAME)
    assert "HF_HUB_OFFLINE is set (offline mode) and the file is not in the cache" in str(info.value)
    assert "weights=" in str(info.value) and not hub_server.requests


def test_cached_weights_load_with_the_hub_unreachable(served):
    hub_server, commit = served
    vfe_hub.load(NAME)
    # converted again from the original in the Hub cache
    hub.converted_path(SPEC.name, SPEC.weights, commit[:7]).unlink()
    hub_server.stop()
    start = time.monotonic()
    assert vfe_hub.load(NAME).provenance()["revision"] == commit[:7]
    assert time.monotonic() - start < 20


# ------------------------------------------------------------------------------------------------ the cache


def test_damaged_conversion_is_rebuilt_from_the_original(served, original):
    hub_server, commit = served
    vfe_hub.load(NAME)
    cached = hub.converted_path(SPEC.name, SPEC.weights, commit[:7])
    record = json.loads(cached.with_suffix(".json").read_text())
    good = cached.read_bytes()
    key = "detector.roi_head.bbox_head.fc_cls.weight"
    for damage in (good[:-1] + bytes([good[-1] ^ 1]), good[: len(good) // 2]):  # a flipped bit, a truncation
        cached.write_bytes(damage)
        model = vfe_hub.load(NAME)
        assert torch.equal(model.box_head.cls_score.weight, original[0][key])
        assert hub.sha256_of(cached) == record["converted_sha256"]
    downloads = [r for r in hub_server.requests if r[0] == "GET"]
    assert len(downloads) == 1  # rebuilt from the original in the Hugging Face cache, not downloaded again
    cached.with_suffix(".json").write_text("{not json")
    assert torch.equal(vfe_hub.load(NAME).box_head.cls_score.weight, original[0][key])
    assert json.loads(cached.with_suffix(".json").read_text())["converted_sha256"] == record["converted_sha256"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(served, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        hub.atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
        vfe_hub.load(NAME)
    finally:
        os.umask(previous)
    cached = hub.converted_path(SPEC.name, SPEC.weights, served[1][:7])
    for path in (tmp_path / "a.txt", cached, cached.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
