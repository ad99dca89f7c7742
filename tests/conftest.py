# ---------------------------------------------------------------------------------------------
# Fake Hugging Face Hub (tests/hubserver.py): `fake_hub` fixture.
# ---------------------------------------------------------------------------------------------
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.hf_api
import huggingface_hub.utils._cache_manager
import pytest
import torch
from huggingface_hub import constants
from benchmark_layouts import write_vid
from driveserver import FakeDrive
from hubserver import FakeHub
from devices import device_under_test

from vfe_hub.text.tokenizer import CLIP_COMMIT, CLIP_REPO, VOCAB_FILENAME


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A started `FakeHub`, with huggingface_hub pointed at it and at a fresh cache in `tmp_path`.

    huggingface_hub 2.4 reads its settings from the environment once, at import, into module
    constants (`constants.ENDPOINT`, `constants.HF_HUB_OFFLINE`, `constants.HF_HUB_CACHE`, ...), and
    a few modules copy them further at import (`hf_api.api`, the module-level `HfApi` behind
    `huggingface_hub.upload_folder` & co, keeps the endpoint; `scan_cache_dir` keeps the cache dir;
    `hf_hub_url` formats `constants.HUGGINGFACE_CO_URL_TEMPLATE`). Setting the environment variables
    therefore does not reach an already imported huggingface_hub, so both are done: the variables
    (for subprocesses and code reading them at call time, like the token lookup) and the constants
    (for this process). Telemetry is disabled through the constant too: otherwise the first request
    also fetches `/api/agent-harnesses` from the endpoint. Xet is disabled so that uploads use the
    git-LFS protocol the fake Hub speaks. A test that wants offline mode sets both
    `HF_HUB_OFFLINE=1` and `constants.HF_HUB_OFFLINE = True`.
    """
    hub = FakeHub()
    hub.start()
    hf_home = tmp_path / "hf_home"
    cache = hf_home / "hub"
    env = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    patched = {
        "ENDPOINT": hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.endpoint)
    monkeypatch.setattr(huggingface_hub.utils._cache_manager, "HF_HUB_CACHE", str(cache))
    yield hub
    hub.stop()


# ---------------------------------------------------------------------------------------------
# A static file server standing in for github.com (pinned raw files): `github_raw` fixture.
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def github_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Serves ``<yielded root>/<owner>/<repo>/raw/<commit>/<path>`` on 127.0.0.1 as github.com would, with
    ``VFE_HUB_GITHUB_ENDPOINT`` pointed at it and the vfe_hub cache in ``tmp_path``."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("VFE_HUB_GITHUB_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield root
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def github(github_raw: Path) -> Path:
    """Where the test GitHub serves CLIP's vocabulary from."""
    target = github_raw / CLIP_REPO / "raw" / CLIP_COMMIT / "clip" / VOCAB_FILENAME
    target.parent.mkdir(parents=True)
    return target


# ---------------------------------------------------------------------------------------------
# A generated ImageNet VID layout (tests/benchmark_layouts.py), shared by the evaluation tests.
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vid_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ILSVRC2015")
    write_vid(root)
    return root


# ---------------------------------------------------------------------------------------------
# A stand-in for Google Drive behind an HTTPS proxy (tests/driveserver.py): `fake_drive` fixture.
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDrive]:
    """A started `FakeDrive` that gdown reaches through the standard variables (``HTTPS_PROXY`` names it,
    ``REQUESTS_CA_BUNDLE`` its test CA), with the vfe_hub cache in ``tmp_path`` and offline mode off."""
    drive = FakeDrive()
    drive.start()
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, drive.proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(drive.write_ca(tmp_path / "drive-ca.pem")))
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield drive
    drive.stop()
# The device of the model and engine tests: `device` fixture (VFE_HUB_TEST_DEVICE, default cpu).
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def device() -> torch.device:
    """The device named by ``VFE_HUB_TEST_DEVICE`` (default ``cpu``); a test using it skips, saying why, where this
    machine lacks that device. The models of ``small_models`` are built on it too."""
    return device_under_test()
