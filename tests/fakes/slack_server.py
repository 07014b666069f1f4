"""A fake Slack Web API: real HTTP on 127.0.0.1, one in-memory workspace.

IMP's bot talks to it through slack_sdk's ``WebClient(token=..., base_url=fake.api_url)``.
Tests set up the workspace (users, channels, files, history), script faults
(``rate_limit``, ``fail``), then read back what the bot did: every request is
recorded as a ``Call`` before it is answered, failed and 429 ones included.

Besides ``api/<method>`` the server answers file downloads (``files/<id>/<name>``,
bearer token required, otherwise a 302 to a login page as Slack does), the
upload URLs handed out by ``files.getUploadURLExternal`` (``upload/<id>``) and
interaction response URLs (``response_url/<name>``). The Web API methods
themselves live in ``slack_api``.

``Call.args`` holds the arguments as sent, query string and body merged. slack_sdk
sends chat.postMessage/update/postEphemeral and assistant.threads.setStatus as
JSON bodies (``blocks`` stays a list) and most others form-encoded, where a
structured argument is the JSON *string* it produced (files.completeUploadExternal's
``files``, ``blocks`` given to a form method). Stored messages have ``blocks`` decoded.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from tests.fakes import slack_api
from tests.fakes.net import FakeService, QuietHTTPServer


@dataclass
class Call:
    method: str  # "chat.postMessage", "download:<file_id>", "upload:<file_id>", "response_url:<name>"
    args: dict[str, Any]  # form/JSON/query args as sent; for response_url the JSON body
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class FakeSlack(FakeService):
    """One fake workspace. ``start()`` it (or use it as a context manager).

    The bot itself is a user from the start (``bot_user_id``, name "imp"). New
    message ts are unique and increasing, and always later than any ts a test
    gave ``add_message`` and than the ``thread_ts`` a reply is posted under.
    """

    def __init__(self, token: str = "xoxb-test-token", *, bot_user_id: str = "UIMPBOT",
                 bot_id: str = "BIMPBOT", team_id: str = "T0TEST") -> None:
        self.token = token
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.app_tokens: set[str] = {"xapp-test-token"}  # accepted by apps.connections.open only
        self.socket_url: str | None = None  # what apps.connections.open hands out
        self.calls: list[Call] = []
        self.uploads: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._users: dict[str, dict] = {}
        self._channels: dict[str, dict] = {}
        self._files: dict[str, dict] = {}
        self._contents: dict[str, bytes] = {}
        self._deleted: set[str] = set()
        self._history: dict[str, list[dict]] = {}
        self._pending_uploads: dict[str, dict] = {}
        self._faults: dict[str, deque[tuple[str, Any]]] = {}
        self._clock_us = 1_700_000_000_000_000
        self._ids = 0
        self._server: QuietHTTPServer | None = None
        self.add_user(bot_user_id, "imp", real_name="IMP", is_bot=True)

    # ----- lifecycle -----------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return self.url + "api/"

    # ----- what the bot did ----------------------------------------------------------
    def record(self, method: str, args: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.calls.append(Call(method, args, headers))

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 20.0,
                 where: Callable[[Call], bool] | None = None) -> list[Call]:
        """Poll until at least ``count`` calls to ``method`` (matching ``where``) exist."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_to(method) if where is None or where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                with self._lock:
                    seen = [c.method for c in self.calls]
                raise AssertionError(f"expected {count} call(s) to {method}, got {len(found)} "
                                     f"in {timeout:.1f} s; calls so far: {seen}")
            time.sleep(0.02)

    def messages(self, channel: str) -> list[dict]:
        """The channel's history, oldest first, thread replies included."""
        with self._lock:
            return copy.deepcopy(sorted(self._history.get(channel, []), key=lambda m: float(m["ts"])))

    # ----- workspace set-up -----------------------------------------------------------
    def add_user(self, user_id: str, name: str, *, real_name: str | None = None,
                 display_name: str | None = None, is_bot: bool = False, deleted: bool = False,
                 guest: str | None = None, team_id: str | None = None) -> dict:
        """Add a person. ``guest``: "multi" (is_restricted) or "single" (also is_ultra_restricted), as
        users.info marks guests. ``team_id``: another organisation's team makes a Slack Connect user,
        whom users.info marks ``is_stranger`` as Slack does for people outside the workspace."""
        real = real_name if real_name is not None else name
        team = team_id or self.team_id
        user = {"id": user_id, "team_id": team, "name": name, "real_name": real,
                "deleted": deleted, "is_bot": is_bot,
                "is_restricted": guest in ("multi", "single"), "is_ultra_restricted": guest == "single",
                "profile": {"real_name": real, "display_name": display_name or "", "team": team}}
        if team != self.team_id:
            user["is_stranger"] = True
        with self._lock:
            self._users[user_id] = user
        return copy.deepcopy(user)

    def add_channel(self, channel_id: str, name: str | None = None, *, members: Iterable[str] = (),
                    is_private: bool = False, is_im: bool = False, user: str | None = None,
                    is_ext_shared: bool = False) -> dict:
        """Add a channel. The bot is a member only if ``fake.bot_user_id`` is in ``members``
        (else posting answers not_in_channel); a DM (``is_im``) always has its ``user`` and the bot.
        ``is_ext_shared``: a Slack Connect channel, shared with another organisation."""
        members = list(members)
        if is_im:
            if user is None:
                raise ValueError("a DM needs its user")
            members += [m for m in (user, self.bot_user_id) if m not in members]
        channel = {"id": channel_id, "name": name if name is not None else ("" if is_im else channel_id.lower()),
                   "is_private": is_private, "is_im": is_im, "user": user if is_im else None,
                   "members": members, "is_ext_shared": is_ext_shared}
        with self._lock:
            self._channels[channel_id] = channel
            self._history.setdefault(channel_id, [])
        return copy.deepcopy(channel)

    def add_file(self, file_id: str, name: str, content: bytes, *, mimetype: str, filetype: str,
                 channels: Iterable[str] = (), user: str = "U0ALICE", title: str | None = None,
                 size: int | None = None) -> dict:
        with self._lock:
            return copy.deepcopy(self.new_file(file_id, name, content, mimetype=mimetype, filetype=filetype,
                                               channels=channels, user=user, title=title, size=size))

    def add_message(self, channel: str, text: str, *, user: str | None = None, bot_id: str | None = None,
                    ts: str | None = None, thread_ts: str | None = None, files: list[dict] | None = None,
                    subtype: str | None = None) -> str:
        """Store a message in ``channel``'s history (which must exist); returns its ts."""
        with self._lock:
            if channel not in self._channels:
                raise ValueError(f"unknown channel {channel}; add_channel it first")
            msg: dict[str, Any] = {"type": "message", "text": text, "user": user, "bot_id": bot_id,
                                   "subtype": subtype, "files": copy.deepcopy(files)}
            return self.store_message(channel, msg, ts=ts, thread_ts=thread_ts)["ts"]

    def delete_file(self, file_id: str) -> None:
        with self._lock:
            self._deleted.add(file_id)

    # ----- scripted faults ------------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer HTTP 429 with ``Retry-After``."""
        with self._lock:
            self._faults.setdefault(method, deque()).extend([("429", retry_after)] * times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        with self._lock:
            self._faults.setdefault(method, deque()).extend([("error", error)] * times)

    def take_fault(self, method: str) -> tuple[str, Any] | None:
        with self._lock:
            queue = self._faults.get(method)
            return queue.popleft() if queue else None

    def response_url(self, name: str = "r") -> str:
        """A URL on this server; POSTs to it are recorded as ``Call("response_url:<name>")``."""
        return f"{self.url}response_url/{name}"

    # ----- state helpers used by slack_api (call with the lock held) ------------------
    def new_ts(self, after: str | None = None) -> str:
        if after is not None:
            self._clock_us = max(self._clock_us, round(float(after) * 1_000_000))
        self._clock_us += 100
        return f"{self._clock_us // 1_000_000}.{self._clock_us % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}0FAKE{self._ids:05d}"

    def store_message(self, channel: str, msg: dict[str, Any], *, ts: str | None = None,
                      thread_ts: str | None = None) -> dict:
        msg = {k: v for k, v in msg.items() if v is not None}
        msg["ts"] = self.new_ts(after=thread_ts) if ts is None else ts
        if ts is not None:
            self.new_ts(after=ts)  # later messages get later ts
        history = self._history.setdefault(channel, [])
        if thread_ts is not None and thread_ts != msg["ts"]:
            msg["thread_ts"] = thread_ts
            for parent in history:
                if parent["ts"] == thread_ts:
                    parent["thread_ts"] = thread_ts
                    parent["reply_count"] = parent.get("reply_count", 0) + 1
        history.append(msg)
        return msg

    def new_file(self, file_id: str, name: str, content: bytes, *, mimetype: str, filetype: str,
                 channels: Iterable[str] = (), user: str, title: str | None = None,
                 size: int | None = None) -> dict:
        file: dict[str, Any] = {
            "id": file_id, "name": name, "title": title if title is not None else name,
            "mimetype": mimetype, "filetype": filetype,
            "size": len(content) if size is None else size, "user": user, "created": int(time.time()),
            "url_private": f"{self.url}files/{file_id}/{quote(name)}",
            "url_private_download": f"{self.url}files/{file_id}/{quote(name)}",
            "permalink": f"{self.url}team/files/{user}/{file_id}/{quote(name)}",
            "channels": [], "groups": [], "ims": []}
        self._files[file_id] = file
        self._contents[file_id] = content
        self._deleted.discard(file_id)
        for channel_id in channels:
            self.share_file(file, channel_id)
        return file

    def share_file(self, file: dict, channel_id: str) -> None:
        channel = self._channels.get(channel_id)
        if (channel and channel["is_im"]) or channel_id.startswith("D"):
            key = "ims"
        elif (channel and channel["is_private"]) or channel_id.startswith("G"):
            key = "groups"
        else:
            key = "channels"
        if channel_id not in file[key]:
            file[key].append(channel_id)

    def file_content(self, file_id: str) -> bytes | None:
        with self._lock:
            if file_id in self._deleted:
                return None
            return self._contents.get(file_id)


_LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack  # set on the subclass FakeSlack.start builds

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route()

    def do_POST(self) -> None:  # noqa: N802
        self._route()

    def _route(self) -> None:
        try:
            self._dispatch()
        except Exception:  # a bug in the fake: answer 500 with the traceback, not a dropped socket
            self._send(500, traceback.format_exc().encode(), "text/plain")

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        parts = split.path.strip("/").split("/")
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = dict(self.headers)
        if parts[0] == "api" and len(parts) == 2:
            self._api(parts[1], split.query, body, headers)
        elif parts[0] == "files" and len(parts) >= 2 and self.command == "GET":
            self._download(parts[1], headers)
        elif parts == ["login"]:
            self._send(200, _LOGIN_PAGE, "text/html; charset=utf-8")
        elif parts[0] == "upload" and len(parts) == 2 and self.command == "POST":
            self._upload(parts[1], body, headers)
        elif parts[0] == "response_url" and len(parts) == 2 and self.command == "POST":
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = {"_raw": body.decode(errors="replace")}
            self.fake.record(f"response_url:{parts[1]}", payload, headers)
            if not self._fault(f"response_url:{parts[1]}"):
                self._json(200, {"ok": True})
        else:
            self._send(404, b"not found", "text/plain")

    def _api(self, method: str, query: str, body: bytes, headers: dict[str, str]) -> None:
        args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        ctype = self.headers.get("content-type", "")
        if "json" in ctype:
            args.update(json.loads(body or b"{}"))
        elif "multipart/form-data" in ctype:
            args.update({k: v.decode(errors="replace") if isinstance(v, bytes) else v
                         for k, v in _multipart(body, ctype).items()})
        elif body:
            args.update(parse_qsl(body.decode(), keep_blank_values=True))
        self.fake.record(method, args, headers)
        if self._fault(method):
            return
        auth = self.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else str(args.get("token", ""))
        self._json(200, slack_api.call(self.fake, method, args, token))

    def _fault(self, method: str) -> bool:
        fault = self.fake.take_fault(method)
        if fault is None:
            return False
        kind, value = fault
        if kind == "429":
            self._json(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(value)})
        elif method.startswith(("download:", "upload:")):
            self._send(500, value.encode(), "text/plain")
        else:
            self._json(200, {"ok": False, "error": value})
        return True

    def _download(self, file_id: str, headers: dict[str, str]) -> None:
        self.fake.record(f"download:{file_id}", {}, headers)
        if self._fault(f"download:{file_id}"):
            return
        if self.headers.get("authorization", "") != f"Bearer {self.fake.token}":
            self.send_response(302)
            self.send_header("Location", f"{self.fake.url}login")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        content = self.fake.file_content(file_id)
        if content is None:
            self._send(404, b"file not found", "text/plain")
        else:
            self._send(200, content, "application/octet-stream")

    def _upload(self, file_id: str, body: bytes, headers: dict[str, str]) -> None:
        self.fake.record(f"upload:{file_id}", {"length": len(body)}, headers)
        if self._fault(f"upload:{file_id}"):
            return
        ctype = self.headers.get("content-type", "")
        data = body
        if "multipart/form-data" in ctype:
            parts = _multipart(body, ctype)
            data = next((v for v in parts.values() if isinstance(v, bytes)), b"")
        with self.fake._lock:
            if file_id not in self.fake._pending_uploads:
                self._send(404, b"unknown upload", "text/plain")
                return
            self.fake.uploads[file_id] = data
        self._send(200, f"OK - {len(data)}".encode(), "text/plain")

    def _json(self, status: int, payload: dict, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8", extra)

    def _send(self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _multipart(body: bytes, ctype: str) -> dict[str, str | bytes]:
    """Parts of a multipart/form-data body: text fields as str, file parts as bytes."""
    message = BytesParser(policy=policy.default).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    out: dict[str, str | bytes] = {}
    assert isinstance(message, EmailMessage)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        payload = part.get_payload(decode=True) or b""
        out[str(name)] = payload if part.get_filename() else payload.decode()
    return out
