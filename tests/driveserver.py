"""A small stand-in for Google Drive on 127.0.0.1, for the real gdown client (the one vfe_hub uses).

gdown always starts at ``https://drive.google.com`` and follows the hosts Drive's pages name, so the stand-in is
reached the way vfe_hub documents for reaching Drive through a proxy: it is an HTTP proxy (``HTTPS_PROXY``) that
answers the ``CONNECT`` tunnels to Drive's hosts itself, under TLS with a certificate for those host names issued
by a test CA (``trustme``; ``REQUESTS_CA_BUNDLE`` names it). Inside the tunnels it speaks the part of Drive that
gdown 6 uses, as Drive answers today:

- ``GET drive.google.com/uc?id=ID`` redirects (303) to ``drive.usercontent.google.com/download?id=ID&export=download``;
- there a file answers ``200`` with ``Content-Disposition: attachment; filename="..."``, ``Content-Length`` and its
  bytes; a file of at least ``large`` bytes first answers the "can't scan this file for viruses" page (HTML) whose
  ``<form id="download-form">`` (hidden ``id``, ``export``, ``confirm=t``, ``uuid``) confirms the download;
- ``GET drive.google.com/embeddedfolderview?id=FOLDER`` lists a folder: a ``<title>`` and one
  ``<a href="https://drive.google.com/file/d/ID/view">name</a>`` per file.

Failure pages (:meth:`FakeDrive.fail`): ``"quota"`` (Drive's error page whose ``uc-error-subcaption`` says "Too many
users have viewed or downloaded this file recently"), ``"removed"`` (a 404 page), ``"denied"`` (the redirect of a
private file to Google's sign-in page), ``"html"`` (an HTML page sent as the attachment), ``"truncate"`` (the
full ``Content-Length`` announced, half the bytes sent, the connection closed) and ``"dropped"`` (the same cut in
the middle of a page gdown reads whole: the answer to ``/download`` is a page whose transfer breaks off). Unknown
ids and folders answer 404.

Not emulated: Google Docs exports, cookies, range requests (gdown resumes only when asked), HTTP/2.
"""
from __future__ import annotations

import html
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import trustme

HOSTS = ("drive.google.com", "drive.usercontent.google.com", "accounts.google.com")
FAILURES = ("quota", "removed", "denied", "html", "truncate", "dropped")
_QUOTA = ("Too many users have viewed or downloaded this file recently. Please try accessing the file again later. "
          "If the file you are trying to access is particularly large or is shared with many people, it may take up "
          "to 24 hours to be able to view or download the file.")


@dataclass
class _File:
    name: str
    data: bytes
    failure: str | None = None


