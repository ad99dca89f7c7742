"""Original releases on Google Drive: downloaded through gdown, checked, and kept in the vfe_hub cache.

**The client** is `gdown <https://github.com/wkentaro/gdown>`_ (``gdown.download``, ``gdown.download_folder``),
not a hand-written one. It follows Drive's answers as they are today: ``drive.google.com/uc?id=`` redirects to
``drive.usercontent.google.com``; a file too large for Drive's virus scan comes as a warning page whose
``download-form`` confirms the download (gdown submits it, as it follows the older ``confirm=`` links); Drive's
error pages are reported with their text (the quota page's "Too many users have viewed or downloaded this file
recently"); a transfer that ends before the announced ``Content-Length`` is reported as incomplete; it takes a
timeout and can leave the user's cookie file alone. torchvision's ``download_file_from_google_drive`` is a thin
wrapper around the same ``gdown.download`` that prints to standard output, checks only an md5 and turns every
failure into "File not found or corrupted.", so gdown is called directly.

**Where Drive is reached**: gdown asks ``https://drive.google.com`` (and the hosts Drive's pages name) through
``requests``, so the standard variables route it: ``HTTPS_PROXY`` (with ``NO_PROXY``) sends it through a proxy
(a corporate proxy, a mirror answering for Drive's hosts, or the test suite's stand-in for Drive), and
``REQUESTS_CA_BUNDLE`` names the CA certificates its TLS is checked against. Unset, Drive is Google's. Like the Hub
downloads, Drive downloads follow ``HF_HUB_OFFLINE`` (nothing is requested) and huggingface_hub's timeouts
(``HF_HUB_ETAG_TIMEOUT`` to connect, ``HF_HUB_DOWNLOAD_TIMEOUT`` between bytes); a connection that cannot be made
fails at once.

**Checks**: a pinned file (:class:`~vfe_hub.registry.DriveFile` with a sha256) must have its pinned size and
sha256. An unpinned one is recorded at its first download (size, sha256, Drive id) and must match that record at
every later download and in ``vfe-hub cache verify``. A file that starts like an HTML page is Drive's answer, not
the file. Cache layout (under :func:`vfe_hub.hub.cache_dir`)::

    drive/<id>/<filename>        an original file as downloaded (<id>: its Drive folder's id, else its own)
    drive/<id>/<filename>.json   its record: Drive file id, size, sha256, pinned or not, when it was downloaded

A file is downloaded into a temporary folder beside its place and moved there only after its checks passed; the
temporary folder is removed whatever happens, so nothing half-written is left in the cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from . import hub
from .errors import (ChecksumError, DownloadError, DriveAccessError, DrivePageError, DriveQuotaError,
                     IncompleteDownloadError)
from .progress import progress_bar
from .registry import MODELS, DriveFile

log = logging.getLogger(__name__)

#: Drive's address, for messages: gdown always starts there (see the module docstring for reaching it otherwise)
DRIVE = "https://drive.google.com"
_HTML_STARTS = (b"<!doctype html", b"<html")


@dataclass(frozen=True)
class Original:
    """A checked original file in the cache: its registry ``file``, local ``path``, Drive file ``id`` (looked up in
    its folder when the registry names only the folder), ``sha256`` and ``size``."""

    file: DriveFile
    path: Path
    id: str
    sha256: str
    size: int


def cached_path(file: DriveFile) -> Path:
    """Where ``file`` is kept once downloaded."""
    return hub.cache_dir() / "drive" / file.key / file.filename


def record_path(path: Path) -> Path:
    """The record beside a downloaded original."""
    return path.with_name(path.name + ".json")


def read_record(path: Path) -> dict | None:
    """The record of the original at ``path`` (``id``, ``filename``, ``size``, ``sha256``, ``pinned``,
    ``downloaded``), or ``None`` when there is none or it cannot be read."""
    try:
        record = json.loads(record_path(path).read_text())
        return record if isinstance(record, dict) and {"sha256", "size"} <= set(record) else None
    except (OSError, ValueError):
        return None


def owners(path: Path) -> tuple[str, ...]:
    """The registry models whose Google Drive release holds the original cached at ``path``
    (``drive/<id>/<filename>``, whether or not the file is there)."""
    return tuple(name for name, spec in MODELS.items() if spec.weights.drive is not None and any(
        (f.key, f.filename) == (path.parent.name, path.name) for f in spec.weights.drive.files()))


def _manual_route(file: DriveFile, file_id: str | None = None) -> str:
    page = (f"{DRIVE}/file/d/{file_id or file.id}/view" if file_id or file.id
            else f"{DRIVE}/drive/folders/{file.folder}")
    return (f"Ways out: download {file.filename} in a browser from {page} and put it at {cached_path(file)} (it is "
            f"checked as a download would be); or convert the release by hand (`vfe-hub convert`) and pass "
            f"weights=<out_dir>; set HTTPS_PROXY (and REQUESTS_CA_BUNDLE) to reach Drive through a proxy")


def _expected(file: DriveFile, record: dict | None) -> tuple[int | None, str] | None:
    """The ``(size, sha256)`` the file must have: the registry's pin, else the record of its first download."""
    if file.pinned:
        return file.size, file.sha256
    return (record["size"], record["sha256"]) if record else None


