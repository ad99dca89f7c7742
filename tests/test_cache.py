"""The cache: data files fetched by URL follow the weights' switches, and ``vfe-hub cache list | verify | prune``
after real loads through the test Hub."""
from __future__ import annotations

import hashlib
import socket
import time

import pytest
import torch
from huggingface_hub import constants, hf_hub_download

import vfe_hub
from test_load import NAME, SPEC, original, served  # noqa: F401 - fixtures: MAMBA's checkpoint on the test Hub
from vfe_hub import cache, cli, hub, registry
from vfe_hub.errors import ChecksumError, DownloadError, UnknownModelError

DATA = b"motion table\n" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def fetched(github_raw):
    """``DATA`` served at a pinned GitHub-like path; returns its URL."""
    target = github_raw / "owner" / "repo" / "raw" / ("0" * 40) / "data" / "table.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(DATA)
    return hub.github_url("owner/repo", "0" * 40, "data/table.bin")


def _fetch(url: str):
    return hub.fetch_url(url, sha256=SHA, filename="table.bin")


# ------------------------------------------------------------------------------------------------ fetch_url


def test_fetched_file_is_cached_checked_and_redownloaded_when_damaged(fetched, github_raw):
    path = _fetch(fetched)
    assert path.read_bytes() == DATA and path.is_relative_to(hub.cache_dir())
    path.write_bytes(DATA[:-1] + b"?")
    assert _fetch(fetched).read_bytes() == DATA  # damaged in the cache: downloaded again
    (github_raw / "owner").rename(github_raw / "gone")
    assert _fetch(fetched).read_bytes() == DATA  # intact in the cache: no request needed


def test_fetch_fails_at_once_and_offline_makes_no_request(fetched, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv(hub.GITHUB_ENDPOINT_ENV, f"http://127.0.0.1:{closed}")
    url = hub.github_url("owner/repo", "0" * 40, "data/table.bin")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="127.0.0.1 is unreachable") as info:
        _fetch(url)
    assert time.monotonic() - start < 5 and hub.GITHUB_ENDPOINT_ENV in str(info.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set, so nothing is downloaded"):
        _fetch(url)  # the offline switch answers before any connection is tried (the port is closed either way)


def test_fetch_refuses_wrong_bytes_and_http_errors(fetched):
    with pytest.raises(ChecksumError, match=SHA):
        hub.fetch_url(fetched, sha256=hashlib.sha256(b"other").hexdigest(), filename="table.bin")
    with pytest.raises(DownloadError, match="HTTP 404"):
        _fetch(fetched.replace("table.bin", "missing.bin"))
    assert not list(hub.cache_dir().rglob("*.bin"))


# ------------------------------------------------------------------------------------------------ vfe-hub cache


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["cache", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cache_list_verify_prune(served, fetched, github_raw, monkeypatch, capsys):
    hub_server, commit = served
    vfe_hub.load(NAME)
    _fetch(fetched)
    hub_server.add_file("someone/other", "other.bin", b"not ours")
    other = hf_hub_download("someone/other", "other.bin")

    files = cache.entries()
    kinds = {f.kind: f for f in files}
    assert sorted(kinds) == ["converted", "files", "original"] and len(files) == 3
    converted = hub.converted_path(SPEC.name, SPEC.weights, commit[:7])
    assert kinds["converted"].path == converted and kinds["converted"].models == (NAME,)
    assert kinds["converted"].size == converted.stat().st_size + converted.with_suffix(".json").stat().st_size
    assert kinds["original"].models == (NAME,) and kinds["original"].path.name == "epoch_6_model.pth"
    assert kinds["original"].size == kinds["original"].blob.stat().st_size > 0
    assert [f.kind for f in cache.entries([NAME])] == ["converted", "original"]

    code, out, _ = _cli(capsys, "list")
    assert code == 0 and NAME in out and str(converted) in out and "3 files" in out and "other.bin" not in out
    code, out, _ = _cli(capsys, "verify")
    assert code == 0 and out.count("ok ") == 3

    blob = kinds["original"].blob
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, out, err = _cli(capsys, "verify", NAME)
    assert code == 1 and "DAMAGED   original" in out and "1 damaged file(s)" in err and "prune" in err

    code, _, err = _cli(capsys, "prune")
    assert code == 1 and "--all" in err
    with pytest.raises(UnknownModelError, match=NAME):
        cache.entries(["mamba_r101"])

    code, out, _ = _cli(capsys, "prune", NAME)
    freed = kinds["converted"].size + kinds["original"].size
    assert code == 0 and f"freed {cache.human_size(freed)} in 2 files" in out and str(converted) in out
    assert not converted.exists() and not blob.exists() and not kinds["original"].path.exists()
    assert [f.kind for f in cache.entries()] == ["files"]

    code, out, _ = _cli(capsys, "prune", "--all")
    assert code == 0 and "in 1 files" in out and cache.entries() == []
    assert hub.sha256_of(other) == hashlib.sha256(b"not ours").hexdigest()  # other libraries' files stay

    assert vfe_hub.load(NAME).provenance()["revision"] == commit[:7]  # everything comes back on the next load
    assert sorted(f.kind for f in cache.entries()) == ["converted", "original"]


def test_a_conversion_cached_before_they_were_kept_per_model_belongs_to_the_models_of_its_file(fake_hub, tmp_path,
                                                                                              monkeypatch, capsys):
    """Conversions were once cached per file, ``converted/<repo>/<revision>/<file>.safetensors``; such a leftover
    belongs to every model of that file (GTR and the Amodal Expander's 20k variant share one), so `vfe-hub cache
    prune` of either removes it."""
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    w = registry.get_spec("gtr_dr2101_tao").weights
    sharing = {n for n, s in registry.MODELS.items() if (s.weights.repo_id, s.weights.filename) == (w.repo_id,
                                                                                                    w.filename)}
    assert sharing == {"gtr_dr2101_tao", "amodal_expander_dr2101_tao_amodal.20k"}
    old = hub.cache_dir() / "converted" / w.repo_id / w.revision / f"{w.filename}.safetensors"
    hub.save_converted({"w": torch.zeros(2)}, old, hub.Provenance(f"hf://{w.repo_id}/{w.filename}", w.revision,
                                                                  "0" * 64))
    [entry] = cache.entries(["amodal_expander_dr2101_tao_amodal.20k"])
    assert entry.path == old and set(entry.models) == sharing and entry.companions == (old.with_suffix(".json"),)
    code, out, _ = _cli(capsys, "list")
    assert code == 0 and f"{','.join(entry.models)} " in out and str(old) in out  # the owners, not "-"
    code, out, _ = _cli(capsys, "prune", "gtr_dr2101_tao")
    assert code == 0 and "in 1 files" in out and not old.exists() and not old.with_suffix(".json").exists()
