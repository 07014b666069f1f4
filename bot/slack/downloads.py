"""A Slack file's details and bytes: ``files.info``, and the download with the bot token.

The bot token only ever goes to Slack's own hosts (or the configured API's), a redirect is
read as Slack refusing the token, and a download is cut off past the size limit. A link is
asked for afresh each time: Slack's expire.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.chat.files import human_size
from core.errors import ImpError, InvalidRequest


class FileRefusal(InvalidRequest):
    """A file IMP will not use for this request, with the reason to show the user."""


class DownloadError(ImpError):
    code = "download_failed"


def file_info(client: WebClient, file_id: str) -> dict[str, Any]:
    """The file as Slack describes it now; ``FileRefusal`` when it is gone or hidden from IMP."""
    try:
        return client.files_info(file=file_id)["file"]
    except SlackApiError as e:
        if e.response.get("error") in ("file_not_found", "file_deleted"):
            raise FileRefusal("that file no longer exists, or I cannot see it") from e
        raise


def _trusted(url: str, api_url: str) -> bool:
    """Only Slack's hosts (or the configured API's own host) ever see the bot token."""
    host = urlparse(url).hostname or ""
    return host == urlparse(api_url).hostname or host == "slack.com" or host.endswith(
        (".slack.com", ".slack-edge.com"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect means Slack refused the token: it sends a login page


def download(client: WebClient, f: dict[str, Any], dest: Path, max_bytes: int) -> Path:
    """Fetch a file's bytes with the bot token, streaming, refusing more than ``max_bytes``."""
    url = f.get("url_private_download") or f.get("url_private")
    if not url:
        raise DownloadError(f"Slack gave no download link for {f.get('name')}")
    if not _trusted(url, client.base_url):
        raise DownloadError(f"the download link of {f.get('name')} is not on a Slack host")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {client.token}"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as resp, open(dest, "wb") as out:
            if "text/html" in (resp.headers.get("content-type") or ""):
                raise DownloadError("Slack sent a login page instead of the file; the app needs the files:read scope")
            copied = 0
            while chunk := resp.read(1 << 20):
                copied += len(chunk)
                if copied > max_bytes:
                    raise DownloadError(f"{f.get('name')} is larger than the {human_size(max_bytes)} I accept")
                out.write(chunk)
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:
            raise DownloadError("Slack refused the download (the app needs the files:read scope)") from e
        raise DownloadError(f"Slack answered {e.code} to the download of {f.get('name')}") from e
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise DownloadError(f"the download of {f.get('name')} failed: {e}") from e
    except ValueError as e:  # a link urllib will not request (a space or control character in it)
        raise DownloadError(f"Slack gave an unusable download link for {f.get('name')}") from e
    return dest


def fetch(client: WebClient, file_id: str, folder: Path, max_bytes: int) -> tuple[dict[str, Any], Path]:
    """Current file info and its bytes in ``folder`` (a fresh link each time: Slack's expire)."""
    f = file_info(client, file_id)
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._ -]", "_", f.get("name") or file_id).strip(". ") or file_id
    return f, download(client, f, folder / safe[:200], max_bytes)