def _mismatch(size: int, sha256: str, expected: tuple[int | None, str]) -> str | None:
    """Why a file of ``size`` bytes and ``sha256`` is not the expected one (``None``: it is)."""
    if expected[0] is not None and size != expected[0]:
        return f"it has {size} bytes, not {expected[0]}"
    if sha256 != expected[1]:
        return f"its sha256 is {sha256}, not {expected[1]}"
    return None


def _origin(file: DriveFile) -> str:
    return "pinned by the registry" if file.pinned else "as recorded at its first download; the file is unpinned"


def fetch(file: DriveFile, progress: bool | None = None) -> Original:
    """The checked local copy of ``file``: the cached one when it is intact, else a fresh download.

    Raises :class:`DownloadError` (or a subclass naming Drive's failure: quota, access, an HTML page, an incomplete
    transfer) when the file cannot be downloaded or ``HF_HUB_OFFLINE`` is set, and :class:`ChecksumError` when the
    downloaded bytes are not the pinned or recorded ones. The first download of an unpinned file records its size
    and sha256 (``drive/<id>/<filename>.json``).
    """
    target = cached_path(file)
    record = read_record(target)
    expected = _expected(file, record)
    if target.is_file():
        size, sha256 = target.stat().st_size, hub.sha256_of(target)
        why = None if expected is None else _mismatch(size, sha256, expected)
        if why is None:
            file_id = file.id or (record or {}).get("id", "")
            if record is None or record["sha256"] != sha256:  # placed by hand, or its pin changed
                _write_record(target, file, file_id, size, sha256)
            return Original(file, target, file_id, sha256, size)
        log.warning("%s is damaged (%s); downloading it again.", target, why)
        target.unlink()
    if hub.offline():
        raise DownloadError(f"{file.filename} ({file.where()}) is not in the cache ({target}) and HF_HUB_OFFLINE is "
                            f"set, so nothing is downloaded. Unset HF_HUB_OFFLINE once to download it. "
                            f"{_manual_route(file)}.")
    return _download(file, target, expected, progress)


