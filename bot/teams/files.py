"""Files people drop in Teams, downloaded so they can be indexed in that conversation's scope.

Used by the Teams adapter's inbound side (bot/teams, through the chat layer's file drops): the adapter
turns a message activity's attachments into ``TeamsFile``s with ``files_in``, and ``ingest_file`` downloads
each one (``TeamsFiles.fetch``) and hands it to the engine as a background ingest job in the conversation's
scope (the channel or chat id), as bot/slack/files.py does for Slack. ``fetch`` and ``submit_staged`` are
there separately for a caller that wants to look at the bytes first (``/minutes`` of a dropped recording).

What Teams delivers (Bot Framework, "Send and receive files using the Bot Framework"):
- a file a user uploads in a 1:1 chat with the bot (manifest ``supportsFiles``): an attachment of content
  type ``application/vnd.microsoft.teams.file.download.info`` named after the file, whose ``content`` holds
  ``downloadUrl`` (a short-lived, pre-authenticated OneDrive/SharePoint link fetched with a plain GET),
  ``uniqueId`` (the OneDrive item id) and ``fileType``;
- an image pasted into a message: an ``image/*`` attachment whose ``contentUrl`` is on the Bot Connector
  (``https://smba.trafficmanager.net/<region>/v3/attachments/<id>/views/original``), which answers only to
  the bot's bearer token.
Files posted in channels and group chats do NOT arrive this way: Teams keeps them in the channel's
SharePoint site or the sender's OneDrive and the activity carries only a ``reference`` attachment to their
place there; bot/teams/graph.py asks Microsoft Graph for the file behind it (and bot/teams/file_places.py
checks that it is kept where that conversation's files are). A Graph driveItem's
``@microsoft.graph.downloadUrl`` is a pre-authenticated SharePoint link of the same kind, so
``TeamsFile.shared_link`` wraps it for ``fetch``.

Safety, since every URL arrives in a request: https only (plain http only to a loopback host the
allow-list names, for tests); a download link's host must match ``file_hosts`` (default ``.sharepoint.com``,
which holds both team sites and ``-my`` OneDrive sites; Microsoft does not support bot file transfer in GCC
High, DoD or 21Vianet, so their SharePoint domains are not trusted by default), an inline image's
``token_hosts`` (the Bot Connector hosts of bot.teams.connector); redirects are followed by hand, at most
``max_redirects``, each hop checked against the same list. The bot token goes only on requests for an
inline image, and only to the image URL's own origin: never to SharePoint, never across a redirect. The
size cap (the engine's upload limit) is checked against Content-Length before the body is read and
counted while it streams; nothing past the cap reaches disk. Every file lands in a private folder under
``staging_dir`` that is removed on any failure. Pre-authenticated links are credentials (``tempauth``
in their query): logs and error messages name the host only (bot.teams.file_links says why the HTTP
exchange uses http.client for that). ``TeamsFiles`` holds no state between calls: threads may share it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from bot.teams.connector import DEFAULT_SERVICE_HOSTS, TokenSource
from bot.teams.file_links import (
    MAX_URL_CHARS,
    FileDownloadFailed,
    FileDownloadTimeout,
    FileGone,
    FileHostRefused,
    FileLinkExpired,
    FileTooLarge,
    Link,
    TeamsFileError,
    UnsafeFileName,
    UnusableAttachment,
    check_link,
    check_status,
    declared_size,
    open_get,
    save_body,
)
from core.engine import Engine, check_upload_name
from core.errors import InvalidRequest
from core.models import Job

__all__ = ["DEFAULT_FILE_HOSTS", "DEFAULT_TOKEN_HOSTS", "FILE_DOWNLOAD_INFO", "FileDownloadFailed",
           "FileDownloadTimeout", "FileGone", "FileHostRefused", "FileLinkExpired", "FileTooLarge", "StagedFile",
           "TeamsFile", "TeamsFileError", "TeamsFiles", "UnsafeFileName", "UnusableAttachment", "file_of",
           "files_in", "ingest_file", "submit_staged"]

log = logging.getLogger(__name__)

FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
DEFAULT_FILE_HOSTS = (".sharepoint.com",)
DEFAULT_TOKEN_HOSTS = DEFAULT_SERVICE_HOSTS
_REDIRECTS = {301, 302, 303, 307, 308}
_SAFE_ID = re.compile(r"^[A-Za-z0-9{}._-]{1,128}$")
_IMAGE_TYPE = re.compile(r"^image/([a-z0-9.+-]{1,32})$")


@dataclass(frozen=True)
class TeamsFile:
    """One file an activity refers to. ``url`` is a credential: never log or show it (``host`` is safe)."""

    name: str
    url: str = field(repr=False)
    source: str  # stable per file, so a re-upload is a new version: "teams:<id>/<name>"
    needs_token: bool = False  # an inline image on the Bot Connector
    file_type: str | None = None

    @property
    def host(self) -> str:
        return _host_of(self.url)

    @classmethod
    def shared_link(cls, url: str, name: str, item_id: str, file_type: str | None = None) -> TeamsFile:
        """A file behind a pre-authenticated SharePoint link (a Graph driveItem's download URL)."""
        safe = _safe_name(name)
        return cls(safe, url, f"teams:{_safe_id(item_id)}/{safe}", False, file_type)


@dataclass
class StagedFile:
    """A downloaded file in its own folder; ``discard()`` (or leaving the ``with`` block) removes it."""

    path: Path
    name: str
    source: str
    size: int
    content_type: str | None = None

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def files_in(attachments: Iterable[Any] | None) -> list[TeamsFile]:
    """The files among an activity's attachments (dicts or microsoft_agents Attachment models).

    Cards, ``text/html`` message bodies and other attachments are skipped; a file attachment that is
    malformed raises UnusableAttachment or UnsafeFileName so the user hears why it was not indexed.
    """
    found = []
    for att in attachments or []:
        file = file_of(att)
        if file is not None:
            found.append(file)
    return found


def file_of(attachment: Any) -> TeamsFile | None:
    """The file one attachment refers to, or None when it is not a file (a card, the message's HTML)."""
    att = _as_dict(attachment)
    content_type = _text(att, "contentType", "content_type").lower()
    if content_type == FILE_DOWNLOAD_INFO:
        content = _as_dict(att.get("content"))
        url = _text(content, "downloadUrl", "download_url")
        if not url:
            raise UnusableAttachment("Teams sent a file without a download link")
        unique_id = _text(content, "uniqueId", "unique_id") or hashlib.sha256(url.encode()).hexdigest()[:32]
        file_type = _text(content, "fileType", "file_type") or None
        name = _text(att, "name") or f"{unique_id}.{file_type or 'bin'}"
        return TeamsFile.shared_link(url, name, unique_id, file_type)
    image = _IMAGE_TYPE.match(content_type)
    url = _text(att, "contentUrl", "content_url")
    if image and url:
        attachment_id = _attachment_id(url)
        name = _safe_name(_text(att, "name") or f"image-{attachment_id[:40]}.{image.group(1)}")
        return TeamsFile(name, url, f"teams:{attachment_id}/{name}", True, image.group(1))
    return None


class TeamsFiles:
    """Downloads Teams files into ``staging_dir``, within the size cap, only from allowed hosts.

    ``file_hosts`` are where pre-authenticated links may point, ``token_hosts`` where inline images
    (fetched with the bot token from ``tokens``) may; ``extra_hosts`` add to both (tests: "127.0.0.1:8080"
    matches that host and port only, the only way plain http is allowed). Entries follow
    ``bot.teams.connector.host_allowed``: ".example.com" any subdomain, "example.com" that host.
    ``read_timeout_s`` bounds each wait for bytes, ``total_timeout_s`` the whole download.
    """

    def __init__(self, staging_dir: Path, max_bytes: int, *, tokens: TokenSource | None = None,
                 file_hosts: Iterable[str] = DEFAULT_FILE_HOSTS, token_hosts: Iterable[str] = DEFAULT_TOKEN_HOSTS,
                 extra_hosts: Iterable[str] = (), connect_timeout_s: float = 10.0, read_timeout_s: float = 30.0,
                 total_timeout_s: float = 600.0, max_redirects: int = 3,
                 tls: ssl.SSLContext | None = None) -> None:
        if max_bytes < 1:
            raise InvalidRequest("the upload limit must be at least one byte")
        self.staging_dir = Path(staging_dir)
        self.max_bytes = max_bytes
        self._tokens = tokens
        extra = tuple(extra_hosts)
        self._file_hosts = (*file_hosts, *extra)
        self._token_hosts = (*token_hosts, *extra)
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._total = total_timeout_s
        self._max_redirects = max(0, max_redirects)
        self._tls = tls or ssl.create_default_context()

    def fetch(self, file: TeamsFile | Any) -> StagedFile:
        """The bytes of ``file`` (a TeamsFile, or an activity's attachment) in a fresh folder under
        ``staging_dir``; a TeamsFileError, and nothing on disk, when they cannot be had."""
        if not isinstance(file, TeamsFile):
            found = file_of(file)
            if found is None:
                raise UnusableAttachment("that attachment is not a file (a card or the message itself)")
            file = found
        allowed = self._token_hosts if file.needs_token else self._file_hosts
        link = check_link(file.url, allowed, file.name)  # before anything touches the disk or the network
        if file.needs_token and self._tokens is None:
            raise FileHostRefused(f"{file.name} is an image on the Bot Connector, and no bot token is configured")
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="teams-", dir=self.staging_dir))
        target = folder / file.name
        try:
            size, content_type, host = self._download(file, link, allowed, target)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        log.info("fetched %s (%d bytes) from %s", file.name, size, host)
        return StagedFile(target, file.name, file.source, size, content_type)

    # ----- the download ---------------------------------------------------------------
    def _download(self, file: TeamsFile, link: Link, allowed: tuple[str, ...],
                  target: Path) -> tuple[int, str | None, str]:
        deadline = time.monotonic() + self._total
        origin = link.origin
        token = self._tokens.token() if file.needs_token and self._tokens else None
        retried = False
        hops = 0
        while True:
            bearer = token if token is not None and link.origin == origin else None  # never across origins
            answer = open_get(link, bearer, file.name, tls=self._tls, connect_s=self._connect_timeout,
                              read_s=self._read_timeout)
            try:
                if answer.status in _REDIRECTS:
                    location = answer.header("location")
                    hops += 1
                    if not location or hops > self._max_redirects:
                        raise FileDownloadFailed(f"{link.host} redirected the download of {file.name} "
                                                 f"{'without a location' if not location else 'too many times'}")
                    link = check_link(urljoin(link.url, location), allowed, file.name)
                    log.info("the download of %s is redirected to %s", file.name, link.host)
                    continue
                if answer.status == 401 and bearer is not None and not retried and self._tokens:
                    self._tokens.invalidate(bearer)  # revoked or rotated early: one fresh token, once
                    token, retried = self._tokens.token(), True
                    continue
                check_status(answer.status, link.host, file.name, bearer is not None)
                declared = declared_size(answer.header("content-length"), self.max_bytes, file.name)
                size = save_body(answer, target, max_bytes=self.max_bytes, deadline=deadline,
                                 read_s=self._read_timeout, total_s=self._total, host=link.host, name=file.name)
                if declared is not None and size != declared:
                    raise FileDownloadFailed(f"the download of {file.name} from {link.host} broke off before "
                                             f"the whole file arrived ({size} of {declared} bytes)")
                return size, answer.header("content-type"), link.host
            finally:
                answer.close()


