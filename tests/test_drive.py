"""Original releases on Google Drive through the real gdown client against the test Drive on 127.0.0.1
(tests/driveserver.py): DetPro and BAGS by name (download with the large-file confirmation, strict conversion,
cache, offline), pins and the record of unpinned files, Drive's failure pages, and the Hub taking over once the
converted repository is pinned."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import vfe_hub
from media import photo, write_image
from original_layouts import PickledConfig
from small_models import BAGS, DETPRO, bags_state, tiny_detpro_spec, write_detpro_release
from vfe_hub import cache, cli, drive, hub, registry, weights
from vfe_hub.errors import (ChecksumError, ConversionError, DownloadError, DriveAccessError, DrivePageError,
                            DriveQuotaError, IncompleteDownloadError)
from vfe_hub.registry import UNPINNED, Asset, DriveFile, DriveRelease

FILE_ID, FOLDER_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345", "1FoLdErAbCdEfGhIjKlMnOpQrStUvWxYz"
REPO = Path(__file__).resolve().parents[1]
DATA = bytes(range(256)) * 4096  # 1 MiB: the virus-scan confirmation page comes first


def _files(root: Path) -> list[Path]:
    """The files in the cache ``root``, but the empty lock files of :func:`vfe_hub.hub.cache_lock`."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != hub.LOCKS)


def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


# ------------------------------------------------------------------------------------------------ one file


def test_large_file_is_confirmed_checked_recorded_and_cached(fake_drive):
    fake_drive.add_file(FILE_ID, "release.pth", DATA)
    file = DriveFile("release.pth", UNPINNED, id=FILE_ID)
    got = drive.fetch(file)
    assert got.path.read_bytes() == DATA and got.path == drive.cached_path(file)
    assert got.sha256 == hashlib.sha256(DATA).hexdigest() and got.size == len(DATA) and got.id == FILE_ID
    hosts = [(host, path.split("?")[0]) for host, path in fake_drive.requests]
    assert hosts == [("drive.google.com", "/uc"), ("drive.usercontent.google.com", "/download"),
                     ("drive.usercontent.google.com", "/download")]
    assert "confirm=t" in fake_drive.requests[-1][1]  # gdown submitted the virus-scan page's form
    record = drive.read_record(got.path)
    assert (record["sha256"], record["size"], record["id"], record["pinned"]) == (got.sha256, len(DATA), FILE_ID,
                                                                                   False)
    assert _files(hub.cache_dir()) == [got.path, drive.record_path(got.path)]
    seen = len(fake_drive.requests)
    assert drive.fetch(file).sha256 == got.sha256 and len(fake_drive.requests) == seen  # read from the cache


def test_unpinned_file_that_changed_on_drive_is_refused(fake_drive):
    fake_drive.add_file(FILE_ID, "small.pt", b"first")
    file = DriveFile("small.pt", UNPINNED, id=FILE_ID)
    first = drive.fetch(file)
    first.path.write_bytes(b"damaged")  # a damaged copy is downloaded again, and must match the record
    assert drive.fetch(file).path.read_bytes() == b"first"
    first.path.unlink()
    fake_drive.add_file(FILE_ID, "small.pt", b"second")
    with pytest.raises(ChecksumError, match="as recorded at its first download; the file is unpinned") as info:
        drive.fetch(file)
    assert FILE_ID in str(info.value) and str(drive.record_path(first.path)) in str(info.value)
    assert _files(hub.cache_dir()) == [drive.record_path(first.path)]  # the record stays; nothing else


