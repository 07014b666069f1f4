"""A fake file host for Teams file drops: real HTTP on 127.0.0.1, playing SharePoint/OneDrive or the
Bot Connector's attachment store.

bot.teams.files downloads from it as from Teams' hosts. As SharePoint it serves pre-authenticated
links (``/personal/<user>/_layouts/15/download.aspx?UniqueId=...&tempauth=<secret>``) that answer a plain
GET; as the Bot Connector it serves inline images (``/v3/attachments/<id>/views/original``) only to a
bearer token that ``authorize`` accepts (tests pass ``FakeBotConnector.token_ok``), 401 otherwise.

Each file can misbehave the way hosts do: answer 404/403/500 (``status``), answer late (``delay_s``
before the headers), drip the body (``drip_s`` between chunks), send no Content-Length (``chunked``),
declare a size other than what it sends (``declare``), send bytes past its Content-Length (``extra``).
``redirect`` makes a link that answers 302 to another URL. With a ``tls`` context it serves https. Every request is recorded (path, query,
headers) before it is answered, so tests can check where a token went and what was asked.
"""

from __future__ import annotations

import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, quote, urlsplit

from tests.fakes.net import FakeService, QuietHTTPServer


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names


@dataclass
class _Entry:
    content: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    delay_s: float = 0.0
    drip_s: float = 0.0
    chunked: bool = False
    declare: int | None = None
    extra: bytes = b""
    needs_token: bool = False
    location: str | None = None
    secret: str | None = None  # the tempauth a link must carry


class FakeFileHost(FakeService):
    """A file host on 127.0.0.1. ``start()`` it or use it as a context manager."""

    def __init__(self, authorize: Callable[[str | None], bool] | None = None, *,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: a server context (with the test's certificate) to serve https instead of http."""
        self.authorize = authorize or (lambda _header: False)
        self.tls = tls
        self.requests: list[Seen] = []
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._server: QuietHTTPServer | None = None

    # ----- lifecycle -----------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})

    def _listening(self, server: QuietHTTPServer) -> None:
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)

    @property
    def host_entry(self) -> str:
        """This host as an allow-list entry (host and port)."""
        return f"127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host_entry}"

    # ----- set-up ----------------------------------------------------------------------
    def add_file(self, name: str, content: bytes, *, content_type: str = "application/octet-stream",
                 status: int = 200, delay_s: float = 0.0, drip_s: float = 0.0, chunked: bool = False,
                 declare: int | None = None, extra: bytes = b"") -> str:
        """A file behind a pre-authenticated link; returns the link (its ``tempauth`` is a secret)."""
        unique_id = "{" + secrets.token_hex(4).upper() + "-0000-4000-8000-" + secrets.token_hex(6).upper() + "}"
        secret = secrets.token_urlsafe(24)
        path = f"/personal/ann_contoso_com/Documents/{quote(name)}"
        self._put(path, _Entry(content, content_type, status, delay_s, drip_s, chunked, declare, extra,
                               secret=secret))
        return f"{self.origin}{path}?UniqueId={quote(unique_id)}&tempauth={secret}&ApiVersion=2.0"

    def add_image(self, attachment_id: str, content: bytes, *, content_type: str = "image/png") -> str:
        """An inline image on the Bot Connector's attachment store; returns its contentUrl."""
        path = f"/amer/v3/attachments/{attachment_id}/views/original"
        self._put(path, _Entry(content, content_type, needs_token=True))
        return f"{self.origin}{path}"

    def redirect(self, to: str, *, status: int = 302) -> str:
        """A link on this host that answers ``status`` with ``Location: to``."""
        secret = secrets.token_urlsafe(24)
        path = f"/r/{secrets.token_hex(6)}"
        self._put(path, _Entry(status=status, location=to, secret=secret))
        return f"{self.origin}{path}?tempauth={secret}"

    def seen(self, url: str) -> list[Seen]:
        path = urlsplit(url).path
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _put(self, path: str, entry: _Entry) -> None:
        with self._lock:
            self._entries[path] = entry

    def _record(self, seen: Seen) -> _Entry | None:
        with self._lock:
            self.requests.append(seen)
            return self._entries.get(seen.path)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeFileHost
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        seen = Seen(parts.path, dict(parse_qsl(parts.query)), {k.lower(): v for k, v in self.headers.items()})
        entry = self.fake._record(seen)
        if entry is None or (entry.secret is not None and seen.query.get("tempauth") != entry.secret):
            return self._plain(404 if entry is None else 401, b'{"error":"invalid or expired link"}')
        if entry.needs_token and not self.fake.authorize(seen.headers.get("authorization")):
            return self._plain(401, b'{"message":"Authorization has been denied for this request."}')
        if entry.delay_s:
            time.sleep(entry.delay_s)
        if entry.location is not None:
            self.send_response(entry.status)
            self.send_header("Location", entry.location)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        if entry.status != 200:
            return self._plain(entry.status, b'{"error":"scripted failure"}')
        self._body(entry)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _body(self, entry: _Entry) -> None:
        self.send_response(200)
        self.send_header("Content-Type", entry.content_type)
        self.send_header("Connection", "close")
        if entry.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(entry.declare if entry.declare is not None else len(entry.content)))
        self.end_headers()
        data = entry.content + entry.extra
        step = 1 if entry.drip_s else 1 << 14
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if entry.chunked else piece)
            self.wfile.flush()
            if entry.drip_s:
                time.sleep(entry.drip_s)
        if entry.chunked:
            self.wfile.write(b"0\r\n\r\n")
