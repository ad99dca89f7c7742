"""Weight and data resolution: the Hugging Face Hub (through ``huggingface_hub``), plain URLs, local files.

A vfe_hub weights folder (written by :func:`write_model_dir`, published as a Hub repository) holds
``model.safetensors``, ``config.json`` (with the sha256 of every file) and optional companion safetensors files
that a model reads only when it needs them (:class:`WeightFiles`).

Cache layout (``VFE_HUB_CACHE``, default ``~/.cache/vfe_hub``)::

    converted/<repo_id>/<revision>/<model>/<filename>.safetensors
                                                            original checkpoints converted once per model (models
                                                            sharing a file can convert parts of it), plus .json
                                                            provenance
    converted/<repo_id>/gdrive/<id>/                        a release on Google Drive converted once: a vfe_hub
                                                            folder, plus the record model.json
    drive/<id>/<filename>                                   original files from Google Drive (:mod:`vfe_hub.drive`)
    files/<sha256[:16]>/<filename>                          data files fetched by URL (e.g. the motion-IoU table)
    .locks/<path>.lock                                      locks of the processes writing <path> (:func:`cache_lock`)

Original downloads from the Hub live in the Hugging Face cache (``HF_HUB_CACHE``). Every file is written to a
temporary name and renamed into place only after its sha256 was verified, so an interrupted or corrupt download
never leaves a file that a later run would trust; files get the permissions of the process umask (shared caches).

Every download, weights or data file, follows huggingface_hub's switches: ``HF_HUB_OFFLINE`` (no request at all),
``HF_ENDPOINT`` (a mirror of the Hub) and its proxy settings; a connection that cannot be made fails at once
(:class:`DownloadError` naming the cause and the ways out) instead of being retried for half a minute.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import pickle
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from huggingface_hub import constants
from safetensors import SafetensorError

from .errors import ChecksumError, CorruptWeightsError, DownloadError, WeightsNotFoundError
from .progress import SilentTqdm, progress_bar, show_progress
from .registry import WeightsSpec
from .unpickle import load_with_placeholders

if TYPE_CHECKING:  # PyTorch is imported by the functions that read or write tensors: the cache commands do not need it
    import torch

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: the cache's folder of lock files (:func:`cache_lock`)
LOCKS = ".locks"
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
    #: for an original release from Google Drive: its size in bytes and whether the registry pins it (else the
    #: size and sha256 are those recorded at its first download)
    size: int | None = None
    pinned: bool | None = None

    def as_dict(self) -> dict[str, str | int | bool | None]:
        extra = {k: v for k, v in (("size", self.size), ("pinned", self.pinned)) if v is not None}
        return {"weights": self.source, "revision": self.revision, "sha256": self.sha256, **extra}


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_permissions(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the permissions ``open()`` gives a new file (0666 less the umask): ``tempfile.mkstemp``
    creates its files 0600, readable by their owner alone."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        open_permissions(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` to write a whole folder into; when the block ends without error it
    takes ``target``'s place (an older ``target`` is moved aside, then removed), else it is removed. A reader sees
    the old folder or the new one, never a half-written one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        old = tmp.with_name(tmp.name + ".old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def cache_lock(target: Path) -> Iterator[None]:
    """Hold the inter-process lock of ``target``, a path in the cache, while writing it: the processes of one job
    (torchrun ranks, a job array) that need the same file take turns, so the first writes it and the others find
    it written. The lock files stay in ``.locks/`` (removing a held one would let a second writer in)."""
    from filelock import FileLock, Timeout

    path = cache_dir() / LOCKS / target.relative_to(cache_dir())
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.with_name(path.name + ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("Waiting for another process writing %s (lock %s).", target, lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def github_url(repo: str, commit: str, path: str) -> str:
    """The raw URL of ``path`` in GitHub ``repo`` at ``commit``; ``$VFE_HUB_GITHUB_ENDPOINT`` replaces the host
    ``https://github.com`` (a mirror, or a test server)."""
    endpoint = os.environ.get(GITHUB_ENDPOINT_ENV) or "https://github.com"
    return f"{endpoint.rstrip('/')}/{repo}/raw/{commit}/{path}"


def offline() -> bool:
    """Whether huggingface_hub's offline mode (``HF_HUB_OFFLINE=1``) is on: then nothing is requested."""
    return constants.is_offline_mode()


_WAYS_OUT = ("Ways out: pass weights=<a local file or folder>; set HF_HUB_OFFLINE=1 on a machine whose cache "
             "already holds the files (HF_HUB_CACHE, VFE_HUB_CACHE); set HF_ENDPOINT to a reachable mirror of the Hub")


