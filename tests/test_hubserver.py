"""Tests of `hubserver.FakeHub`, driven through the real huggingface_hub client."""

import hashlib
import io
import socket
import types
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    constants,
    file_download,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from hubserver import FakeHub

REPO = "acme/tiny-model"
WEIGHTS = b"\x00\x01weights-v1" * 100


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _gets(hub: FakeHub, path: str) -> int:
    return hub.requests.count(("GET", path))


@pytest.fixture
def no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the 1 s pause huggingface_hub's `http_get` takes before each resume attempt."""
    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=lambda seconds: None))


def test_download_by_branch(fake_hub: FakeHub) -> None:
    commit = fake_hub.add_file(REPO, "model.bin", WEIGHTS)

    path = hf_hub_download(REPO, "model.bin")

    assert _read(path) == WEIGHTS
    assert Path(path).is_relative_to(Path(constants.HF_HUB_CACHE).resolve())
    assert Path(path).parent.name == commit
    url_path = f"/{REPO}/resolve/main/model.bin"
    assert fake_hub.requests == [("HEAD", url_path), ("GET", url_path)]


def test_download_by_full_commit(fake_hub: FakeHub) -> None:
    old = fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    fake_hub.add_file(REPO, "model.bin", b"v2")

    assert _read(hf_hub_download(REPO, "model.bin", revision=old)) == WEIGHTS
    assert _read(hf_hub_download(REPO, "model.bin")) == b"v2"


def test_download_by_short_commit_prefix_gets_pinned_content(fake_hub: FakeHub) -> None:
    old = fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    new = fake_hub.add_file(REPO, "model.bin", b"v2")

    path = hf_hub_download(REPO, "model.bin", revision=old[:7])

    assert _read(path) == WEIGHTS
    assert Path(path).parent.name == old  # X-Repo-Commit carried the full id
    assert fake_hub.commits(REPO) == [old, new]
    assert fake_hub.branches(REPO) == {"main": new}


def test_dataset_repo(fake_hub: FakeHub) -> None:
    fake_hub.add_file("acme/data", "train.csv", b"a,b\n1,2\n", repo_type="dataset")

    path = hf_hub_download("acme/data", "train.csv", repo_type="dataset")

    assert _read(path) == b"a,b\n1,2\n"
    assert ("HEAD", "/datasets/acme/data/resolve/main/train.csv") in fake_hub.requests
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/data", "train.csv")  # same id, but as a model


def test_cached_full_commit_download_makes_no_request(fake_hub: FakeHub) -> None:
    commit = fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    first = hf_hub_download(REPO, "model.bin", revision=commit)
    seen = list(fake_hub.requests)

    assert hf_hub_download(REPO, "model.bin", revision=commit) == first
    assert fake_hub.requests == seen

    fake_hub.stop()
    assert hf_hub_download(REPO, "model.bin", revision=commit) == first


