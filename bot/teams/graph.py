"""Files posted in Teams channels and group chats, found through Microsoft Graph: the step between a
``reference`` attachment (bot.teams.events.SharedFile) and the download (bot.teams.files.TeamsFiles).

Teams keeps such a file in the team's SharePoint site or the sender's OneDrive, and the activity carries
only its place there (``contentUrl``). ``GraphFiles.resolve`` asks Graph for the file behind that place
("Access shared items": GET {graph}/shares/{shareId}/driveItem, shareId = "u!" + unpadded base64url of
the URL), which answers a driveItem: its ``id``, ``name``, ``size``, the ``file`` facet (a folder has
none) and ``@microsoft.graph.downloadUrl``, a pre-authenticated link of the same kind as a 1:1 chat's
``downloadUrl``, valid for minutes, so the Teams task host resolves right before it downloads. The
driveItem's ``parentReference.driveId`` says which drive holds the file; ``channel_drive`` (GET
{graph}/teams/{group}/channels/{channel}/filesFolder) and ``user_drive`` (GET {graph}/users/{id}/drive)
say which drive a channel and a person keep their Teams files in, so bot/teams/file_places.py can refuse
a file kept anywhere else.

The Graph token is the bot's own app (client credentials, scope ``https://graph.microsoft.com/.default``,
a second bot.teams.token.BotTokenProvider); reading files and drives needs the application permission
Files.Read.All granted to the app registration with admin consent, and a 403 says so to the person who
shared the file.

Safety, as for downloads: the Graph URL (``IMP_TEAMS__GRAPH_URL``) must be https on Microsoft Graph's host
or one listed in the extra hosts (plain http only to a loopback host listed with its port, for tests);
a reference is looked up only when it points at SharePoint/OneDrive (``file_hosts``); redirects are
not followed; the answer is read within ``MAX_JSON_BYTES`` and the time allowed; a 401 fetches one
fresh token, once; 429 and 5xx wait for Retry-After (capped) a few times, then give up with a reason.
Logs and messages name hosts and file names only: never a URL (a download link's query is a credential).
``GraphFiles`` holds no state between calls but its token provider's cache: threads may share it.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from bot.teams.connector import TokenSource, retry_after
from bot.teams.events import SharedFile
from bot.teams.file_links import (
    FileDownloadFailed,
    FileDownloadTimeout,
    FileGone,
    Link,
    TeamsFileError,
    UnusableAttachment,
    check_link,
    open_get,
)
from bot.teams.files import DEFAULT_FILE_HOSTS
from bot.teams.mentions import clean_name
from core.errors import InvalidRequest, NotFound

log = logging.getLogger(__name__)

GRAPH_URL = "https://graph.microsoft.com/v1.0/"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_GRAPH_HOSTS = ("graph.microsoft.com",)
PERMISSION = "Files.Read.All"
MAX_JSON_BYTES = 1 << 20  # a driveItem is a few KB
_ITEM_ID = re.compile(r"^[A-Za-z0-9!._-]{1,200}$")  # SharePoint "01BYE5RZ…", OneDrive "D4648F06C91D9D3D!54927"
_FILE_TYPE = re.compile(r"^[a-z0-9]{1,16}$")
_DRIVE_ID = re.compile(r"^[A-Za-z0-9!._~-]{1,256}$")  # business "b!t18F8y…", personal "b0ad8d3b8a6c5f2e"
_RETRY = {429, 500, 502, 503, 504}
_CHUNK = 1 << 16


class GraphAccessDenied(TeamsFileError):
    """Graph refused IMP's app (403, or 401 with a fresh token): the app lacks Files.Read.All."""

    code = "graph_access_denied"


class GraphFileNotFound(FileGone):
    """Graph knows no file at the shared place (404/410): deleted, moved, or never a file."""


class GraphUnavailable(FileDownloadFailed):
    """Graph failed (5xx, unreachable, a redirect, an unusable answer)."""

    code = "graph_unavailable"


class GraphPlaceUnknown(TeamsFileError, NotFound):
    """Graph knows no such channel files folder or OneDrive (404/400): where the files belong cannot be checked."""

    code = "graph_place_unknown"


class GraphBusy(GraphUnavailable):
    """Graph kept throttling (429) or failing past the retries allowed."""

    code = "graph_busy"


@dataclass(frozen=True)
class DriveFile:
    """The file behind a shared place, as Graph answered. ``download_url`` is a credential: never log it."""

    name: str
    download_url: str = field(repr=False)
    item_id: str  # the driveItem id
    size: int | None
    file_type: str  # the name's extension, lower case, "" if none
    drive_id: str | None = None  # the drive that holds it (parentReference.driveId), None if Graph gave none