@dataclass
class FakeDrive:
    """Files and folders served by id; ``requests`` records ``(host, path)`` of every request in a tunnel."""

    ca: trustme.CA = field(default_factory=trustme.CA)
    #: files of at least this many bytes go through the virus-scan confirmation page
    large: int = 1 << 20
    files: dict[str, _File] = field(default_factory=dict)
    folders: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def add_file(self, file_id: str, name: str, data: bytes) -> None:
        self.files[file_id] = _File(name, data)

    def add_folder(self, folder_id: str, name: str, file_ids: list[str]) -> None:
        self.folders[folder_id] = (name, file_ids)

    def fail(self, file_id: str, failure: str | None) -> None:
        """Answer ``file_id`` with one of :data:`FAILURES` (``None``: serve it again)."""
        assert failure is None or failure in FAILURES, failure
        self.files[file_id].failure = failure

    def write_ca(self, path: Path) -> Path:
        """The test CA's certificate as PEM (for ``REQUESTS_CA_BUNDLE``)."""
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*HOSTS).configure_cert(context)
        self._server = _Server(self, context)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def proxy(self) -> str:
        """The proxy URL (for ``HTTPS_PROXY``)."""
        return f"http://127.0.0.1:{self._server.server_port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, drive: FakeDrive, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.drive, self.context = drive, context


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_CONNECT(self) -> None:
        host = self.path.rsplit(":", 1)[0]
        if host not in HOSTS:
            self._send(502, b"not a Drive host")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        try:
            tls = self.server.context.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection, self.rfile, self.wfile = tls, tls.makefile("rb"), tls.makefile("wb", 0)
        self.close_connection = False
        try:
            while not self.close_connection:
                self.handle_one_request()
        finally:
            tls.close()  # the server closes only the socket it accepted, which TLS took over

    def do_GET(self) -> None:
        host, url = self.headers.get("Host", ""), urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.drive.requests.append((host, self.path))
        if host == "drive.google.com" and url.path == "/uc" and "id" in query:
            self._uc(query["id"])
        elif host == "drive.usercontent.google.com" and url.path == "/download" and "id" in query:
            self._download(query)
        elif host == "drive.google.com" and url.path == "/embeddedfolderview" and "id" in query:
            self._folder(query["id"])
        elif host == "accounts.google.com":
            self._page(200, "Sign in - Google Accounts", "<p>Sign in to continue to Google Drive</p>")
        else:
            self._page(404, "Error 404 (Not Found)", "<p>The requested URL was not found on this server.</p>")

    def _uc(self, file_id: str) -> None:
        file = self.server.drive.files.get(file_id)
        if file is not None and file.failure == "denied":
            self._redirect(f"https://accounts.google.com/ServiceLogin?service=wise&continue="
                           f"https://drive.google.com/uc?id%3D{file_id}")
        else:
            self._redirect("https://drive.usercontent.google.com/download?" + urlencode({"id": file_id,
                                                                                       "export": "download"}))

    def _download(self, query: dict[str, str]) -> None:
        drive, file_id = self.server.drive, query["id"]
        file = drive.files.get(file_id)
        if file is None or file.failure == "removed":
            self._page(404, "Google Drive - Page Not Found",
                       "<p>Sorry, the file you have requested does not exist.</p>")
        elif file.failure == "quota":
            self._page(200, "Google Drive - Quota exceeded",
                       '<p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this time.</p>'
                       f'\n<p class="uc-error-subcaption">{_QUOTA}</p>')
        elif len(file.data) >= drive.large and query.get("confirm") != "t":
            form = "".join(f'<input type="hidden" name="{k}" value="{v}">'
                           for k, v in (("id", file_id), ("export", "download"), ("confirm", "t"), ("uuid", "0c9b")))
            self._page(200, "Google Drive - Virus scan warning",
                       f"<p>Google Drive can&#39;t scan this file for viruses.</p><p>{html.escape(file.name)} is too "
                       f"large for Google to scan for viruses. Would you still like to download this file?</p>"
                       f'<form id="download-form" action="https://drive.usercontent.google.com/download" '
                       f'method="get"><input type="submit" value="Download anyway">{form}</form>')
        elif file.failure == "dropped":
            page = b"<!DOCTYPE html><html><head><title>Google Drive</title></head><body>" + b" " * 4096 + b"</body>"
            self._send(200, page[:len(page) // 2], "text/html; charset=utf-8", length=len(page))
            self.close_connection = True
        elif file.failure == "html":
            self._send(200, b"<!DOCTYPE html><html><head><title>Google Drive</title></head><body></body></html>",
                       "text/html; charset=utf-8", {"Content-Disposition": f'attachment; filename="{file.name}"'})
        else:
            disposition = {"Content-Disposition": f'attachment; filename="{file.name}"'}
            if file.failure == "truncate":
                self._send(200, file.data[:len(file.data) // 2], "application/octet-stream", disposition,
                           length=len(file.data))
                self.close_connection = True
            else:
                self._send(200, file.data, "application/octet-stream", disposition)

    def _folder(self, folder_id: str) -> None:
        drive = self.server.drive
        if folder_id not in drive.folders:
            self._page(404, "Error 404 (Not Found)", "<p>The requested URL was not found on this server.</p>")
            return
        name, file_ids = drive.folders[folder_id]
        links = "".join(f'<div class="flip-entry"><a href="https://drive.google.com/file/d/{i}/view?usp=drive_web" '
                        f'target="_blank"><div class="flip-entry-title">{html.escape(drive.files[i].name)}</div></a>'
                        f"</div>" for i in file_ids)
        self._page(200, name, f'<div class="flip-entries">{links}</div>')

    def _redirect(self, location: str) -> None:
        self._send(303, b"", "text/html; charset=utf-8", {"Location": location})

    def _page(self, status: int, title: str, body: str) -> None:
        page = f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>{body}</body></html>"
        self._send(status, page.encode(), "text/html; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain",
              headers: dict[str, str] | None = None, length: int | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": content_type, "Content-Length": str(len(body) if length is None else length),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