def test_offline_mode_returns_cached_file(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    first = hf_hub_download(REPO, "model.bin")
    seen = list(fake_hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    assert hf_hub_download(REPO, "model.bin") == first
    assert fake_hub.requests == seen
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "other.bin")


@pytest.mark.parametrize(
    ("repo_id", "revision", "filename", "error"),
    [
        ("acme/missing", "main", "model.bin", RepositoryNotFoundError),
        (REPO, "no-such-branch", "model.bin", RevisionNotFoundError),
        (REPO, "0123456", "model.bin", RevisionNotFoundError),
        (REPO, "main", "missing.bin", RemoteEntryNotFoundError),
    ],
)
def test_not_found_errors(fake_hub: FakeHub, repo_id: str, revision: str, filename: str, error: type) -> None:
    fake_hub.add_file(REPO, "model.bin", WEIGHTS)

    with pytest.raises(error):
        hf_hub_download(repo_id, filename, revision=revision)


def test_corrupt_file_is_not_detected_by_hf_hub_download(fake_hub: FakeHub) -> None:
    """huggingface_hub 2.4 checks the size but not the sha256 of a download: the bad bytes land in the cache."""
    commit = fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    fake_hub.corrupt(REPO, "model.bin")

    advertised = get_hf_file_metadata(hf_hub_url(REPO, "model.bin")).etag
    path = hf_hub_download(REPO, "model.bin")

    assert advertised == hashlib.sha256(WEIGHTS).hexdigest() == Path(path).resolve().name
    data = _read(path)
    assert len(data) == len(WEIGHTS) and data != WEIGHTS
    assert hashlib.sha256(data).hexdigest() != advertised
    verification = HfApi().verify_repo_checksums(REPO, revision=commit)
    assert [mismatch["path"] for mismatch in verification.mismatches] == ["model.bin"]


def test_truncated_download_raises_and_caches_nothing(fake_hub: FakeHub, no_retry_sleep: None) -> None:
    commit = fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    fake_hub.truncate(REPO, "model.bin")

    with pytest.raises(httpx2.RemoteProtocolError):
        hf_hub_download(REPO, "model.bin")

    storage = Path(constants.HF_HUB_CACHE) / "models--acme--tiny-model"
    assert not (storage / "snapshots" / commit / "model.bin").exists()
    assert [p.name for p in (storage / "blobs").iterdir()] == []  # no blob, no leftover .incomplete file
    # A file under DOWNLOAD_CHUNK_SIZE (10 MiB) yields nothing before the cut: each retry starts over.
    assert _gets(fake_hub, f"/{REPO}/resolve/main/model.bin") == 6  # first try + 5 retries


def test_interrupted_download_resumes_with_range(
    fake_hub: FakeHub, no_retry_sleep: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `http_get` only keeps what it read in whole DOWNLOAD_CHUNK_SIZE (10 MiB) chunks before a cut, so
    # a smaller chunk is needed for a 1 MiB file to be resumed with `Range: bytes=524288-`.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    big = bytes(range(256)) * 4096
    fake_hub.add_file(REPO, "model.bin", big)
    fake_hub.truncate(REPO, "model.bin", times=1)

    assert _read(hf_hub_download(REPO, "model.bin")) == big
    assert _gets(fake_hub, f"/{REPO}/resolve/main/model.bin") == 2
    # A Range is answered with 206 and the tail only (`http_get` would restart from scratch on a 200).
    tail = io.BytesIO()
    file_download.http_get(hf_hub_url(REPO, "model.bin"), tail, resume_size=100, expected_size=len(big))
    assert tail.getvalue() == big[100:]


def test_model_info_tree_and_snapshot_download(fake_hub: FakeHub) -> None:
    fake_hub.add_file(REPO, "config.json", b"{}")
    head = fake_hub.add_file(REPO, "weights/model.bin", WEIGHTS)
    api = HfApi()

    info = model_info(REPO)  # the module-level function: its `HfApi` instance was built at import
    assert info.sha == head
    assert [s.rfilename for s in info.siblings] == ["config.json", "weights/model.bin"]
    assert [entry.path for entry in api.list_repo_tree(REPO)] == ["config.json", "weights"]
    folder = Path(snapshot_download(REPO))
    assert folder.name == head
    assert _read(str(folder / "weights" / "model.bin")) == WEIGHTS
    assert _read(str(folder / "config.json")) == b"{}"


def test_upload_folder_then_download(fake_hub: FakeHub, tmp_path: Path) -> None:
    tensors = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256))
    readme = b"---\nlicense: mit\n---\n# Tiny\n"
    files = {"model.safetensors": tensors, "config.json": b'{"dim": 4}', "README.md": readme}
    folder = tmp_path / "upload"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    api = HfApi()

    repo_url = api.create_repo(REPO)
    commit = api.upload_folder(repo_id=REPO, folder_path=folder)

    assert repo_url.repo_id == REPO
    assert fake_hub.commits(REPO) == [commit.oid]
    assert fake_hub.files(REPO, commit.oid) == files
    assert ("PUT", f"/_lfs/{hashlib.sha256(tensors).hexdigest()}") in fake_hub.requests  # sent through LFS
    assert sum(method == "PUT" for method, _ in fake_hub.requests) == 1  # the others inlined in the commit
    for name, data in files.items():
        assert _read(hf_hub_download(REPO, name, revision=commit.oid)) == data
    # Uploading the same folder again is detected as a no-op by the client, from the preupload oids.
    assert api.upload_folder(repo_id=REPO, folder_path=folder).oid == commit.oid
    assert fake_hub.commits(REPO) == [commit.oid]


def test_stop_closes_the_port(fake_hub: FakeHub) -> None:
    fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    url = hf_hub_url(REPO, "model.bin")
    assert get_hf_file_metadata(url).size == len(WEIGHTS)

    fake_hub.stop()

    with pytest.raises(httpx2.ConnectError):
        get_hf_file_metadata(url)
    address = urlsplit(fake_hub.endpoint)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address.hostname, address.port), timeout=1)


def test_refused_connection_is_retried_by_the_download_only(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `vfe_hub.hub` relies on: for a file it has not cached, `hf_hub_download` answers a refused connection
    by retrying with backoff (1 + 2 + 4 + 8 + 8 s of sleep), while one `get_hf_file_metadata` call does not retry."""
    from huggingface_hub.utils import _http

    fake_hub.add_file(REPO, "model.bin", WEIGHTS)
    fake_hub.stop()
    sleeps: list[float] = []
    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=sleeps.append))

    with pytest.raises(httpx2.ConnectError):
        get_hf_file_metadata(hf_hub_url(REPO, "model.bin"))
    assert sleeps == []
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "model.bin")
    assert sleeps == [1, 2, 4, 8, 8]
