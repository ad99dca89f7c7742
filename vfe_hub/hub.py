"""Weight and data resolution: the Hugging Face Hub (through ``huggingface_hub``), plain URLs, local files.

A vfe_hub weights folder (written by :func:`write_model_dir`, published as a Hub repository) holds
``model.safetensors``, ``config.json`` (with the sha256 of every file) and optional companion safetensors files
that a model reads only when it needs them (:class:`WeightFiles`).

Cache layout (``VFE_HUB_CACHE``, default ``~/.cache/vfe_hub``)::

    converted/<repo_id>/<revision>/<filename>.safetensors   original checkpoints converted once, plus .json provenance
    files/<sha256[:16]>/<filename>                          data files fetched by URL (e.g. the motion-IoU table)

Original downloads themselves live in the Hugging Face cache (``HF_HUB_CACHE``). Every file is written to a
temporary name and renamed into place only after its sha256 was verified, so an interrupted or corrupt download
never leaves a file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ChecksumError, CorruptWeightsError, DownloadError, WeightsNotFoundError
from .progress import SilentTqdm, progress_bar, show_progress
from .registry import WeightsSpec

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Environment variable replacing ``https://github.com`` as the host of pinned GitHub files.
GITHUB_ENDPOINT_ENV = "VFE_HUB_GITHUB_ENDPOINT"
FORMAT_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def cache_dir() -> Path:
    """The vfe_hub cache root: ``$VFE_HUB_CACHE`` or ``~/.cache/vfe_hub``."""
    return Path(os.environ.get("VFE_HUB_CACHE") or Path.home() / ".cache" / "vfe_hub")


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Provenance:
    """Where a model's weights came from; every result of the model carries it."""

    source: str
    revision: str | None
    sha256: str

    def as_dict(self) -> dict[str, str | None]:
        return {"weights": self.source, "revision": self.revision, "sha256": self.sha256}


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def github_url(repo: str, commit: str, path: str) -> str:
    """The raw URL of ``path`` in GitHub ``repo`` at ``commit``; ``$VFE_HUB_GITHUB_ENDPOINT`` replaces the host
    ``https://github.com`` (a mirror, or a test server)."""
    endpoint = os.environ.get(GITHUB_ENDPOINT_ENV) or "https://github.com"
    return f"{endpoint.rstrip('/')}/{repo}/raw/{commit}/{path}"


def fetch_url(url: str, *, sha256: str, filename: str, progress: bool | None = None) -> Path:
    """Download ``url`` once into the cache and return its path; the content must have the given ``sha256``.

    Raises :class:`DownloadError` when the server cannot be reached or answers an error (or ``HF_HUB_OFFLINE``
    is set and the file is not cached) and :class:`ChecksumError` when the bytes are not the pinned ones.
    """
    target = cache_dir() / "files" / sha256[:16] / filename
    if target.is_file():
        return target
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DownloadError(f"{filename} is not in the cache ({target}) and HF_HUB_OFFLINE is set; "
                            f"unset HF_HUB_OFFLINE once to download it from {url}.")

    def write(tmp: Path) -> None:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress_bar(total=total, unit="B", unit_scale=True, desc=filename, progress=progress) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"Could not download {url}: {e}. Check the network, or place the file at {target}.") from e
        if digest.hexdigest() != sha256:
            raise ChecksumError(f"{url} has sha256 {digest.hexdigest()}, expected {sha256}: the download is corrupt "
                                f"or the file changed upstream. Nothing was cached; try again.")

    atomic_write(target, write)
    return target