def test_the_record_of_a_refused_file_is_pruned_with_its_model(fake_drive, capsys):
    """After a changed unpinned file was refused, its record stays (the file does not): it belongs to the models of
    the file, so the `vfe-hub cache prune <model>` the error names removes it."""
    embeddings = registry.get_spec(DETPRO).weights.drive.inputs["embeddings"]
    fake_drive.add_file(embeddings.id, embeddings.filename, b"first")
    path = drive.fetch(embeddings).path
    path.unlink()
    fake_drive.add_file(embeddings.id, embeddings.filename, b"second")
    with pytest.raises(ChecksumError, match=f"run `vfe-hub cache prune {DETPRO}`"):
        drive.fetch(embeddings)
    [entry] = cache.entries([DETPRO])
    assert (entry.kind, entry.path, entry.models, entry.expected) == ("drive", drive.record_path(path), (DETPRO,),
                                                                     None)
    assert cli.main(["cache", "list", DETPRO]) == 0 and str(drive.record_path(path)) in capsys.readouterr().out
    assert cli.main(["cache", "prune", DETPRO]) == 0 and "in 1 files" in capsys.readouterr().out
    assert _files(hub.cache_dir()) == []
    assert drive.fetch(embeddings).path.read_bytes() == b"second"  # the change is accepted and recorded


def test_pinned_file_is_checked_against_its_pin(fake_drive):
    fake_drive.add_file(FILE_ID, "small.pt", b"pinned bytes")
    pinned = DriveFile("small.pt", hashlib.sha256(b"pinned bytes").hexdigest(), 12, id=FILE_ID)
    assert drive.read_record(drive.fetch(pinned).path)["pinned"] is True
    drive.cached_path(pinned).unlink()
    wrong = dataclasses.replace(pinned, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="0{64} \\(pinned by the registry\\)"):
        drive.fetch(wrong)
    assert not drive.cached_path(pinned).exists()
    with pytest.raises(ChecksumError, match="has 12 bytes, not 13"):
        drive.fetch(dataclasses.replace(pinned, size=13))


def test_a_file_put_in_the_cache_by_hand_is_checked_and_recorded(fake_drive):
    """The manual route of every Drive error: a file downloaded in a browser and put where the error says."""
    file = DriveFile("small.pt", hashlib.sha256(b"by hand").hexdigest(), 7, id=FILE_ID)
    path = drive.cached_path(file)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"by hand")
    assert drive.fetch(file).path == path and fake_drive.requests == []
    assert drive.read_record(path)["sha256"] == file.sha256


@pytest.mark.parametrize(("failure", "error", "needle"), [
    ("quota", DriveQuotaError, "download quota is exceeded"),
    ("removed", DriveAccessError, "was removed, or is not shared"),
    ("denied", DriveAccessError, "was removed, or is not shared"),
    ("html", DrivePageError, "HTML page instead of the file"),
    ("truncate", IncompleteDownloadError, "ended early"),
    ("dropped", IncompleteDownloadError, "ended early"),  # requests' ChunkedEncodingError, which gdown lets through
])
def test_drive_failures_name_the_file_and_the_manual_route_and_leave_nothing(fake_drive, failure, error, needle):
    fake_drive.add_file(FILE_ID, "release.pth", DATA)
    fake_drive.fail(FILE_ID, failure)
    file = DriveFile("release.pth", UNPINNED, id=FILE_ID)
    with pytest.raises(error, match=needle) as info:
        drive.fetch(file)
    message = str(info.value)
    assert FILE_ID in message and f"https://drive.google.com/file/d/{FILE_ID}/view" in message
    assert str(drive.cached_path(file)) in message and "vfe-hub convert" in message
    assert _files(hub.cache_dir()) == []