def share_id(url: str) -> str:
    """The shareId Graph takes for a sharing URL: "u!" and the URL's unpadded base64url."""
    return "u!" + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


class GraphFiles:
    """Finds the file behind a Teams ``reference`` attachment through Microsoft Graph.

    ``tokens`` gives bearer tokens for Graph (a BotTokenProvider with ``GRAPH_SCOPE``). ``graph_hosts``
    are where ``graph_url`` may point, ``file_hosts`` where a reference may; ``extra_hosts`` add to both
    (entries as in bot.teams.files.TeamsFiles: "host:port" is the only way to allow plain http).
    ``attempts`` bounds tries when throttled or failing, ``max_retry_after_s`` one wait, ``total_timeout_s``
    the whole lookup, waits included.
    """

    def __init__(self, tokens: TokenSource, graph_url: str = GRAPH_URL, *,
                 graph_hosts: Iterable[str] = DEFAULT_GRAPH_HOSTS, file_hosts: Iterable[str] = DEFAULT_FILE_HOSTS,
                 extra_hosts: Iterable[str] = (), connect_timeout_s: float = 10.0, read_timeout_s: float = 30.0,
                 total_timeout_s: float = 120.0, attempts: int = 4, max_retry_after_s: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        extra = tuple(extra_hosts)
        self._graph_hosts = (*graph_hosts, *extra)
        self._file_hosts = (*file_hosts, *extra)
        base = graph_url if graph_url.endswith("/") else graph_url + "/"
        parts = urlsplit(base)
        try:
            check_link(base, self._graph_hosts, "Microsoft Graph")
        except TeamsFileError:
            raise InvalidRequest("IMP_TEAMS__GRAPH_URL must be an https URL on Microsoft Graph's host or on one "
                                 "listed in IMP_TEAMS__EXTRA_HOSTS (plain http only to a loopback host listed "
                                 "with its port)") from None
        if parts.query or parts.fragment:
            raise InvalidRequest("IMP_TEAMS__GRAPH_URL must not carry a query or a fragment")
        self._base = base
        self._tokens = tokens
        self._connect = connect_timeout_s
        self._read = read_timeout_s
        self._total = total_timeout_s
        self._attempts = max(1, attempts)
        self._max_wait = max_retry_after_s
        self._tls = tls or ssl.create_default_context()

    def close(self) -> None:
        closer = getattr(self._tokens, "close", None)
        if callable(closer):
            closer()

    def resolve(self, shared: SharedFile) -> DriveFile:
        """The file at ``shared.url``, with a fresh download link; a TeamsFileError saying why not."""
        name = shared.name
        check_link(shared.url, self._file_hosts, name)  # only SharePoint/OneDrive places are looked up
        link = check_link(f"{self._base}shares/{share_id(shared.url)}/driveItem", self._graph_hosts, name)
        found = _drive_file(self._get(link, name), name, link.host)
        log.info("found %s through Microsoft Graph at %s (%s bytes)", found.name, link.host, found.size)
        return found

    def channel_drive(self, group_id: str, channel_id: str, name: str) -> str:
        """The id of the drive a channel keeps its files in: the team's document library for a standard
        channel, the channel's own site's for a private or shared one. ``name`` is the file asked about."""
        path = f"teams/{_segment(group_id)}/channels/{_segment(channel_id)}/filesFolder"
        doc = self._place(path, name, "this channel")
        parent = doc.get("parentReference") if isinstance(doc, dict) else None
        return _drive_id(parent.get("driveId") if isinstance(parent, dict) else None, "this channel")

    def user_drive(self, user_id: str, name: str) -> str:
        """The id of a person's OneDrive (where Teams keeps the files they post in chats), by Entra object id."""
        doc = self._place(f"users/{_segment(user_id)}/drive", name, "its sender")
        return _drive_id(doc.get("id") if isinstance(doc, dict) else None, "its sender")

    def _place(self, path: str, name: str, whose: str) -> Any:
        link = check_link(f"{self._base}{path}", self._graph_hosts, name)
        try:
            return self._get(link, name)
        except (GraphFileNotFound, UnusableAttachment):  # 404/410/400: no such channel folder or OneDrive
            raise GraphPlaceUnknown(f"Microsoft Graph could not tell me where {whose} keeps its Teams files, "
                                    f"so I cannot check that {name} belongs here") from None

    def _get(self, link: Link, name: str) -> Any:
        """GET ``link`` with the Graph token: the JSON answer of a 200, else a TeamsFileError saying why."""
        deadline = time.monotonic() + self._total
        token = self._tokens.token()
        refreshed = False
        tries = 0
        while True:
            status, doc, retry_after = self._ask(link, token, name, deadline)
            if status == 200:
                return doc
            if status == 401 and not refreshed:
                self._tokens.invalidate(token)  # revoked or rotated early: one fresh token, once
                token, refreshed = self._tokens.token(), True
                continue
            if status in _RETRY:
                tries += 1
                wait = min(self._max_wait, retry_after if retry_after is not None else 0.5 * 2 ** (tries - 1))
                if tries >= self._attempts or time.monotonic() + wait > deadline:
                    raise GraphBusy(f"Microsoft Graph is {'throttling me' if status == 429 else 'failing'} "
                                    f"(HTTP {status}); please share {name} again in a few minutes")
                log.warning("Microsoft Graph at %s answered HTTP %d about %s; trying again in %.1f s",
                            link.host, status, name, wait)
                time.sleep(wait)
                continue
            raise _refusal(status, name, link.host)

    def _ask(self, link: Link, token: str, name: str, deadline: float) -> tuple[int, Any, float | None]:
        """One GET: (status, the JSON answer when 200, Retry-After in seconds when given)."""
        answer = open_get(link, token, name, tls=self._tls, connect_s=self._connect, read_s=self._read)
        try:
            if answer.status != 200:
                return answer.status, None, retry_after(answer.header("retry-after"))
            body = bytearray()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FileDownloadTimeout(f"Microsoft Graph at {link.host} took too long to answer about {name}")
                answer.sock.settimeout(min(self._read, left))
                try:
                    chunk = answer.resp.read1(_CHUNK)
                except TimeoutError:
                    raise FileDownloadTimeout(f"Microsoft Graph at {link.host} stopped answering about "
                                              f"{name}") from None
                except (OSError, http.client.HTTPException, ValueError) as e:
                    raise GraphUnavailable(f"Microsoft Graph's answer about {name} broke off "
                                           f"({type(e).__name__})") from None
                if not chunk:
                    break
                body += chunk
                if len(body) > MAX_JSON_BYTES:
                    raise GraphUnavailable(f"Microsoft Graph's answer about {name} is over {MAX_JSON_BYTES} bytes")
            try:
                return 200, json.loads(body), None
            except ValueError:
                raise GraphUnavailable(f"Microsoft Graph answered about {name} without JSON") from None
        finally:
            answer.close()


def _refusal(status: int, name: str, host: str) -> TeamsFileError:
    if status in (401, 403):
        return GraphAccessDenied(f"Microsoft Graph would not let me read it (HTTP {status}): IMP needs the "
                                 f"{PERMISSION} application permission, which an admin grants to IMP's app "
                                 "registration (with admin consent)")
    if status in (404, 410):
        return GraphFileNotFound(f"{name} is no longer in SharePoint or OneDrive (deleted or moved), "
                                 "or the link is not to a file")
    if status == 400:
        return UnusableAttachment(f"Microsoft Graph did not accept the link to {name} (HTTP 400)")
    if 300 <= status < 400:
        return GraphUnavailable(f"Microsoft Graph at {host} redirected the request for {name}; "
                                "I follow no redirects there")
    return GraphUnavailable(f"Microsoft Graph at {host} answered HTTP {status} about {name}")


def _drive_file(doc: Any, name: str, host: str) -> DriveFile:
    if not isinstance(doc, dict):
        raise GraphUnavailable(f"Microsoft Graph at {host} answered about {name} without a driveItem")
    if not isinstance(doc.get("file"), dict):
        raise UnusableAttachment(f"{name} is a folder or a link, not a file I can index")
    url = doc.get("@microsoft.graph.downloadUrl")
    if not isinstance(url, str) or not url:
        raise GraphUnavailable(f"Microsoft Graph gave no download link for {name}")
    item_id = doc.get("id")
    if not isinstance(item_id, str) or not _ITEM_ID.match(item_id):
        raise GraphUnavailable(f"Microsoft Graph gave no usable item id for {name}")
    found = clean_name(doc.get("name")) or name
    size = doc.get("size")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    suffix = found.rsplit(".", 1)[1].lower() if "." in found else ""
    parent = doc.get("parentReference")
    drive = parent.get("driveId") if isinstance(parent, dict) else None
    return DriveFile(found, url, item_id, size, suffix if _FILE_TYPE.match(suffix) else "",
                     drive if isinstance(drive, str) and _DRIVE_ID.match(drive) else None)


def _drive_id(value: Any, whose: str) -> str:
    if not isinstance(value, str) or not _DRIVE_ID.match(value):
        raise GraphUnavailable(f"Microsoft Graph did not say which drive {whose} keeps its Teams files in")
    return value


def _segment(value: str) -> str:
    """One path segment of a Graph URL: ids as Teams writes them hold ':' and '@', encoded as Graph takes them."""
    return quote(value, safe="")
