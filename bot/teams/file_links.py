"""Where downloads of Teams files may go, and the HTTP exchange of each hop: the low level of
bot.teams.files, which the Teams adapter's file drops use (see there for what Teams sends).

``check_link`` turns a URL from an activity (or a redirect) into a ``Link`` only when IMP may fetch it:
https (plain http only to a loopback host listed with its port, for tests), no credentials in it, an
ASCII host on the allow-list. The host http.client then connects to is exactly the host checked.
``open_get`` sends one GET (the bearer token only when given), ``save_body`` streams the answer to a
file within the size cap and the time allowed, ``check_status`` and ``declared_size`` turn what the host
said into typed errors. Messages name the host, never the URL: its query holds the link's credential.

Why http.client and not httpx: httpx's client logs every request URL at INFO, and httpcore logs response
headers at DEBUG, a redirect's Location (with its ``tempauth``) included; http.client logs nothing.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from bot.teams.connector import host_allowed
from bot.teams.token import is_loopback_host
from core.errors import BackendError, DocumentTooLarge, ImpError, InvalidRequest, NotFound

MAX_URL_CHARS = 8192  # SharePoint links with tempauth run to a few KB
_CHUNK = 1 << 16


class TeamsFileError(ImpError):
    """A file dropped in Teams could not be fetched; ``detail`` says why in words for the user."""

    code = "teams_file_failed"


class UnusableAttachment(TeamsFileError, InvalidRequest):
    """A file attachment without what is needed to fetch it (no link, a malformed link)."""

    code = "unusable_attachment"


class UnsafeFileName(TeamsFileError, InvalidRequest):
    """The attachment's file name could escape the staging folder (folders, control characters)."""

    code = "invalid_request"


class FileHostRefused(TeamsFileError, InvalidRequest):
    """The link (or a redirect) points at a host, scheme or port IMP may not fetch from; nothing was sent."""

    code = "file_host_refused"


class FileTooLarge(TeamsFileError, DocumentTooLarge):
    """The file is over the upload limit (declared by Content-Length or counted while streaming)."""

    code = "too_large"


class FileGone(TeamsFileError, NotFound):
    """The file host answered 404/410: the file was deleted or moved."""

    code = "not_found"


class FileLinkExpired(TeamsFileError, InvalidRequest):
    """The host refused the link (401/403): pre-authenticated links last minutes; send the file again.
    For an inline image: the Bot Connector refused the bot's token, a fresh one included."""

    code = "file_link_expired"


class FileDownloadTimeout(TeamsFileError, BackendError):
    """The host did not answer, or sent the file too slowly, within the time allowed."""

    code = "download_timeout"


class FileDownloadFailed(TeamsFileError, BackendError):
    """The host failed (5xx, connection lost, incomplete body, too many redirects)."""

    code = "download_failed"


@dataclass(frozen=True)
class Link:
    """A checked URL as http.client will use it: the host connected to is the host that was checked."""

    scheme: str
    host: str
    port: int
    target: str = field(repr=False)  # path and query: the query is a credential, never logged

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def url(self) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{netloc}:{self.port}{self.target}"


def check_link(raw: object, allowed: tuple[str, ...], name: str) -> Link:
    """``raw`` as a Link, or UnusableAttachment / FileHostRefused when IMP must not fetch it."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_URL_CHARS or not raw.isprintable() \
            or " " in raw or "\\" in raw:
        raise UnusableAttachment(f"the download link of {name} is missing or malformed")
    parts = urlsplit(raw)
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise UnusableAttachment(f"the download link of {name} has an invalid port") from None
    if not host or parts.username is not None or parts.password is not None:
        raise FileHostRefused(f"the download link of {name} has no host, or carries credentials")
    if not host.isascii() or host.endswith("."):
        raise FileHostRefused(f"the download link of {name} has an unusual host name")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(host)):
        raise FileHostRefused(f"the download link of {name} on {host} is not https")
    port = port or (443 if parts.scheme == "https" else 80)
    if not _allowed(host, port, allowed):
        raise FileHostRefused(f"{host} is not a host IMP fetches Teams files from")
    if parts.scheme == "http" and not _listed_exactly(host, port, allowed):
        raise FileHostRefused(f"plain http to {host} is allowed only to a test host listed with its port")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Link(parts.scheme, host, port, quote(target, safe=string.punctuation))


@dataclass
class Answer:
    """A host's answer to one GET, headers read, body not yet; ``close()`` it."""

    conn: http.client.HTTPConnection
    sock: socket.socket  # kept: http.client lets go of it once an answer says Connection: close
    resp: http.client.HTTPResponse

    @property
    def status(self) -> int:
        return self.resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