def unreachable(url: str, error: Exception, *, ways_out: str = _WAYS_OUT) -> DownloadError:
    """A :class:`DownloadError` for a connection to ``url`` that could not be made, naming the cause: no network
    (the host name does not resolve) or the host is unreachable (refused, timed out, proxy error)."""
    host = urlsplit(url).hostname or url
    try:
        socket.getaddrinfo(host, None)
        cause = f"{host} is unreachable ({type(error).__name__}: {error})"
    except OSError:
        cause = f"no network: the host name {host} cannot be resolved"
    return DownloadError(f"Cannot download {url}: {cause}. {ways_out}.")


def fetch_url(url: str, *, sha256: str, filename: str, progress: bool | None = None) -> Path:
    """Download ``url`` once into the cache and return its path; the content must have the given ``sha256``.

    The cached copy is hashed at every call (these files are small) and downloaded again when damaged. Raises
    :class:`DownloadError` when the server cannot be reached or answers an error, or ``HF_HUB_OFFLINE`` is set
    and the file is not cached. Bytes that are not the pinned ones are downloaded once more, which tells a damaged
    download (the second one is right, or differs again) from a server file that is not the pinned one (the same
    bytes twice; :class:`ChecksumError` saying that running again will not help).
    """
    target = cache_dir() / "files" / sha256[:16] / filename
    if target.is_file():
        if sha256_of(target) == sha256:
            return target
        log.warning("%s is damaged (its sha256 is not %s); downloading it again.", target, sha256)
        target.unlink()
    ways_out = f"Ways out: place the file at {target}; set {GITHUB_ENDPOINT_ENV} to a reachable mirror"
    if offline():
        raise DownloadError(f"{filename} is not in the cache ({target}) and HF_HUB_OFFLINE is set, so nothing is "
                            f"downloaded. Unset HF_HUB_OFFLINE once to download it from {url}, or place it there.")

    from huggingface_hub.utils import get_session

    http = _http()

    digests: list[str] = []  # of the downloads that were not the pinned bytes

    def write(tmp: Path) -> None:
        digest = hashlib.sha256()
        try:
            with get_session().stream("GET", url, follow_redirects=True,
                                      timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response, open(tmp, "wb") as out:
                if response.status_code != 200:
                    raise DownloadError(f"Could not download {url}: the server answered HTTP {response.status_code}. "
                                        f"{ways_out}.")
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress_bar(total=total, unit="B", unit_scale=True, desc=filename, progress=progress) as bar:
                    for block in response.iter_bytes(1 << 20):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
        except http.TransportError as e:
            if isinstance(e, _connection_errors()):
                raise unreachable(url, e, ways_out=ways_out) from e
            raise DownloadError(f"Could not download {url}: {type(e).__name__}: {e}. {ways_out}.") from e
        if digest.hexdigest() != sha256:
            digests.append(digest.hexdigest())
            raise ChecksumError(f"{url} has sha256 {digests[-1]}, not the pinned {sha256}")

    for attempt in range(2):
        try:
            atomic_write(target, write)
            return target
        except ChecksumError as error:
            if attempt == 0:
                log.warning("%s; downloading it once more to tell a damaged download from another file.", error)
    if digests[0] == digests[1]:
        raise ChecksumError(f"{url} serves a file with sha256 {digests[0]} (twice the same bytes), not the pinned "
                            f"{sha256}: the file changed upstream, or {GITHUB_ENDPOINT_ENV} names a mirror that "
                            f"serves another file, so running again will not help. Nothing was cached. {ways_out}, "
                            f"with the pinned file.")
    raise ChecksumError(f"{url} was damaged in transfer twice (sha256 {digests[0]}, then {digests[1]}; pinned "
                        f"{sha256}): something between here and the server changes the bytes (a proxy, the "
                        f"network). Nothing was cached; run again. {ways_out}.")


def _http() -> ModuleType:
    """The HTTP library behind huggingface_hub's client (``httpx2``, or ``httpx`` for older releases)."""
    from huggingface_hub.utils import get_session

    return importlib.import_module(type(get_session()).__module__.split(".")[0])


def _connection_errors() -> tuple[type[Exception], ...]:
    """The errors of huggingface_hub's HTTP client that mean no connection could be made."""
    http = _http()
    return http.ConnectError, http.ConnectTimeout, http.ProxyError


def _ways_out(weights: WeightsSpec) -> str:
    """The ways out of a failed Hub download, with the places of the original release when the registry has them."""
    originals = "; ".join(f"{name}: {where}" for name, where in weights.sources().items())
    return _WAYS_OUT + (f"; or download the original release ({originals}) and convert it" if originals else "")


def _hub_error(weights: WeightsSpec, revision: str, error: Exception) -> WeightsNotFoundError | DownloadError:
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{weights.filename!r} in Hub repo {weights.repo_id!r} at revision {revision!r}"
    if isinstance(error, LocalEntryNotFoundError):
        if offline():
            return DownloadError(f"Cannot load {where}: HF_HUB_OFFLINE is set (offline mode) and the file is not "
                                 f"in the cache ({constants.HF_HUB_CACHE}). {_ways_out(weights)}, or unset "
                                 f"HF_HUB_OFFLINE once to download it.")
        return DownloadError(f"Cannot download {where} from {constants.ENDPOINT}, and the file is not cached "
                             f"({error}). {_ways_out(weights)}.")
    if isinstance(error, RepositoryNotFoundError):
        what = "the repository does not exist (or is private)"
    elif isinstance(error, RevisionNotFoundError):
        what = "the revision does not exist"
    elif isinstance(error, EntryNotFoundError):
        what = "the file does not exist"
    else:
        return DownloadError(f"Could not download {where}: {error}")
    return WeightsNotFoundError(f"Cannot download {where}: {what}. Check the name, or pass weights=<local file or "
                                f"folder> (an original checkpoint is converted on the fly; `vfe-hub convert` writes "
                                f"one).")


def _check_reachable(weights: WeightsSpec, revision: str | None) -> None:
    """Fail at once when a file that is not cached cannot be downloaded because the Hub cannot be reached.

    huggingface_hub answers a failed connection for a file it has not cached by retrying with backoff (about half
    a minute) before giving up; one metadata request without retries tells the same in a moment. Other answers
    (not found, server errors) are left to the download itself, which reports or retries them.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if offline() or isinstance(try_to_load_from_cache(weights.repo_id, weights.filename, revision=revision), str):
        return
    url = hf_hub_url(weights.repo_id, weights.filename, revision=revision)
    try:
        get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except _connection_errors() as e:
        raise unreachable(url, e, ways_out=_ways_out(weights)) from e
    except Exception:  # noqa: BLE001 - any other answer is the download's to report (or retry)
        pass


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
    _check_reachable(weights, revision)
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
        raise _checksum_error(weights, revision, actual, expected, blob.name if _SHA256.match(blob.name) else None)
    return path, actual


def _checksum_error(weights: WeightsSpec, revision: str, actual: str, expected: str,
                    served: str | None) -> ChecksumError:
    """A download whose sha256 ``actual`` is not ``expected``: damaged in transfer (not the sha256 the Hub
    ``served`` for it), or the Hub's own file is not the pinned one (running again cannot help)."""
    where = f"{weights.filename!r} from {weights.repo_id!r}@{revision}"
    removed = "The file was removed from the cache"
    if served is not None and actual != served:
        return ChecksumError(f"{where} was damaged in transfer: its sha256 is {actual}, the Hub's record of it "
                             f"{served}. {removed}; run again to download it anew.")
    other = (f"Running again will not help: check HF_ENDPOINT ({constants.ENDPOINT}; a mirror may serve another "
             f"file) and report the mismatch if the Hub itself serves it; meanwhile pass weights=<a copy of the "
             f"release you trust> (an original checkpoint is converted on the fly)")
    if served is not None:
        return ChecksumError(f"{where} is not the pinned file: the Hub serves sha256 {actual} (as its own record "
                             f"says), the registry pins {expected}. {removed}. {other}.")
    return ChecksumError(f"{where} has sha256 {actual}, not the pinned {expected}, and the Hub records no sha256 to "
                         f"tell a damaged download from another file. {removed}: run again; if the same mismatch "
                         f"comes back, the server's file is not the pinned one. {other}.")


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
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptWeightsError(f"{path} is not a readable safetensors file ({e}). Delete it and download or "
                                  f"convert the weights again.") from e


def load_checkpoint(path: Path) -> object:
    """The object saved in a PyTorch file, on the CPU, read without running code of the file.

    It is read with ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only; where that
    refuses an object of another class (mmcv's ``Config`` in a checkpoint's ``meta``, say, whose code base need not
    be installed), the file is read again with that object as an inert placeholder
    (:func:`vfe_hub.unpickle.load_with_placeholders`: nothing of its class is looked up or runs): conversions read
    the tensors and plain data only.
    """
    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not re.search(r"Unsupported global: GLOBAL \S+", str(e)):
                raise
        loaded, replaced = load_with_placeholders(path)
        log.info("%s stores objects of classes that are not rebuilt (%s): read as inert placeholders, since only "
                 "its tensors and plain data are converted.", path, ", ".join(replaced))
        return loaded
    except Exception as e:  # pickle, zip and unpickler errors all mean the same thing to the user
        raise CorruptWeightsError(f"{path} cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e}). Is it the "
                                  f"right file, completely downloaded?") from e


def state_dict_of(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: a bare state dict or a dict with ``state_dict`` / ``model`` (mmcv,
    detectron2), with the ``module.`` prefix of distributed training stripped."""
    import torch

    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CorruptWeightsError(f"{path} does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an original PyTorch checkpoint, read without running code of the file
    (:func:`load_checkpoint`, :func:`state_dict_of`)."""
    return state_dict_of(load_checkpoint(path), path)


def converted_path(name: str, weights: WeightsSpec, revision: str) -> Path:
    """Where the conversion of a registry file at ``revision`` for the model ``name`` is cached: per model, since
    models that share a file can convert different parts of it (GTR leaves out the Amodal Expander's tensors)."""
    return cache_dir() / "converted" / weights.repo_id / revision / name / f"{weights.filename}.safetensors"


def _write_safetensors(target: Path, state: Mapping[str, torch.Tensor]) -> str:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in state.items()}
    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    return sha256_of(target)


def _file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"converted_size": stat.st_size, "converted_mtime_ns": stat.st_mtime_ns}