def _hub_error(weights: WeightsSpec, revision: str, error: Exception) -> WeightsNotFoundError | DownloadError:
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{weights.filename!r} in Hub repo {weights.repo_id!r} at revision {revision!r}"
    if isinstance(error, LocalEntryNotFoundError):
        return DownloadError(f"Cannot download {where}: the Hub is unreachable or HF_HUB_OFFLINE is set, and the "
                             f"file is not cached. Connect once (or unset HF_HUB_OFFLINE), or pass weights=<local file>.")
    if isinstance(error, RepositoryNotFoundError):
        what = "the repository does not exist (or is private)"
    elif isinstance(error, RevisionNotFoundError):
        what = "the revision does not exist"
    elif isinstance(error, EntryNotFoundError):
        what = "the file does not exist"
    else:
        return DownloadError(f"Could not download {where}: {error}")
    return WeightsNotFoundError(f"Cannot download {where}: {what}. Check the name, or pass weights=<local file or "
                                f"folder> (an original checkpoint is converted on the fly; `vfe-hub convert` writes one).")


def _expected_sha(weights: WeightsSpec, revision: str, blob: Path) -> str | None:
    """The pinned sha256 when loading the pinned revision, else the Hub's LFS sha256 (the blob's name)."""
    if weights.sha256 and revision == weights.revision:
        return weights.sha256
    return blob.name if _SHA256.match(blob.name) else None


def download(weights: WeightsSpec, *, revision: str | None = None, progress: bool | None = None) -> tuple[Path, str]:
    """Download a registry file through ``huggingface_hub`` and verify it; returns ``(path, sha256)``.

    ``revision`` defaults to the registry's (``None`` there: the main branch). A file whose bytes do not match the
    expected sha256 is removed from the Hugging Face cache before :class:`ChecksumError` is raised, so the next call
    downloads it again.
    """
    from huggingface_hub import hf_hub_download

    revision = revision or weights.revision
    kwargs = {} if show_progress(progress) else {"tqdm_class": SilentTqdm}
    try:
        path = Path(hf_hub_download(weights.repo_id, weights.filename, revision=revision, **kwargs))
    except Exception as e:  # huggingface_hub raises many types; translate the ones users can act on
        translated = _hub_error(weights, revision or "main", e)
        raise translated from e
    blob = path.resolve()
    actual = sha256_of(blob)
    expected = _expected_sha(weights, revision, blob)
    if expected is not None and actual != expected:
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise ChecksumError(f"{weights.filename!r} from {weights.repo_id!r}@{revision} has sha256 {actual}, expected "
                            f"{expected}. The corrupt file was removed from the cache; run again to re-download.")
    return path, actual


def snapshot_commit(path: Path, filename: str) -> str:
    """The commit a file downloaded by :func:`download` belongs to: its Hugging Face cache path is
    ``.../snapshots/<commit>/<filename>``."""
    return path.parents[len(PurePosixPath(filename).parts) - 1].name


@dataclass(frozen=True)
class WeightFiles:
    """The companion files of vfe_hub weights, read on demand.

    ``listed`` is ``config.json``'s ``"files"`` (name -> sha256). ``source`` is the local folder the weights were
    loaded from, or the registry's Hub repository at the commit the weights were downloaded from (fetched through
    :func:`download`); either way a file's bytes must have the listed sha256.
    """

    listed: Mapping[str, str] = field(default_factory=dict)
    source: Path | WeightsSpec | None = None

    def __contains__(self, name: str) -> bool:
        return name in self.listed

    def path(self, name: str, progress: bool | None = None) -> Path:
        """The local path of the companion file ``name`` (downloaded once from the Hub if needed)."""
        if name not in self.listed or self.source is None:
            raise WeightsNotFoundError(f"These weights come without {name}; convert them again with the options "
                                       f"that write it (`vfe-hub convert --help`).")
        if isinstance(self.source, WeightsSpec):
            spec = replace(self.source, filename=name, sha256=self.listed[name])
            return download(spec, revision=spec.revision, progress=progress)[0]
        path = self.source / name
        if not path.is_file():
            raise WeightsNotFoundError(f"{path} is missing: {CONFIG_NAME} beside it lists {name}. Copy the whole "
                                       f"folder written by `vfe-hub convert`.")
        check_sha256(path, self.listed[name], f"the {CONFIG_NAME} beside it")
        return path


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, translating unreadable files into :class:`CorruptWeightsError`."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptWeightsError(f"{path} is not a readable safetensors file ({e}). Delete it and download or "
                                  f"convert the weights again.") from e