def _download(file: DriveFile, target: Path, expected: tuple[int | None, str] | None,
              progress: bool | None) -> Original:
    import gdown

    target.parent.mkdir(parents=True, exist_ok=True)
    timeout = (constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        file_id = file.id or _look_up(file, timeout)
        out = Path(tmp) / file.filename
        digest = hashlib.sha256()
        with progress_bar(total=file.size, unit="B", unit_scale=True, desc=file.filename, progress=progress) as bar:
            def advance(done: int, total: int | None) -> None:
                bar.total = total
                bar.update(done - bar.n)

            _drive_call(file, file_id, lambda: gdown.download(
                id=file_id, output=str(out), quiet=True, use_cookies=False, timeout=timeout, hasher=digest,
                progress=advance))
        size, sha256 = out.stat().st_size, digest.hexdigest()
        what = f"{file.filename} ({file.where(file_id)})"
        with open(out, "rb") as f:
            if f.read(512).lstrip().lower().startswith(_HTML_STARTS):
                raise DrivePageError(f"Google Drive answered {what} with an HTML page instead of the file (a "
                                     f"sign-in, quota or warning page that gdown did not recognise). Nothing was "
                                     f"cached. {_manual_route(file, file_id)}.")
        why = None if expected is None else _mismatch(size, sha256, expected)
        if why is not None:
            models = owners(target)
            forget = (f"run `vfe-hub cache prune {' '.join(models)}` (it removes the record {record_path(target)} "
                      f"with the rest of the cached release)" if models else f"remove the record {record_path(target)}")
            raise ChecksumError(f"{what} downloaded from Google Drive is not the expected file: {why} "
                                f"({_origin(file)}). The download is corrupt or the file changed on Drive; nothing was "
                                f"cached. If the change is intended, {forget} and load again.")
        os.replace(out, target)
    _write_record(target, file, file_id, size, sha256)
    return Original(file, target, file_id, sha256, size)


def _write_record(target: Path, file: DriveFile, file_id: str, size: int, sha256: str) -> None:
    record = {"id": file_id, "folder": file.folder, "filename": file.filename, "size": size, "sha256": sha256,
              "pinned": file.pinned, "downloaded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    hub.atomic_write(record_path(target), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def _look_up(file: DriveFile, timeout: tuple[float, float]) -> str:
    """The Drive file id of ``file`` in its folder's listing."""
    import gdown

    listing = _drive_call(file, None, lambda: gdown.download_folder(
        id=file.folder, quiet=True, use_cookies=False, skip_download=True, timeout=timeout))
    ids = {Path(entry.path).name: entry.id for entry in listing}
    if file.filename not in ids:
        raise DriveAccessError(f"Google Drive folder {file.folder} does not hold {file.filename} (it lists "
                               f"{', '.join(sorted(ids)) or 'nothing'}). {_manual_route(file)}.")
    return ids[file.filename]


def _drive_call(file: DriveFile, file_id: str | None, call):
    """Run a gdown ``call`` for ``file``, translating its failures into vfe_hub's errors."""
    import gdown
    import requests

    what, ways_out = f"{file.filename} ({file.where(file_id)})", _manual_route(file, file_id)
    try:
        return call()
    except (requests.ConnectionError, requests.Timeout) as e:
        proxy = requests.utils.get_environ_proxies(DRIVE).get("https")
        url = f"{DRIVE}/uc?id={file_id or file.id}" if file_id or file.id else f"{DRIVE}/drive/folders/{file.folder}"
        raise hub.unreachable(proxy if proxy and isinstance(e, requests.exceptions.ProxyError) else url, e,
                              ways_out=ways_out) from e
    except gdown.exceptions.FileURLRetrievalError as e:
        text = " ".join(str(e).split())
        if "too many users" in text.lower() or "quota" in text.lower():
            raise DriveQuotaError(f"Google Drive refuses {what} for now: its download quota is exceeded (\"too many "
                                  f"users have viewed or downloaded this file recently\"; it resets within 24 hours). "
                                  f"{ways_out}.") from e
        raise DriveAccessError(f"Google Drive would not serve {what}: the file was removed, or is not shared with "
                               f"anyone who has the link (gdown: {text}). {ways_out}.") from e
    except gdown.exceptions.DownloadError as e:
        text = " ".join(str(e).split())
        if "incomplete" in text.lower():
            raise IncompleteDownloadError(f"The download of {what} from Google Drive ended early ({text}); nothing "
                                          f"was cached. Try again. {ways_out}.") from e
        if "folder" in text.lower():
            raise DriveAccessError(f"Google Drive would not list the folder of {what}: it was removed, or is not "
                                   f"shared with anyone who has the link (gdown: {text}). {ways_out}.") from e
        raise DownloadError(f"Could not download {what} from Google Drive (gdown: {text}). {ways_out}.") from e
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403, 404, 410):
            raise DriveAccessError(f"Google Drive would not serve {what} (HTTP {status}): the file was removed, or "
                                   f"is not shared with anyone who has the link. {ways_out}.") from e
        raise DownloadError(f"Could not download {what} from Google Drive (HTTP {status}). {ways_out}.") from e
    except requests.exceptions.ChunkedEncodingError as e:  # a body cut off in a page that gdown reads whole
        raise IncompleteDownloadError(f"The download of {what} from Google Drive ended early (the connection broke "
                                      f"off: {e}); nothing was cached. Try again. {ways_out}.") from e
    except requests.RequestException as e:  # whatever else requests reports
        raise DownloadError(f"Could not download {what} from Google Drive ({type(e).__name__}: {e}); nothing was "
                            f"cached. {ways_out}.") from e
