"""What vfe_hub keeps on disk, and how to check or free it (``vfe-hub cache list | verify | prune``).

Two places hold downloads (see :mod:`vfe_hub.hub`): the vfe_hub cache (``VFE_HUB_CACHE``: converted weights with
their ``.json`` record, original files from Google Drive with the record of their first download, files fetched by
URL, vocabulary embeddings) and the Hugging Face cache (``HF_HUB_CACHE``),
where only the files of registry entries are vfe_hub's; other libraries' files there are never listed or removed.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from . import drive, hub
from .registry import MODELS, ModelSpec, get_spec

__all__ = ["CachedFile", "entries", "human_size", "prune", "verify"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class CachedFile:
    """One cached file: its ``kind`` (``"converted"``, ``"original"``, ``"drive"``, ``"files"``, ``"embeddings"``,
    ...), the ``path`` a user sees, the ``blob`` holding its bytes (the same path, except in the Hugging Face cache),
    the ``size`` in bytes, the registry ``models`` it belongs to (empty: shared by several, or by none) and
    ``expected``: ``(algorithm, hex digest or its prefix)`` recorded or pinned for it, ``None`` when nothing was
    recorded, and ``companions``: files that go with it (a ``.json`` record, a converted folder's config and card),
    counted in ``size``."""

    kind: str
    path: Path
    blob: Path
    size: int
    models: tuple[str, ...] = ()
    expected: tuple[str, str] | None = None
    companions: tuple[Path, ...] = ()

    def digest(self) -> str | None:
        """The blob's digest with the ``expected`` algorithm (``sha256``, or git's ``blob-sha1`` for small files of
        a Hub repository), or ``None`` when nothing is expected."""
        if self.expected is None:
            return None
        if self.expected[0] == "sha256":
            return hub.sha256_of(self.blob)
        h = hashlib.sha1(b"blob %d\0" % self.blob.stat().st_size)
        with open(self.blob, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest()


def _converted_owner(path: Path, root: Path) -> tuple[str, ...]:
    """The models whose registry file was converted into ``path``: ``<root>/<repo_id>/<revision>/<model>/<file>...``;
    ``<root>/<repo_id>/<revision>/<file>...``, where conversions were kept before they were kept per model (then
    every model of the file owns it); or a file of the folder ``<root>/<repo_id>/gdrive/<id>/`` converted from a
    Google Drive release."""
    owners = []
    for spec in MODELS.values():
        try:
            rel = path.relative_to(root / spec.weights.repo_id)
        except ValueError:
            continue
        converted = f"{spec.weights.filename}.safetensors"
        if (rel.parts[1:2] == (spec.name,) and "/".join(rel.parts[2:]) == converted
                or "/".join(rel.parts[1:]) == converted
                or spec.weights.drive is not None and rel.parts[0] == "gdrive"):
            owners.append(spec.name)
    return tuple(owners)


def _read_json(path: Path) -> dict:
    """A JSON object from ``path`` (a converted file's record, a ``config.json``), or ``{}`` when it cannot be
    read."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _sha256(digest: object) -> tuple[str, str] | None:
    return ("sha256", digest) if isinstance(digest, str) else None


def _converted_file(path: Path, converted: Path) -> CachedFile:
    """A converted safetensors file, checked against its record, or (a companion file of a converted folder) against
    the ``config.json`` beside it; a folder's ``model.safetensors`` carries its record, config and card along."""
    record_file, config = path.with_suffix(".json"), path.parent / hub.CONFIG_NAME
    if record_file.is_file():
        expected = _sha256(_read_json(record_file).get("converted_sha256"))
    else:
        files = _read_json(config).get("files")
        expected = _sha256(files.get(path.name)) if isinstance(files, dict) else None
    folder = (config, path.parent / "README.md") if path.name == hub.WEIGHTS_NAME else ()
    companions = tuple(p for p in (record_file, *folder) if p.is_file())
    return CachedFile("converted", path, path, path.stat().st_size + sum(c.stat().st_size for c in companions),
                      _converted_owner(path, converted), expected, companions)


def _drive_files(root: Path) -> list[CachedFile]:
    """The originals from Google Drive (``<root>/<id>/<filename>``), each with its record; a record whose file is
    gone (refused after the file changed on Drive, or removed by hand) is listed alone, as its file's."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        recorded = path.with_name(path.stem)  # the original whose record this is, if it is one
        if path.suffix == ".json" and (recorded.is_file() or drive.read_record(recorded) is not None):
            if not recorded.is_file():
                found.append(CachedFile("drive", path, path, path.stat().st_size, drive.owners(recorded)))
            continue
        record, record_file = drive.read_record(path), drive.record_path(path)
        companions = (record_file,) if record_file.is_file() else ()
        found.append(CachedFile("drive", path, path, path.stat().st_size + sum(c.stat().st_size for c in companions),
                                drive.owners(path), _sha256(record and record["sha256"]), companions))
    return found


def _vfe_hub_files() -> list[CachedFile]:
    root = hub.cache_dir()
    if not root.is_dir():
        return []
    converted = root / "converted"
    main = [_converted_file(p, converted) for p in sorted(converted.rglob("*.safetensors"))]
    found = [*main, *_drive_files(root / "drive")]
    listed = {q for f in found for q in (f.path, *f.companions)}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in listed):
        top = path.relative_to(root).parts[0]
        if top == hub.LOCKS:  # empty lock files: removing one that a process holds would break its lock
            continue
        if top == "files" and _HEX16.match(path.parent.name):
            # fetched by URL into files/<sha256[:16]>/<name>: the folder name is the pinned digest's prefix
            found.append(CachedFile("files", path, path, path.stat().st_size, (), ("sha256", path.parent.name)))
        else:
            found.append(CachedFile(top if len(path.relative_to(root).parts) > 1 else "other", path, path,
                                    path.stat().st_size))
    return sorted(found, key=lambda f: str(f.path))


def _expected_original(spec: ModelSpec, commit: str, blob: Path) -> tuple[str, str] | None:
    w = spec.weights
    if w.sha256 and w.revision and commit.startswith(w.revision):
        return "sha256", w.sha256
    if _HEX64.match(blob.name):  # an LFS file: huggingface_hub names the blob after its sha256
        return "sha256", blob.name
    if _HEX40.match(blob.name):  # a small git file: the blob is named after its git object id
        return "blob-sha1", blob.name
    return None


def _originals() -> list[CachedFile]:
    """The files of registry entries in the Hugging Face cache (a blob shared by revisions is listed once)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    found: dict[Path, CachedFile] = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        specs = [s for s in MODELS.values() if s.weights.repo_id == repo.repo_id]
        for revision in repo.revisions:
            for file in revision.files:
                name = file.file_path.relative_to(revision.snapshot_path).as_posix()
                owners = [s for s in specs if s.weights.format == "vfe_hub" or s.weights.filename == name]
                if not owners:
                    continue
                previous = found.get(file.blob_path)
                models = tuple(sorted({s.name for s in owners} | set(previous.models if previous else ())))
                found[file.blob_path] = CachedFile("original", file.file_path, file.blob_path, file.size_on_disk,
                                                   models, _expected_original(owners[0], revision.commit_hash,
                                                                              file.blob_path))
    return sorted(found.values(), key=lambda f: str(f.path))


def entries(models: Sequence[str] = ()) -> list[CachedFile]:
    """Everything vfe_hub cached, or only the files of ``models`` (registry names)."""
    names = {get_spec(m).name for m in models}
    found = [*_vfe_hub_files(), *_originals()]
    return [f for f in found if not names or names & set(f.models)]


def verify(files: Iterable[CachedFile]) -> list[tuple[CachedFile, bool | None]]:
    """Each file with whether its digest is the recorded or pinned one (``None``: nothing recorded to check)."""
    return [(f, None if f.expected is None else f.digest().startswith(f.expected[1])) for f in files]


def _remove_original(file: CachedFile) -> None:
    """Remove a Hugging Face cache file of vfe_hub's: every snapshot entry of its blob, then the blob."""
    snapshots = next(p for p in file.path.parents if p.name == "snapshots")
    blob = file.blob.resolve()
    for link in snapshots.rglob("*"):
        if link.is_symlink() and link.resolve() == blob:
            link.unlink()
    file.path.unlink(missing_ok=True)  # a copy where the file system has no symbolic links
    file.blob.unlink(missing_ok=True)


def prune(files: Iterable[CachedFile]) -> int:
    """Remove ``files`` (and their companions); returns the bytes freed."""
    freed = 0
    for file in files:
        if file.kind == "original":
            _remove_original(file)
        else:
            for path in (file.path, *file.companions):
                path.unlink(missing_ok=True)
        freed += file.size
    return freed


def human_size(size: int) -> str:
    """``size`` bytes as ``"12.3 MB"`` (powers of 1000)."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