def load_checkpoint(path: Path, *, trusted: bool = False) -> object:
    """The object saved in a PyTorch file, on the CPU.

    By default it is read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers.
    ``trusted=True`` unpickles arbitrary objects (``weights_only=False``), which can run code stored in the file:
    only for a file the user named in an explicit conversion command, never for anything downloaded automatically.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as e:  # pickle, zip and unpickler errors all mean the same thing to the user
        raise CorruptWeightsError(f"{path} cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e}). Is it the "
                                  f"right file, completely downloaded?") from e


def state_dict_of(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: a bare state dict or a dict with ``state_dict`` / ``model`` (mmcv,
    detectron2), with the ``module.`` prefix of distributed training stripped."""
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CorruptWeightsError(f"{path} does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an original PyTorch checkpoint, read with ``torch.load(weights_only=True)``
    (see :func:`state_dict_of`)."""
    return state_dict_of(load_checkpoint(path), path)


def converted_path(weights: WeightsSpec, revision: str) -> Path:
    """Where the converted safetensors of a registry file at ``revision`` is cached."""
    return cache_dir() / "converted" / weights.repo_id / revision / f"{weights.filename}.safetensors"


def _write_safetensors(target: Path, state: Mapping[str, torch.Tensor]) -> str:
    tensors = {k: v.contiguous() for k, v in state.items()}
    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    return sha256_of(target)


def save_converted(state: Mapping[str, torch.Tensor], target: Path, provenance: Provenance) -> str:
    """Write ``state`` as safetensors at ``target`` atomically, with a ``.json`` provenance beside it; returns its sha256."""
    digest = _write_safetensors(target, state)
    record = {**provenance.as_dict(), "converted_sha256": digest}
    atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return digest


def write_model_dir(out_dir: Path, state: Mapping[str, torch.Tensor], config: dict, card: str,
                    files: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> str:
    """Write the vfe_hub layout (``model.safetensors``, ``config.json``, ``README.md``) and the companion
    safetensors ``files`` (name -> tensors; their sha256 go to ``config.json``'s ``"files"``); returns the
    weights' sha256. ``config.json`` is written last, so a folder with a config is complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = {name: _write_safetensors(out_dir / name, tensors) for name, tensors in (files or {}).items()}
    digest = _write_safetensors(out_dir / WEIGHTS_NAME, state)
    config = {**config, "format_version": FORMAT_VERSION, "sha256": digest, **({"files": listed} if listed else {})}
    atomic_write(out_dir / "README.md", lambda tmp: tmp.write_text(card))
    atomic_write(out_dir / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return digest


def read_config(config_file: Path) -> dict:
    """A ``config.json`` of vfe_hub weights as a dict (:class:`CorruptWeightsError` if it is not JSON)."""
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CorruptWeightsError(f"{config_file} is not valid JSON ({e}).") from e


def check_sha256(path: Path, expected: str | None, where: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the sha256 ``expected`` (recorded in ``where``);
    ``None`` checks nothing."""
    if expected and sha256_of(path) != expected:
        raise ChecksumError(f"{path} does not match the sha256 in {where} ({expected}); the file is "
                            f"corrupt or was replaced. Convert or download it again.")


def read_model_dir(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a folder written by :func:`write_model_dir`; checks the weights' sha256 against ``config.json``."""
    config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
    for f in (config_file, weights_file):
        if not f.is_file():
            raise WeightsNotFoundError(f"{path} is not a vfe_hub weights folder: {f.name} is missing. "
                                       f"`vfe-hub convert NAME ORIGINAL.pth {path}` writes one.")
    config = read_config(config_file)
    check_sha256(weights_file, config.get("sha256"), str(config_file))
    return config, read_safetensors(weights_file)