def save_converted(state: Mapping[str, torch.Tensor], target: Path, provenance: Provenance) -> str:
    """Write ``state`` as safetensors at ``target`` atomically, with a ``.json`` record beside it (provenance, the
    converted file's sha256, size and modification time); returns its sha256."""
    digest = _write_safetensors(target, state)
    write_record(target, {**provenance.as_dict(), "converted_sha256": digest})
    return digest


def write_record(target: Path, record: dict) -> None:
    """Write the ``.json`` record of the converted file ``target`` (at least ``sha256``, the original's, and
    ``converted_sha256``), stamped with the file's size and modification time (see :func:`read_converted`)."""
    record = {**record, **_file_stamp(target)}
    atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(record, indent=2)))


def read_converted(target: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The state and record of a conversion cached by :func:`save_converted`, or ``None`` when there is none or it
    is damaged (then both files are removed, so that the caller converts the original again).

    Cost: hashing a few hundred MB at every load would take about a second, so the file is trusted when its size and
    modification time are the recorded ones (a rewrite or truncation changes them); otherwise its sha256 is compared
    with the recorded one (and the record refreshed when it matches, e.g. after a copy). ``vfe-hub cache verify``
    hashes every file.
    """
    record_file = target.with_suffix(".json")
    if not (target.is_file() and record_file.is_file()):
        return None
    try:
        record = json.loads(record_file.read_text())
        if {"sha256", "converted_sha256"} - set(record):
            raise KeyError(f"{record_file.name} lacks the sha256 entries")
        if any(record.get(k) != v for k, v in _file_stamp(target).items()):
            if sha256_of(target) != record["converted_sha256"]:
                raise ChecksumError(f"its sha256 is not the recorded {record['converted_sha256']}")
            write_record(target, record)
        return read_safetensors(target), record
    except (ValueError, KeyError, TypeError, AttributeError, ChecksumError, CorruptWeightsError) as e:
        log.warning("The cached conversion %s is damaged (%s); converting the original again.", target, e)
        target.unlink(missing_ok=True)
        record_file.unlink(missing_ok=True)
        return None


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


def read_config(config_file: Path, required: tuple[str, ...] = ()) -> dict:
    """A ``config.json`` of vfe_hub weights as a dict; :class:`CorruptWeightsError` naming the file if it is not a
    JSON object or lacks one of the ``required`` keys."""
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptWeightsError(f"{config_file} is not valid JSON ({e}). Write the folder again with "
                                  f"`vfe-hub convert`.") from e
    if not isinstance(config, dict):
        raise CorruptWeightsError(f"{config_file} holds a JSON {type(config).__name__}, not an object: it is not a "
                                  f"vfe_hub config. Write the folder again with `vfe-hub convert`.")
    missing = [key for key in required if key not in config]
    if missing:
        raise CorruptWeightsError(f"{config_file} is not a vfe_hub config: it lacks {', '.join(map(repr, missing))}"
                                  f" (written by `vfe-hub convert`, it holds at least {', '.join(required)}).")
    return config


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
    config = read_config(config_file, required=("name", "sha256"))
    check_sha256(weights_file, config["sha256"], str(config_file))
    return config, read_safetensors(weights_file)

