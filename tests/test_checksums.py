"""A download whose sha256 is not the pinned one: a damaged download (run again) is told apart from a server file
that is not the pinned one (running again cannot help), for Hub files and for files fetched by URL; a checkpoint
that pickles a class this environment cannot import, or one the safe reader refuses, says so."""
from __future__ import annotations

import hashlib
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from vfe_hub import hub
from vfe_hub.errors import ChecksumError, CorruptWeightsError
from vfe_hub.registry import WeightsSpec

REPO, FILE = "someone/weights", "model.pth"
DATA = bytes(range(256)) * 64
SHA = hashlib.sha256(DATA).hexdigest()


def spec(commit: str, sha256: str) -> WeightsSpec:
    return WeightsSpec(REPO, FILE, commit, "mmdet_v2", sha256=sha256)


def cached_blobs() -> list[Path]:
    return [p for p in Path(constants.HF_HUB_CACHE).rglob("blobs/*") if not p.name.endswith(".incomplete")]


def test_a_hub_download_damaged_in_transfer_says_run_again(fake_hub):
    commit = fake_hub.add_file(REPO, FILE, DATA)
    fake_hub.corrupt(REPO, FILE)  # the bytes change on the way; the Hub's record (X-Linked-Etag) is the file's
    with pytest.raises(ChecksumError, match=f"was damaged in transfer: .*record of it {SHA}.*run again") as error:
        hub.download(spec(commit, SHA))
    assert "will not help" not in str(error.value) and not cached_blobs()


def test_a_hub_file_that_is_not_the_pinned_one_says_running_again_will_not_help(fake_hub):
    commit = fake_hub.add_file(REPO, FILE, DATA)
    pinned = "0" * 64
    with pytest.raises(ChecksumError, match=f"is not the pinned file: the Hub serves sha256 {SHA} .*pins {pinned}"
                                            ".*Running again will not help: check HF_ENDPOINT") as error:
        hub.download(spec(commit, pinned))
    assert "run again" not in str(error.value) and not cached_blobs()


@dataclass
class Server:
    url: str
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture
def served(monkeypatch, tmp_path) -> Iterator[Server]:
    """A server on 127.0.0.1 answering each GET of ``url`` with the next of its ``bodies`` (the last one again when
    they run out); the vfe_hub cache in ``tmp_path``."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield Server(f"http://127.0.0.1:{server.server_port}/table.mat", bodies)
    server.shutdown()
    server.server_close()
    thread.join()


def damaged(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def test_a_url_damaged_once_is_downloaded_again(served):
    served.bodies += [damaged(DATA, 5), DATA]
    path = hub.fetch_url(served.url, sha256=SHA, filename="table.mat")
    assert path.read_bytes() == DATA


def test_a_url_damaged_twice_says_run_again(served, tmp_path):
    served.bodies += [damaged(DATA, 5), damaged(DATA, 9)]
    with pytest.raises(ChecksumError, match=r"damaged in transfer twice .*run again") as error:
        hub.fetch_url(served.url, sha256=SHA, filename="table.mat")
    assert "will not help" not in str(error.value) and not list((tmp_path / "cache").rglob("table.mat"))


def test_a_url_serving_another_file_says_running_again_will_not_help(served, tmp_path):
    other = damaged(DATA, 5)
    served.bodies.append(other)
    with pytest.raises(ChecksumError, match=f"serves a file with sha256 {hashlib.sha256(other).hexdigest()} "
                                            rf"\(twice the same bytes\), not the pinned {SHA}: .*will not help"):
        hub.fetch_url(served.url, sha256=SHA, filename="table.mat")
    assert not list((tmp_path / "cache").rglob("table.mat"))


def test_a_checkpoint_pickling_a_class_that_cannot_be_imported_reads(tmp_path, monkeypatch):
    module = types.ModuleType("retired_toolbox")

    class Config:
        pass

    Config.__module__, Config.__qualname__ = "retired_toolbox", "Config"
    module.Config = Config
    monkeypatch.setitem(sys.modules, "retired_toolbox", module)
    torch.save({"meta": {"config": Config()}, "state_dict": {"w": torch.zeros(2)}}, tmp_path / "release.pth")
    monkeypatch.delitem(sys.modules, "retired_toolbox")  # as on a machine without the training code base
    loaded = hub.load_checkpoint(tmp_path / "release.pth")  # the class is never looked up: nothing to import
    assert loaded["meta"]["config"].name == "retired_toolbox.Config" and torch.equal(loaded["state_dict"]["w"],
                                                                                    torch.zeros(2))


class _Runs:
    """Unpickling it would run ``open(marker, "w")``: the file the test checks is not created."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_checkpoint_with_objects_of_other_classes_is_read_without_running_them(tmp_path):
    """``torch.load(weights_only=True)`` refuses a class in ``meta``: the file is read again with an inert
    placeholder in its place (the tensors and plain data as they are), and no code of the file runs."""
    from original_layouts import PickledConfig

    from vfe_hub.unpickle import Placeholder

    marker = tmp_path / "ran"
    meta = {"config": PickledConfig("model = dict()"), "hook": _Runs(str(marker)), "CLASSES": ("cat", "dog")}
    torch.save({"meta": meta, "state_dict": {"w": torch.arange(3.0)}}, tmp_path / "release.pth")
    loaded = hub.load_checkpoint(tmp_path / "release.pth")
    config, hook = loaded["meta"]["config"], loaded["meta"]["hook"]
    assert isinstance(config, Placeholder) and config.name == "original_layouts.PickledConfig"
    assert config.state == {"text": "model = dict()"} and isinstance(hook, Placeholder) and hook.name == "io.open"
    assert not marker.exists() and loaded["meta"]["CLASSES"] == ("cat", "dog")
    assert torch.equal(hub.read_checkpoint(tmp_path / "release.pth")["w"], torch.arange(3.0))
    assert not marker.exists()
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x02garbage" * 8)  # a damaged file keeps the plain question
    with pytest.raises(CorruptWeightsError, match="completely downloaded"):
        hub.load_checkpoint(tmp_path / "garbage.pth")