def submit_staged(engine: Engine, staged: StagedFile, scope: str) -> Job:
    """Hand a fetched file to the engine as a background ingest job in ``scope``; the staged copy goes
    either way (the engine keeps its own). A file the engine refuses at once is a job that failed."""
    try:
        with open(staged.path, "rb") as stream:
            return engine.submit_upload(staged.name, stream, scope, source=staged.source)
    finally:
        staged.discard()


def ingest_file(files: TeamsFiles, engine: Engine, file: TeamsFile | Any, scope: str) -> Job:
    """Fetch one dropped file (a TeamsFile or the attachment itself) and queue its ingestion into ``scope`` (the channel or chat id).

    Busy (before any download) when the engine's job queue is full; TeamsFileError when the file
    cannot be fetched. Follow the returned job with ``engine.job``.
    """
    engine.check_job_room()
    return submit_staged(engine, files.fetch(file), scope)


# ----- helpers ---------------------------------------------------------------------------
def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(malformed link)"


def _safe_name(name: str) -> str:
    try:
        return check_upload_name(name)
    except InvalidRequest as e:
        raise UnsafeFileName(e.detail) from None


def _safe_id(value: str) -> str:
    """An id from Teams as part of a document's source: kept when plain, else a hash of it."""
    return value if _SAFE_ID.match(value) else hashlib.sha256(value.encode()).hexdigest()[:32]


def _attachment_id(url: str) -> str:
    """The Bot Connector's id of an inline image (``.../v3/attachments/<id>/views/...``), or a hash of its URL."""
    try:
        segments = urlsplit(url).path.split("/")
    except ValueError:
        segments = []
    if "attachments" in segments:
        i = segments.index("attachments")
        if i + 1 < len(segments) and segments[i + 1]:
            return _safe_id(segments[i + 1])
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def _as_dict(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(by_alias=True, exclude_none=True)
    return {}


def _text(doc: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value[:MAX_URL_CHARS + 1]  # longer than any usable value; checked later
    return ""


