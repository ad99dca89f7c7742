"""A small in-memory stand-in for the Hugging Face Hub, served over HTTP on 127.0.0.1.

It speaks the part of the Hub protocol that ``huggingface_hub`` 2.4 uses for
``hf_hub_download``, ``snapshot_download``, ``HfApi.model_info`` / ``dataset_info`` /
``list_repo_tree``, ``HfApi.create_repo`` and ``HfApi.upload_folder`` / ``create_commit`` (with
``HF_HUB_DISABLE_XET=1``, i.e. the git-LFS "basic" transfer), so that tests run the real client
code against it.

Every served file is presented like an LFS file on the real Hub, and sent directly (without the
real Hub's redirect to a CDN). ``HEAD``/``GET`` on ``/{repo}/resolve/{revision}/{path}`` answer
``X-Repo-Commit`` (full commit id), ``ETag`` (quoted git blob sha1), ``X-Linked-Etag`` (quoted
sha256 of the content, which huggingface_hub prefers and names the cache blob after),
``X-Linked-Size``, ``Content-Length``, ``Accept-Ranges: bytes``, ``Content-Type`` and, for a
``Range`` request, 206 with ``Content-Range``. Errors carry ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``), ``X-Error-Message`` and a JSON ``{"error": ...}`` body.

Not emulated: authentication (any or no token is accepted), private/gated repos, tags, pull
requests (``create_pr``), ``CommitOperationCopy`` (needs ``paths-info``), ``.gitignore`` handling
in preupload, README metadata validation (always accepted), LFS multipart transfers, the Xet
protocol, and HTTP keep-alive (every response closes its connection).
"""

import base64
import functools
import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

# Repo types as they appear in API paths (`/api/models/...`) and in file URLs (`/datasets/...`).
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX_TYPES = {None: "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# Files that preupload sends through LFS rather than inline in the commit, like the Hub's default
# `.gitattributes` and its rule for binary or large files.
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".npy", ".npz", ".pkl", ".gguf")
_LFS_MIN_SIZE = 10 * 1024 * 1024

_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"  # "name" or "namespace/name"
_TYPE_PREFIX = r"(?:(?P<prefix>datasets|spaces)/)?"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SHORT_COMMIT = re.compile(r"[0-9a-f]{7,40}")


_INVERTED = bytes(range(255, -1, -1))  # bytes.translate table: every byte b -> 255 - b (= b ^ 0xFF)


@functools.lru_cache(maxsize=64)
def sha256_hex(data: bytes) -> str:
    """The hex sha256 of ``data`` (memoised: large test files are hashed once, not per request)."""
    return hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=64)
def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Commit:
    """One commit: its id, parent id, summary and the full tree as ``{path: content}``."""

    oid: str
    parent: str | None
    message: str
    files: Mapping[str, bytes]


@dataclass
class _Repo:
    commits: dict[str, Commit] = field(default_factory=dict)  # by oid, oldest first
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit oid


