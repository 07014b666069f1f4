"""A fake Microsoft Graph for files posted in Teams channels and group chats: real HTTP on 127.0.0.1.

IMP's Teams adapter (bot.teams.graph) asks it as it asks Graph: GET ``/v1.0/shares/{shareId}/driveItem``,
shareId = "u!" + the unpadded base64url of the file's SharePoint/OneDrive URL ("Access shared items").
It answers a driveItem (``id``, ``name``, ``size``, ``file``, ``@microsoft.graph.downloadUrl``) for
the files a test registers with ``add_file``: the bytes live on the fake SharePoint (tests/fakes/sharepoint.py),
whose pre-authenticated link is the download URL. A URL is matched as SharePoint matches paths, percent-
encoded or not. Every request must carry a live bearer token the fake token endpoint issued for Graph
(``authorize``: tests pass ``FakeBotConnector.token_ok`` with ``GRAPH_SCOPE``), else 401 as Graph answers.

Drives, for the check of where a shared file is kept: each driveItem names its drive
(``parentReference.driveId``): by default the drive of the team ``home_group``, another when a test
registers the file with ``drive_id``. GET ``/v1.0/teams/{group}/channels/{channel}/filesFolder`` answers
the channel's folder on its team's drive (or the drive ``set_channel_drive`` gave it: a private channel's
own site), GET ``/v1.0/users/{id}/drive`` that person's OneDrive. Drive ids are derived from their
owner (``group_drive``, ``user_drive``, ``site_drive``), so every team and person has one.

Faults, as Graph's: ``fail_next(n, 403)`` (the app lacks Files.Read.All), 404, 429 with Retry-After, 5xx,
for the next ``n`` requests that carry a good token. Every request is recorded before it is answered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.net import FakeService, QuietHTTPServer
from tests.fakes.sharepoint import FakeFileHost

HOME_GROUP = "0b7c4d2e-8f1a-4b3c-9d5e-6f7a8b9c0d1e"  # the team whose drive holds files registered without one


@dataclass
class GraphCall:
    path: str
    url: str | None  # the shared URL the shareId stands for, when it decodes
    headers: dict[str, str]  # lower-case names
    status: int = 0


@dataclass
class _Item:
    item_id: str
    name: str
    size: int
    download_url: str | None  # None: a folder
    web_url: str
    drive_id: str


def shared_url_of(share_id: str) -> str | None:
    """The URL a shareId encodes, or None when it is not one ("u!" and unpadded base64url)."""
    if not share_id.startswith("u!") or "=" in share_id:
        return None
    body = share_id[2:]
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


class FakeGraph(FakeService):
    """Graph's shares endpoint on 127.0.0.1, over a FakeFileHost. ``start()`` it or use it as a context manager."""

    def __init__(self, files: FakeFileHost, authorize: Callable[[str | None], bool], *,
                 home_group: str = HOME_GROUP) -> None:
        self.files = files
        self.authorize = authorize
        self.home_group = home_group
        self.calls: list[GraphCall] = []
        self._items: dict[str, _Item] = {}
        self._channel_drives: dict[tuple[str, str], str] = {}
        self._faults: deque[tuple[int, str | None]] = deque()
        self._lock = threading.Lock()
        self._server: QuietHTTPServer | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})

    @property
    def url(self) -> str:
        """The base IMP is given (IMP_TEAMS__GRAPH_URL), as Graph's ``https://graph.microsoft.com/v1.0/``."""
        return f"http://127.0.0.1:{self.port}/v1.0/"

    @property
    def host_entry(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ----- set-up and faults ---------------------------------------------------------
    def add_file(self, url: str, name: str, content: bytes, *, drive_id: str | None = None, **sharepoint: Any) -> str:
        """A file at ``url`` (its SharePoint/OneDrive place, spaces allowed) on drive ``drive_id`` (default: the
        home team's), its bytes on the fake SharePoint (``sharepoint`` as FakeFileHost.add_file takes them);
        returns its driveItem id."""
        item_id = "01" + base64.b32encode(secrets.token_bytes(20)).decode()
        link = self.files.add_file(name, content, **sharepoint)
        with self._lock:
            self._items[_key(url)] = _Item(item_id, name, len(content), link, url,
                                           drive_id or self.group_drive(self.home_group))
        return item_id

    def add_folder(self, url: str, name: str) -> str:
        item_id = "01" + base64.b32encode(secrets.token_bytes(20)).decode()
        with self._lock:
            self._items[_key(url)] = _Item(item_id, name, 0, None, url, self.group_drive(self.home_group))
        return item_id

    @staticmethod
    def group_drive(group_id: str) -> str:
        """The id of a team's document library (its Microsoft 365 group's drive)."""
        return _drive_id("group", group_id)

    @staticmethod
    def user_drive(user_id: str) -> str:
        """The id of a person's OneDrive (by Entra object id)."""
        return _drive_id("user", user_id)

    @staticmethod
    def site_drive(site: str) -> str:
        """The id of another site's document library (a private channel's site, the HR site)."""
        return _drive_id("site", site)

    def set_channel_drive(self, group_id: str, channel_id: str, drive_id: str) -> None:
        """The channel keeps its files on ``drive_id`` (a private or shared channel's own site)."""
        with self._lock:
            self._channel_drives[(group_id, channel_id)] = drive_id

    def channel_drive(self, group_id: str, channel_id: str) -> str:
        with self._lock:
            return self._channel_drives.get((group_id, channel_id)) or self.group_drive(group_id)

    def fail_next(self, count: int, status: int, *, retry_after: str | None = None) -> None:
        with self._lock:
            self._faults.extend((status, retry_after) for _ in range(count))

    def calls_for(self, url: str) -> list[GraphCall]:
        with self._lock:
            return [c for c in self.calls if c.url is not None and _key(c.url) == _key(url)]

    # ----- the handler's side --------------------------------------------------------
    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, Any, str | None]:
        """(status, JSON body, Retry-After) for one GET, recorded first."""
        segments = [unquote(part) for part in path.split("/")]
        shares = len(segments) == 5 and segments[:3] == ["", "v1.0", "shares"] and segments[4] == "driveItem"
        call = GraphCall(path, shared_url_of(segments[3]) if shares else None, headers)
        with self._lock:
            self.calls.append(call)
        channel = len(segments) == 7 and segments[:3] == ["", "v1.0", "teams"] and segments[4] == "channels" \
            and segments[6] == "filesFolder"
        user = len(segments) == 5 and segments[:3] == ["", "v1.0", "users"] and segments[4] == "drive"
        if not (shares or channel or user):
            return self._done(call, 400, _error("invalidRequest", "Invalid request"))
        if not self.authorize(headers.get("authorization")):
            return self._done(call, 401, _error("InvalidAuthenticationToken", "Access token validation failure."))
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            status, retry_after = fault
            code = {403: "accessDenied", 404: "itemNotFound", 429: "TooManyRequests"}.get(status, "serviceNotAvailable")
            return self._done(call, status, _error(code, "scripted fault"), retry_after)
        if channel:
            return self._done(call, 200, self._files_folder(segments[3], segments[5]))
        if user:
            return self._done(call, 200, {"@odata.context": f"{self.url}$metadata#drives/$entity",
                                          "id": self.user_drive(segments[3]), "driveType": "business",
                                          "name": "OneDrive"})
        if call.url is None:
            return self._done(call, 400, _error("invalidRequest", "The sharing token is malformed"))
        with self._lock:
            item = self._items.get(_key(call.url))
        if item is None:
            return self._done(call, 404, _error("itemNotFound", "The resource could not be found."))
        doc: dict[str, Any] = {"@odata.context": f"{self.url}$metadata#driveItem", "id": item.item_id,
                               "name": item.name, "size": item.size, "webUrl": item.web_url,
                               "eTag": f"\"{{{item.item_id[2:10]}}},1\"",
                               "parentReference": {"driveType": "documentLibrary", "driveId": item.drive_id}}
        if item.download_url is None:
            doc["folder"] = {"childCount": 0}
        else:
            doc["file"] = {"mimeType": "application/octet-stream"}
            doc["@microsoft.graph.downloadUrl"] = item.download_url
        return self._done(call, 200, doc)

    def _files_folder(self, group_id: str, channel_id: str) -> dict[str, Any]:
        """The driveItem of a channel's files folder, as Graph's filesFolder answers it."""
        folder_id = "01" + hashlib.sha256(channel_id.encode()).hexdigest()[:32].upper()
        drive = self.channel_drive(group_id, channel_id)
        return {"@odata.context": f"{self.url}$metadata#driveItem", "id": folder_id, "name": "General",
                "folder": {"childCount": 1}, "parentReference": {"driveType": "documentLibrary", "driveId": drive}}

    def _done(self, call: GraphCall, status: int, body: Any, retry_after: str | None = None
              ) -> tuple[int, Any, str | None]:
        call.status = status
        return status, body, retry_after


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGraph
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, retry_after = self.fake.answer(urlsplit(self.path).path, headers)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)


def _drive_id(kind: str, owner: str) -> str:
    return "b!" + base64.urlsafe_b64encode(hashlib.sha256(f"{kind}:{owner}".encode()).digest()).decode().rstrip("=")


def _key(url: str) -> str:
    return unquote(url)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": secrets.token_hex(8)}}}