def open_get(link: Link, bearer: str | None, name: str, *, tls: ssl.SSLContext, connect_s: float,
             read_s: float) -> Answer:
    """Send GET ``link`` (with ``bearer`` as the Authorization when given) and read the answer's headers."""
    if link.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(link.host, link.port, timeout=connect_s,
                                                                       context=tls)
    else:
        conn = http.client.HTTPConnection(link.host, link.port, timeout=connect_s)
    try:
        conn.connect()
        sock = conn.sock
        sock.settimeout(read_s)
        conn.putrequest("GET", link.target, skip_accept_encoding=True)
        conn.putheader("Accept-Encoding", "identity")  # the bytes counted are the bytes stored
        conn.putheader("User-Agent", "IMP-Teams-bot")
        if bearer is not None:
            conn.putheader("Authorization", f"Bearer {bearer}")
        conn.endheaders()
        return Answer(conn, sock, conn.getresponse())
    except TimeoutError:
        conn.close()
        raise FileDownloadTimeout(f"{link.host} did not answer in time for {name}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:  # the type only: messages may hold the URL
        conn.close()
        raise FileDownloadFailed(f"{link.host} could not be reached for {name} ({type(e).__name__})") from None


def save_body(answer: Answer, target: Path, *, max_bytes: int, deadline: float, read_s: float, total_s: float,
              host: str, name: str) -> int:
    """Stream the body into a new file ``target``; its size, or FileTooLarge past ``max_bytes`` (at most
    max_bytes+1 bytes are read, none of the excess written) or FileDownloadTimeout past ``deadline``."""
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FileDownloadTimeout(f"{host} sent {name} too slowly; the download took longer than "
                                          f"{total_s:.0f} s")
            answer.sock.settimeout(min(read_s, left))
            try:
                chunk = answer.resp.read1(_CHUNK)  # read1: at most one wait, so the deadline is checked often
            except TimeoutError:
                if time.monotonic() >= deadline:
                    continue  # reported above as too slow
                raise FileDownloadTimeout(f"{host} stopped sending {name} part way") from None
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise FileDownloadFailed(f"the download of {name} from {host} broke off before the whole "
                                         f"file arrived ({type(e).__name__})") from None
            if not chunk:
                return size
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge(f"{name} is larger than the {human(max_bytes)} IMP accepts")
            out.write(chunk)


def check_status(status: int, host: str, name: str, with_token: bool) -> None:
    if status in (404, 410):
        raise FileGone(f"{name} is no longer on {host} (deleted or moved)")
    if status in (401, 403) and with_token:
        raise FileLinkExpired(f"the Bot Connector at {host} refused the bot's token for {name}")
    if status in (401, 403):
        raise FileLinkExpired(f"{host} refused the download of {name}; its link expires after a few minutes, "
                              "so send the file again")
    if status == 408 or status == 504:
        raise FileDownloadTimeout(f"{host} timed out serving {name}")
    if status == 413:
        raise FileTooLarge(f"{host} says {name} is too large to send")
    if status != 200:
        raise FileDownloadFailed(f"{host} answered HTTP {status} to the download of {name}")


def declared_size(value: str | None, limit: int, name: str) -> int | None:
    """The Content-Length, refused above ``limit`` before the body is read; None when chunked."""
    if value is None:
        return None  # counted while it streams
    try:
        declared = int(value)
    except ValueError:
        raise FileDownloadFailed(f"the host sent an invalid size for {name}") from None
    if declared > limit:
        raise FileTooLarge(f"{name} is {human(declared)}, more than the {human(limit)} IMP accepts")
    return declared


def _allowed(host: str, port: int, entries: tuple[str, ...]) -> bool:
    plain = tuple(e for e in entries if not _has_port(e))
    return host_allowed(host, plain) or _listed_exactly(host, port, entries)


def _listed_exactly(host: str, port: int, entries: tuple[str, ...]) -> bool:
    return any(_has_port(e) and e.lower() == f"{host.lower()}:{port}" for e in entries)


def _has_port(entry: str) -> bool:
    return ":" in entry and entry.rsplit(":", 1)[1].isdigit()


def human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