def test_file_in_a_shared_folder_is_looked_up_by_name(fake_drive):
    fake_drive.add_file(FILE_ID, "pred_slice_with0.pt", b"slices")
    fake_drive.add_folder(FOLDER_ID, "BAGS files", [FILE_ID])
    got = drive.fetch(DriveFile("pred_slice_with0.pt", UNPINNED, folder=FOLDER_ID))
    assert got.id == FILE_ID and got.path.parent.name == FOLDER_ID and got.path.read_bytes() == b"slices"
    with pytest.raises(DriveAccessError, match="does not hold label2binlabel.pt \\(it lists pred_slice_with0.pt\\)"):
        drive.fetch(DriveFile("label2binlabel.pt", UNPINNED, folder=FOLDER_ID))
    with pytest.raises(DriveAccessError, match="would not list the folder"):
        drive.fetch(DriveFile("label2binlabel.pt", UNPINNED, folder="1NoSuChFoLdErAbCdEfGhIjKlMnOpQrS"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_drive_fails_at_once_and_offline_mode_asks_nothing(fake_drive, monkeypatch):
    file = DriveFile("release.pth", UNPINNED, id=FILE_ID)
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="127.0.0.1 is unreachable \\(ProxyError") as info:
        drive.fetch(file)
    assert time.monotonic() - start < 5 and "HTTPS_PROXY" in str(info.value) and FILE_ID in str(info.value)
    _offline(monkeypatch)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set, so nothing is downloaded"):
        drive.fetch(file)
    assert fake_drive.requests == [] and _files(hub.cache_dir()) == []


def test_cache_lists_and_verifies_drive_originals_against_their_record(fake_drive, capsys):
    embeddings = registry.get_spec(DETPRO).weights.drive.inputs["embeddings"]
    fake_drive.add_file(embeddings.id, embeddings.filename, b"embeddings")
    path = drive.fetch(embeddings).path
    [entry] = cache.entries([DETPRO])
    assert (entry.kind, entry.path, entry.models) == ("drive", path, (DETPRO,))
    assert entry.expected == ("sha256", hashlib.sha256(b"embeddings").hexdigest())
    assert cli.main(["cache", "verify", DETPRO]) == 0 and "ok" in capsys.readouterr().out
    path.write_bytes(b"replaced")
    assert cli.main(["cache", "verify", DETPRO]) != 0
    printed = capsys.readouterr()
    assert f"DAMAGED   drive      {path}" in printed.out and "1 damaged file" in printed.err


# ------------------------------------------------------------------------------------------------ by name


def test_load_by_name_names_drive_failure(fake_drive):
    """Nothing of DetPro is served: the first file's failure reaches ``load`` with its Drive id and the manual
    route; nothing is cached."""
    spec = registry.get_spec(DETPRO)
    with pytest.raises(DriveAccessError) as info:
        vfe_hub.load(DETPRO)
    assert spec.weights.drive.checkpoint.id in str(info.value)
    assert _files(hub.cache_dir()) == []


def _serve_detpro(fake_drive, meta: dict) -> DriveRelease:
    """DetPro's checkpoint (``meta``, no tensors) and its class embeddings on the test Drive."""
    w = registry.get_spec(DETPRO).weights.drive
    buffer = io.BytesIO()
    torch.save({"meta": meta, "state_dict": {}}, buffer)
    fake_drive.add_file(w.checkpoint.id, w.checkpoint.filename, buffer.getvalue())
    embeddings = io.BytesIO()
    torch.save(torch.randn(1203, 512), embeddings)
    fake_drive.add_file(w.inputs["embeddings"].id, w.inputs["embeddings"].filename, embeddings.getvalue())
    return w


def test_a_release_whose_meta_holds_objects_is_read_without_unpickling_them(fake_drive, caplog):
    """A checkpoint whose meta holds a Python object (mmcv's Config) is read with an inert placeholder in its place,
    never unpickled: here it reaches the strict conversion, which its missing tensors fail."""
    _serve_detpro(fake_drive, {"config": PickledConfig("model = dict()")})
    with caplog.at_level(logging.INFO, logger="vfe_hub"), pytest.raises(ConversionError, match="does not fit"):
        vfe_hub.load(DETPRO)
    assert "not rebuilt (original_layouts.PickledConfig): read as inert placeholders" in caplog.text


def test_a_release_that_does_not_convert_strictly_is_removed(fake_drive):
    """A checkpoint that reads but does not convert strictly (no tensors): the unpinned files are removed with their
    records, and the error names the file and why."""
    w = _serve_detpro(fake_drive, {"config": "model = dict()"})
    with pytest.raises(ConversionError) as info:
        vfe_hub.load(DETPRO)
    message = str(info.value)
    assert w.checkpoint.filename in message and w.checkpoint.id in message and "does not fit the model" in message
    assert "Removed from the cache" in message and "vfe-hub convert" in message
    assert _files(hub.cache_dir()) == []


def _serve(fake_drive, file: DriveFile, data: bytes, name: str | None = None) -> str:
    fake_drive.add_file(file.id, name or file.filename, data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_detpro_by_name_from_drive_then_the_cache_then_the_hub(fake_drive, fake_hub, tmp_path, monkeypatch, caplog):
    """First load: the checkpoint (through the large-file confirmation) and the embeddings from Drive, the LVIS v1
    categories from the package, converted strictly and cached. Then the cache alone answers, with the test Drive
    stopped and offline. Publishing the cached folder and pinning its commit and sha256 moves the model to the
    Hub with no other change."""
    spec = tiny_detpro_spec()
    monkeypatch.setitem(registry.MODELS, DETPRO, spec)
    categories = registry.lvis_v1_categories()
    release = write_detpro_release(tmp_path / "release", text_tower=(64, 2), categories=categories)  # Config object
    w = spec.weights.drive
    data = release["checkpoint"].read_bytes()
    sha = _serve(fake_drive, w.checkpoint, data, name="detpro_ens_20e.pth")
    _serve(fake_drive, w.inputs["embeddings"], release["embeddings"].read_bytes())

    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        model = vfe_hub.load(DETPRO)
    assert re.search(f"{DETPRO}: its original release on Google Drive is unpinned \\(checkpoint.pth {sha[:12]}",
                     caplog.text)
    assert any("confirm=t" in path for _, path in fake_drive.requests)
    assert torch.equal(model.rpn.bbox_pred.weight, release["state"]["rpn_head.rpn_reg.weight"])
    assert torch.equal(model.mask_head.conv_logits.weight, release["state"]["roi_head.mask_head.conv_logits.weight"])
    torch.testing.assert_close(model.class_embeddings,
                               torch.nn.functional.normalize(release["embeddings_tensor"][0], dim=1))
    assert model.class_names == tuple(c["name"] for c in categories)
    assert model.category_ids == [c["id"] for c in categories]
    assert torch.equal(model.novel, torch.tensor([c["frequency"] == "r" for c in categories]))
    provenance = {"weights": f"gdrive://{w.checkpoint.id}/checkpoint.pth", "revision": None, "sha256": sha,
                  "size": len(data), "pinned": False}
    assert model.weights_provenance == provenance
    assert drive.read_record(drive.cached_path(w.checkpoint))["sha256"] == sha
    listed = {(f.kind, f.path.name) for f in cache.entries([DETPRO])}
    assert listed == {("drive", "checkpoint.pth"), ("drive", "iou_neg5_ens.pth"), ("converted", "model.safetensors"),
                      ("converted", "text_encoder.safetensors")}
    assert all(ok for _, ok in cache.verify(cache.entries([DETPRO])))
    folder = weights.drive_conversion_dir(spec)
    config, _ = hub.read_model_dir(folder)  # a complete vfe_hub folder, as `vfe-hub convert` writes it
    assert set(config["files"]) == {"text_encoder.safetensors"} and config["source"]["sha256"] == sha
    assert config["inputs"]["categories"]["file"] == "lvis_v1_categories.json"

    fake_drive.stop()
    seen = len(fake_drive.requests)
    again = vfe_hub.load(DETPRO)
    assert len(fake_drive.requests) == seen and again.weights_provenance == provenance
    assert torch.equal(again.rpn.bbox_pred.weight, model.rpn.bbox_pred.weight)
    _offline(monkeypatch)
    hubbed = torch.hub.load(str(REPO), DETPRO, source="local", trust_repo=True)
    piped = vfe_hub.pipeline("open-vocabulary-detection", model=DETPRO)
    assert hubbed.weights_provenance == piped.model.weights_provenance == provenance
    image, out = write_image(tmp_path / "street.png", photo("coffee", (96, 128))), tmp_path / "results.json"
    assert cli.main(["predict", DETPRO, str(image), "-o", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["provenance"]["sha256"] == sha and len(fake_drive.requests) == seen

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert cli.main(["publish", str(folder), spec.weights.repo_id]) == 0
    [commit] = fake_hub.commits(spec.weights.repo_id)
    assert set(fake_hub.files(spec.weights.repo_id)) == {"config.json", "model.safetensors", "README.md",
                                                         "text_encoder.safetensors"}  # not the cache's model.json
    published = dataclasses.replace(spec.weights, revision=commit[:7],
                                    sha256=hub.sha256_of(folder / "model.safetensors"))
    monkeypatch.setitem(registry.MODELS, DETPRO, dataclasses.replace(spec, weights=published))
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "fresh_cache"))  # nothing of the Drive route is at hand
    hubbed = vfe_hub.load(DETPRO)
    assert hubbed.weights_provenance == {"weights": f"hf://{spec.weights.repo_id}/model.safetensors",
                                         "revision": commit[:7], "sha256": published.sha256}
    assert torch.equal(hubbed.rpn.bbox_pred.weight, model.rpn.bbox_pred.weight)
    assert hubbed.class_names == model.class_names and len(fake_drive.requests) == seen


@pytest.mark.slow
def test_concurrent_loads_download_and_convert_once(fake_drive, tmp_path, monkeypatch):
    """Every rank of a job loads the model at the same moment (torchrun): one downloads and converts the release
    while the other waits for the lock, then reads that conversion; no temporary folder is left."""
    spec = tiny_detpro_spec()
    monkeypatch.setitem(registry.MODELS, DETPRO, spec)
    release = write_detpro_release(tmp_path / "release", text_tower=(64, 2), categories=registry.lvis_v1_categories(),
                                   pickled_config=False)
    w = spec.weights.drive
    _serve(fake_drive, w.checkpoint, release["checkpoint"].read_bytes())
    _serve(fake_drive, w.inputs["embeddings"], release["embeddings"].read_bytes())
    together = threading.Barrier(2)

    def load(_: int) -> vfe_hub.Detector:
        together.wait()
        return vfe_hub.load(DETPRO)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(load, range(2))
    asked = sorted(path for host, path in fake_drive.requests if host == "drive.google.com")
    assert asked == sorted(f"/uc?id={f.id}" for f in w.files())  # each file once
    assert first.weights_provenance == second.weights_provenance
    assert torch.equal(first.rpn.bbox_pred.weight, second.rpn.bbox_pred.weight)
    folder = weights.drive_conversion_dir(spec)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    assert set(hub.read_model_dir(folder)[0]["files"]) == {"text_encoder.safetensors"}  # complete


def test_a_folder_is_replaced_whole(tmp_path):
    """The cached conversion of a Drive release is written beside its place and moved there whole: a reader sees
    the old folder or the new one; a failed write leaves the old one."""
    target = tmp_path / "folder"
    target.mkdir()
    (target / "model.safetensors").write_text("old")
    with pytest.raises(RuntimeError, match="conversion failed"):
        with hub.atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_text("half")
            raise RuntimeError("conversion failed")
    assert [p.name for p in tmp_path.iterdir()] == ["folder"] and (target / "model.safetensors").read_text() == "old"
    with hub.atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("new")
        assert (target / "model.safetensors").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["folder"] and (target / "model.safetensors").read_text() == "new"
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # as a folder made by mkdir, not mkdtemp's 0700


@pytest.mark.slow
def test_bags_by_name_from_drive_with_the_group_files_of_the_shared_folder(fake_drive, monkeypatch):
    """BAGS's checkpoint by id, its group files looked up by name in the authors' shared folder; the second load
    asks nothing; after the cached files are gone, a checkpoint changed on Drive is refused (unpinned: it must be
    the one recorded at the first download)."""
    from test_bags import DOSSIER_SLICES, bags_group_files, lvis_v05_like_categories

    spec = registry.get_spec(BAGS)
    spec = dataclasses.replace(spec, config={**spec.config, "depth": 50})  # ResNeXt-50: a smaller file to serve
    monkeypatch.setitem(registry.MODELS, BAGS, spec)
    w = spec.weights.drive
    state = bags_state(seed=5, depth=50)
    classifier = state["bbox_head.2.fc_cls.weight"].clone()
    buffer = io.BytesIO()
    torch.save({"meta": {"mmdet_version": "1.0rc0+90e04fd", "config": "model = dict(type='HybridTaskCascade')",
                         "CLASSES": list(spec.classes)}, "state_dict": state}, buffer)
    del state
    data = buffer.getvalue()
    del buffer
    sha = _serve(fake_drive, w.checkpoint, data)
    table, slices = bags_group_files(lvis_v05_like_categories())
    ids = []
    for tensor, file in zip((table, slices), w.inputs["groups"]):
        saved = io.BytesIO()
        torch.save(tensor, saved)
        ids.append(f"1GrOuP{file.filename[:4]}AbCdEfGhIjKlMnOpQrStUv")
        fake_drive.add_file(ids[-1], file.filename, saved.getvalue())
    fake_drive.add_folder(w.inputs["groups"][0].folder, "BAGS", [*ids, FILE_ID])
    fake_drive.add_file(FILE_ID, "valsplit.pkl", b"not needed")

    model = vfe_hub.load(BAGS)
    assert model.weights_provenance["sha256"] == sha and model.weights_provenance["pinned"] is False
    assert torch.equal(model.label2binlabel, table) and model.pred_slice.tolist() == DOSSIER_SLICES
    assert torch.equal(model.box_heads.stages[2].cls_score.weight, classifier)
    assert not any("valsplit" in path or FILE_ID in path for _, path in fake_drive.requests)
    seen = len(fake_drive.requests)
    assert vfe_hub.load(BAGS).weights_provenance == model.weights_provenance and len(fake_drive.requests) == seen

    del model
    shutil.rmtree(weights.drive_conversion_dir(spec))
    drive.cached_path(w.checkpoint).unlink()
    changed = bytearray(data)
    changed[len(data) // 2] ^= 0xFF  # one byte of a tensor: a file of the same size
    _serve(fake_drive, w.checkpoint, bytes(changed))
    with pytest.raises(ChecksumError, match=f"not {sha} \\(as recorded at its first download"):
        vfe_hub.load(BAGS)
    assert not drive.cached_path(w.checkpoint).exists() and not weights.drive_conversion_dir(spec).exists()


# ------------------------------------------------------------------------------------------------ registry


def test_drive_entries_say_how_each_file_is_checked():
    with pytest.raises(ValueError, match="64 hex digits, or UNPINNED"):
        DriveFile("x.pth", "", id=FILE_ID)
    with pytest.raises(ValueError, match="UNPINNED \\(size None\\)"):
        DriveFile("x.pth", UNPINNED, 10, id=FILE_ID)
    with pytest.raises(ValueError, match="Drive file id, the id of its folder, or both"):
        DriveFile("x.pth", UNPINNED)
    with pytest.raises(ValueError, match="must name the Drive folder they are in"):
        DriveRelease(DriveFile("x.pth", UNPINNED, id=FILE_ID), {"groups": (DriveFile("a.pt", UNPINNED, id=FILE_ID),)})
    for name in (DETPRO, BAGS):
        spec = registry.get_spec(name)
        release = spec.weights.drive
        assert spec.weights.from_drive
        for file in release.files():  # pinned (64 hex digits and a size), or explicitly not
            assert (re.fullmatch("[0-9a-f]{64}", file.sha256) and isinstance(file.size, int) and file.size > 0
                    or file.sha256 == UNPINNED and file.size is None), file
        convert = importlib.import_module(f"vfe_hub.models.{spec.family}").convert
        assert set(release.inputs) <= set(inspect.signature(convert).parameters)
        assert all(f.id or f.folder for f in release.files())
    assert registry.get_spec(DETPRO).weights.drive.inputs["categories"] == Asset("lvis_v1_categories.json")


def test_bags_group_tables_cannot_come_from_the_shipped_categories():
    """BAGS groups the LVIS v0.5 classes by training *instance* count (below 10, 100, 1000, and the rest: 294, 453,
    302 and 181 classes). The categories shipped with vfe_hub hold LVIS's frequency, a bin of *image* counts with
    other bounds (rare: 1-10 images, common: 11-100, frequent: more), and no instance count, so the group tables
    come from the authors' Drive folder."""
    categories = registry.lvis_v05_categories()
    assert {key for c in categories for key in c} == {"id", "name", "synset", "frequency"}
    assert [sum(c["frequency"] == f for c in categories) for f in "rcf"] == [454, 461, 315]
    assert registry.get_spec(BAGS).config["group_sizes"] == (294, 453, 302, 181)
