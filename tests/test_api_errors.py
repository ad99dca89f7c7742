"""Arguments of load / pipeline / evaluate: the device by default and by name, misspelt keywords, broken weight
folders, and a loaded model given to a pipeline. Every mistake is a VfeHubError naming the argument and the fix,
raised before anything is downloaded."""
from __future__ import annotations

import json

import pytest
import torch

import vfe_hub
from small_models import mamba
from vfe_hub import api, hub
from vfe_hub.errors import CorruptWeightsError, DatasetError, UnknownArgumentError, VfeHubError

NAME = "mamba_r101_dc5_vid"


@pytest.fixture(scope="module")
def model():
    """MAMBA with random weights in vfe_hub's layout (small input size)."""
    return mamba()


@pytest.fixture
def folder(model, tmp_path):
    """A vfe_hub weights folder of ``model``."""
    hub.write_model_dir(tmp_path / "w", model.state_dict(), {"name": NAME}, card="")
    return tmp_path / "w"


def _machine(monkeypatch, cuda: int = 0, mps: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_default_device_is_the_gpu_when_there_is_one(monkeypatch, folder):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert vfe_hub.load(weights=folder).device.type == expected
    _machine(monkeypatch, cuda=2)
    assert api.resolve_device(None) == torch.device("cuda")
    assert api.resolve_device("cuda:1") == torch.device("cuda:1")
    _machine(monkeypatch, cuda=0)
    assert api.resolve_device(None) == torch.device("cpu")


@pytest.mark.parametrize(("device", "cuda", "mps", "why", "valid"), [
    ("gpu", 0, False, "not a device name", "'cpu', or None"),
    ("gpu", 1, False, "not a device name", "'cpu', 'cuda', 'cuda:0', or None"),
    ("cuda", 0, False, "CUDA is not available", "valid here: 'cpu', or None"),
    ("cuda:3", 2, False, "has 2 CUDA device(s)", "'cpu', 'cuda', 'cuda:0', 'cuda:1', or None"),
    ("mps", 0, False, "MPS) is not available", "valid here: 'cpu', or None"),
    ("meta", 0, True, "not meta", "'cpu', 'mps', or None"),
])
def test_unusable_devices_name_the_valid_ones(monkeypatch, device, cuda, mps, why, valid):
    _machine(monkeypatch, cuda, mps)
    with pytest.raises(VfeHubError) as info:
        vfe_hub.load(NAME, device=device)  # refused before any download (there is no Hub here)
    assert why in str(info.value) and valid in str(info.value) and repr(device) in str(info.value)


def test_misspelt_keywords_suggest_load_parameters_and_config_keys():
    with pytest.raises(UnknownArgumentError, match="'devcie' \\(did you mean 'device'\\?\\)") as info:
        vfe_hub.load(NAME, devcie="cpu")
    assert isinstance(info.value, TypeError) and "seed" in str(info.value) and "weights" in str(info.value)
    with pytest.raises(UnknownArgumentError, match="'sead' \\(did you mean 'seed'\\?\\)"):
        vfe_hub.load(NAME, sead=1)


def test_broken_config_json_names_the_file(folder):
    config = folder / "config.json"
    good = config.read_text()
    config.write_text(good[:-10])
    for call in (lambda: vfe_hub.load(weights=folder), lambda: vfe_hub.load(NAME, weights=folder)):
        with pytest.raises(CorruptWeightsError, match="config.json is not valid JSON"):
            call()
    config.write_text(json.dumps({k: v for k, v in json.loads(good).items() if k != "name"}))
    with pytest.raises(CorruptWeightsError, match="config.json is not a vfe_hub config: it lacks 'name'"):
        vfe_hub.load(weights=folder)
    config.write_text(json.dumps({k: v for k, v in json.loads(good).items() if k != "sha256"}))
    with pytest.raises(CorruptWeightsError, match="lacks 'sha256'"):
        vfe_hub.load(NAME, weights=folder)
    config.write_text("[1, 2]")
    with pytest.raises(CorruptWeightsError, match="holds a JSON list"):
        vfe_hub.load(weights=folder)


def test_evaluate_names_missing_and_unknown_arguments(model):
    with pytest.raises(DatasetError, match="needs root=<the ILSVRC folder"):
        model.evaluate("imagenet_vid_val")
    with pytest.raises(DatasetError, match="needs root=<the COCO 2017 folder"):
        model.evaluate("lvis_v1_val", limit=3)
    with pytest.raises(UnknownArgumentError, match="'roots' \\(did you mean 'root'\\?\\)"):
        model.evaluate("imagenet_vid_val", roots="data")


def test_pipeline_applies_or_refuses_arguments_for_a_loaded_model(model, monkeypatch):
    piped = vfe_hub.pipeline("video-object-detection", model=model, device="cpu", dtype="bfloat16")
    assert piped.model is model and model.dtype == torch.bfloat16 and model.device.type == "cpu"
    model.dtype = torch.float32
    with pytest.raises(VfeHubError, match="float16"):
        vfe_hub.pipeline("video-object-detection", model=model, dtype="int8")
    _machine(monkeypatch, cuda=0)
    with pytest.raises(VfeHubError, match="CUDA is not available"):
        vfe_hub.pipeline("video-object-detection", model=model, device="cuda")
    for refused in ({"weights": "w"}, {"revision": "abc"}, {"seed": 1}):
        with pytest.raises(VfeHubError, match=f"cannot apply {next(iter(refused))}: these take effect when loading"):
            vfe_hub.pipeline("video-object-detection", model=model, **refused)