class HubError(Exception):
    """An error answer of the Hub: HTTP status, ``X-Error-Code`` and message."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit  # sent as X-Repo-Commit (the Hub does so on EntryNotFound)


class FakeHub:
    """In-memory repositories plus the HTTP server exposing them.

    Repositories are keyed by ``(repo_type, repo_id)``; ``repo_type`` is ``"model"``,
    ``"dataset"`` or ``"space"``. All methods are thread-safe.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        """Every request received, as ``(method, unquoted path without query string)``."""
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._objects: dict[str, bytes] = {}  # every known content by sha256 (the LFS store)
        self._corrupted: set[tuple[str, str, str]] = set()
        self._truncated: dict[tuple[str, str, str], int | None] = {}  # -> responses left to cut, None = all
        self._lock = threading.RLock()
        self._server: "_Server | None" = None
        self._thread: threading.Thread | None = None
        self._endpoint: str | None = None

    # ----------------------------------------------------------------------------- content

    def add_file(
        self, repo_id: str, path: str, data: bytes, revision: str | None = None, repo_type: str = "model"
    ) -> str:
        """Commit ``data`` at ``path`` on branch ``revision`` (default ``main``); return the commit id.

        The repository and the branch are created if needed (a new branch starts from ``main``).
        The new commit holds all files of its parent plus this one.
        """
        with self._lock:
            repo = self._repos.setdefault((repo_type, repo_id), _Repo())
            branch = revision or "main"
            parent = repo.branches.get(branch, repo.branches.get("main"))
            return self._commit(repo_type, repo_id, branch, parent, {path: data}, f"Upload {path}")

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """The ids of all commits of a repository, oldest first."""
        with self._lock:
            return list(self._get_repo(repo_type, repo_id).commits)

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """The branches of a repository, as ``{name: commit id}``."""
        with self._lock:
            return dict(self._get_repo(repo_type, repo_id).branches)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of a repository at a branch, a commit id or a commit id prefix."""
        with self._lock:
            return dict(self._resolve(repo_type, repo_id, revision).files)

    def corrupt(self, repo_id: str, path: str, repo_type: str = "model") -> None:
        """Serve this file with every byte inverted: same length, sha256 differs from X-Linked-Etag."""
        with self._lock:
            self._corrupted.add((repo_type, repo_id, path))

    def truncate(self, repo_id: str, path: str, repo_type: str = "model", times: int | None = None) -> None:
        """Make GET responses for this file stop at half of the file and close the connection.

        The full ``Content-Length`` is still announced. The cut is at the same offset of the file
        for every response, Range requests included, so a client that resumes gets no further.
        With ``times``, only the next ``times`` GET responses are cut (to let a resume succeed).

        Note that huggingface_hub 2.4 keeps only whole ``DOWNLOAD_CHUNK_SIZE`` (10 MiB) chunks read
        before a cut: a smaller file is downloaded again from its start, 5 more times, 1 s apart.
        """
        with self._lock:
            self._truncated[(repo_type, repo_id, path)] = times

    # ------------------------------------------------------------------------------ server

    def start(self) -> None:
        """Serve on a free port of 127.0.0.1 from a daemon thread."""
        server = _Server(self)
        self._server = server
        self._endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
        )  # a short poll interval makes `stop()` quick
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket: later connections are refused.

        Responses never keep their connection alive, so no client holds an open one.
        """
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` (kept after ``stop()``, to show the port is closed)."""
        if self._endpoint is None:
            raise RuntimeError("FakeHub has not been started")
        return self._endpoint

    # ------------------------------------------------------------------- internals (locked)

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository {repo_type}/{repo_id} not found")
        return repo

    def _resolve(self, repo_type: str, repo_id: str, revision: str) -> Commit:
        """The commit a branch, a full commit id or a commit id prefix (7+ hex chars) points to."""
        repo = self._get_repo(repo_type, repo_id)
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if _SHORT_COMMIT.fullmatch(revision):
            matches = [oid for oid in repo.commits if oid.startswith(revision)]
            if len(matches) == 1:
                return repo.commits[matches[0]]
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _branch_head(self, repo_type: str, repo_id: str, branch: str) -> Commit | None:
        """The head of a branch to commit to; ``None`` for ``main`` of a repository without commits."""
        repo = self._get_repo(repo_type, repo_id)
        if branch in repo.branches:
            return repo.commits[repo.branches[branch]]
        if branch == "main":
            return None
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch} (commits go to branches)")

    def _commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        parent: str | None,
        changes: Mapping[str, bytes | None],
        message: str,
    ) -> str:
        """Apply ``changes`` (``None`` deletes a path) on top of ``parent`` and move ``branch`` there.

        The commit id is the sha1 of the repo, parent, message and changed paths and contents.
        """
        repo = self._repos[(repo_type, repo_id)]
        files = dict(repo.commits[parent].files) if parent else {}
        digest = hashlib.sha1(f"{repo_type}/{repo_id}\n{parent or ''}\n{message}\n".encode())
        for path, data in sorted(changes.items()):
            if data is None:
                files.pop(path, None)
                digest.update(f"delete {path}\n".encode())
            else:
                files[path] = data
                sha256 = hashlib.sha256(data).hexdigest()
                self._objects[sha256] = data
                digest.update(f"add {path} {sha256}\n".encode())
        oid = digest.hexdigest()
        repo.commits[oid] = Commit(oid=oid, parent=parent, message=message, files=files)
        repo.branches[branch] = oid
        return oid


@dataclass
class _Response:
    """What a route answers; ``length`` overrides the Content-Length announced for ``body``."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    length: int | None = None


def _json(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> _Response:
    return _Response(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: FakeHub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the Hub endpoint it belongs to; `HubError` becomes a Hub error answer.

    Routes run under the hub's lock and return a `_Response`; reading the request body and
    writing the response happen outside it.
    """

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: `stop()` leaves nothing open
    hub: FakeHub
    query: dict[str, str]  # last value of each query parameter
    body: bytes

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr log; requests are recorded in `FakeHub.requests`."""

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.hub = hub = self.server.hub
        raw_path, _, query = self.path.partition("?")
        hub.requests.append((self.command, unquote(raw_path)))
        self.query = {key: values[-1] for key, values in parse_qs(query).items()}
        self.body = self._read_body()
        try:
            with hub._lock:
                response = self._route(raw_path)
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            response = _json({"error": error.message}, status=error.status, headers=headers)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body) if response.length is None else response.length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)  # the connection closes after it (HTTP/1.0)

    def _route(self, raw_path: str) -> _Response:
        for methods, pattern, route in _ROUTES:
            match = re.fullmatch(pattern, raw_path)
            if match and self.command in methods:
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                if "repo" in args:
                    api_type, prefix = args.pop("api_type", None), args.pop("prefix", None)
                    args["repo_type"] = _API_TYPES[api_type] if api_type else _PREFIX_TYPES[prefix]
                return route(self, **args)
        raise HubError(404, None, f"No route for {self.command} {raw_path}")

    def _read_body(self) -> bytes:
        """The request body, sent with Content-Length or chunked (httpx may stream file uploads)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)

    def _url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.hub.endpoint}/{_URL_PREFIXES[repo_type]}{repo_id}"

    # -------------------------------------------------------------------------- downloads

    def resolve(self, repo_type: str, repo: str, rev: str, path: str) -> _Response:
        """HEAD/GET ``/{prefix}{repo}/resolve/{rev}/{path}``: the file, with the Hub's metadata headers."""
        commit = self.hub._resolve(repo_type, repo, rev)
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}", commit=commit.oid)
        data = commit.files[path]
        key = (repo_type, repo, path)
        body = data.translate(_INVERTED) if key in self.hub._corrupted else data
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{git_blob_sha1(data)}"',
            "X-Linked-Etag": f'"{sha256_hex(data)}"',
            "X-Linked-Size": str(len(data)),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, start, end = 200, 0, len(data)
        if "Range" in self.headers:
            match = _RANGE.fullmatch(self.headers["Range"].strip())
            if match is None or match.groups() == ("", ""):
                raise HubError(416, None, f"Unsupported range {self.headers['Range']}")
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last) + 1, len(data)) if last else len(data)
            else:
                start = max(len(data) - int(last), 0)
            if start >= end:
                return _Response(416, {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        cuts_left = self.hub._truncated.get(key, 0)
        if self.command == "GET" and cuts_left != 0:
            if cuts_left is not None:
                self.hub._truncated[key] = cuts_left - 1
            # Announce the full length but send only up to the middle of the file.
            return _Response(status, headers, body[start : max(start, min(end, len(data) // 2))], length=end - start)
        return _Response(status, headers, body[start:end])

    def repo_info(self, repo_type: str, repo: str, rev: str = "main") -> _Response:
        """GET ``/api/{type}s/{repo}[/revision/{rev}]``: minimal model/dataset info (sha, siblings)."""
        commit = self.hub._resolve(repo_type, repo, rev)
        siblings = [
            {"rfilename": p, "size": len(d), "blobId": git_blob_sha1(d), "lfs": _lfs_info(d, key="sha256")}
            for p, d in sorted(commit.files.items())
        ]
        return _json({"id": repo, "sha": commit.oid, "private": False, "siblings": siblings})

    def tree(self, repo_type: str, repo: str, rev: str, folder: str = "") -> _Response:
        """GET ``/api/{type}s/{repo}/tree/{rev}[/{folder}]``, ``?recursive=`` honoured.

        Folder entries carry a made-up oid (not a git tree id).
        """
        commit = self.hub._resolve(repo_type, repo, rev)
        root = f"{folder.strip('/')}/" if folder else ""
        recursive = self.query.get("recursive", "").lower() == "true"
        entries: dict[str, dict] = {}
        for path, data in commit.files.items():
            if not path.startswith(root):
                continue
            parts = path.split("/")
            for depth in range(root.count("/") + 1, len(parts)):
                directory = "/".join(parts[:depth])
                oid = hashlib.sha1(directory.encode()).hexdigest()
                entries[directory] = {"type": "directory", "oid": oid, "size": 0, "path": directory}
            entries[path] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path,
                             "lfs": _lfs_info(data, key="oid")}
        listing = [entry for path, entry in sorted(entries.items()) if recursive or "/" not in path[len(root):]]
        if folder and not listing:
            raise HubError(404, "EntryNotFound", f"{folder} does not exist at {rev}", commit=commit.oid)
        return _json(listing)

    # ---------------------------------------------------------------------------- uploads

    def create_repo(self) -> _Response:
        """POST ``/api/repos/create``: an empty repository (409 if it exists)."""
        payload = json.loads(self.body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if (repo_type, repo_id) in self.hub._repos:
            raise HubError(409, None, "You already created this repo")
        self.hub._repos[(repo_type, repo_id)] = _Repo()
        return _json({"url": self._url(repo_type, repo_id), "name": repo_id})

    def validate_yaml(self) -> _Response:
        """POST ``/api/validate-yaml``: README metadata is accepted as is."""
        return _json({"errors": [], "warnings": []})

    def preupload(self, repo_type: str, repo: str, rev: str) -> _Response:
        """POST ``/api/{type}s/{repo}/preupload/{rev}``: "lfs" or "regular" per file, and its current oid."""
        head = self.hub._branch_head(repo_type, repo, rev)
        answer = []
        for file in json.loads(self.body)["files"]:
            sample = base64.b64decode(file["sample"])
            lfs = file["path"].endswith(_LFS_SUFFIXES) or b"\0" in sample or file["size"] >= _LFS_MIN_SIZE
            current = head.files.get(file["path"]) if head else None
            oid = None if current is None else sha256_hex(current) if lfs else git_blob_sha1(current)
            mode = "lfs" if lfs else "regular"
            answer.append({"path": file["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return _json({"files": answer})

    def lfs_batch(self, repo_type: str, repo: str) -> _Response:
        """POST ``/{prefix}{repo}.git/info/lfs/objects/batch``: basic-transfer upload actions for new objects."""
        self.hub._get_repo(repo_type, repo)
        objects = []
        for obj in json.loads(self.body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub._objects:
                entry["actions"] = {"upload": {"href": f"{self.hub.endpoint}/_lfs/{obj['oid']}"}}
            objects.append(entry)
        body = json.dumps({"transfer": "basic", "objects": objects}).encode()
        return _Response(200, {"Content-Type": "application/vnd.git-lfs+json"}, body)

    def lfs_upload(self, oid: str) -> _Response:
        """PUT ``/_lfs/{oid}``: store an LFS object after checking its sha256."""
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, None, f"Uploaded content does not match sha256 {oid}")
        self.hub._objects[oid] = self.body
        return _Response(200, {})

    def commit(self, repo_type: str, repo: str, rev: str) -> _Response:
        """POST ``/api/{type}s/{repo}/commit/{rev}``: apply an ndjson list of file operations."""
        if self.query.get("create_pr"):
            raise HubError(400, None, "create_pr is not emulated by FakeHub")
        head = self.hub._branch_head(repo_type, repo, rev)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        parent_commit = header.get("parentCommit")
        if parent_commit and not (head and head.oid.startswith(parent_commit)):
            raise HubError(412, None, f"Parent commit {parent_commit} is not the head of {rev}")
        files = head.files if head else {}
        changes: dict[str, bytes | None] = {}
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.hub._objects:
                    raise HubError(422, None, f"LFS object {value['oid']} of {value['path']} was not uploaded")
                changes[value["path"]] = self.hub._objects[value["oid"]]
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
                changes[value["path"]] = None
            elif key == "deletedFolder":
                changes.update({path: None for path in files if path.startswith(value["path"].rstrip("/") + "/")})
        oid = self.hub._commit(repo_type, repo, rev, head.oid if head else None, changes, header["summary"])
        url = f"{self._url(repo_type, repo)}/commit/{oid}"
        return _json({"success": True, "commitOid": oid, "commitMessage": header["summary"], "commitUrl": url,
                      "pullRequestUrl": None})


def _lfs_info(data: bytes, key: str) -> dict:
    """LFS pointer info; the Hub names the sha256 ``oid`` in tree listings and ``sha256`` in siblings."""
    return {key: sha256_hex(data), "size": len(data), "pointerSize": 134}


_API = r"/api/(?P<api_type>models|datasets|spaces)/" + _REPO
_ROUTES = [
    (("POST",), r"/api/repos/create", _Handler.create_repo),
    (("POST",), r"/api/validate-yaml", _Handler.validate_yaml),
    (("GET",), _API + r"(?:/revision/(?P<rev>[^/]+))?", _Handler.repo_info),
    (("GET",), _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<folder>.+))?", _Handler.tree),
    (("POST",), _API + r"/preupload/(?P<rev>[^/]+)", _Handler.preupload),
    (("POST",), _API + r"/commit/(?P<rev>[^/]+)", _Handler.commit),
    (("POST",), "/" + _TYPE_PREFIX + _REPO + r"\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    (("PUT",), r"/_lfs/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    (("HEAD", "GET"), "/" + _TYPE_PREFIX + _REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _Handler.resolve),
]
