"""Files in Slack: drops into a channel are indexed in its scope, deleted files leave the index,
and `/minutes` finds the recording it is asked about.

A file is only ever used in a channel it is shared in, so nobody can pull a file
from a channel they are not in by pasting its link. Downloads carry the bot token
only to Slack's own hosts.
"""

from __future__ import annotations

import logging
import re
from itertools import islice
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.slack.blocks import escape, progress_text
from bot.slack.deps import SlackDeps, bot_identity, post_error
from core.errors import ImpError, InvalidRequest

log = logging.getLogger(__name__)

RECORDING_TYPES = {"mp3", "m4a", "wav", "mp4", "mov", "webm", "ogg", "oga", "opus", "flac", "mkv", "aac", "mpg",
                   "mpeg", "avi", "wma", "amr", "3gp", "m4v"}
TRANSCRIPT_TYPES = {"vtt", "srt", "text", "txt", "json"}
_FILE_ID = re.compile(r"(?:/files/[^/\s|>]+/|^|[\s<])(F[A-Z0-9]{6,})(?=[/\s|>]|$)")
_SKIP_MODES = {"tombstone", "hidden_by_limit", "external", "snippet_deleted"}


class FileRefusal(InvalidRequest):
    """A file IMP will not use for this request, with the reason to show the user."""


class DownloadError(ImpError):
    code = "download_failed"


def human_size(n: int) -> str:
    """A byte count as a person reads it: "1.5 KB", "200 MB", "1 GB" (never "0 MB")."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def is_recording(f: dict[str, Any]) -> bool:
    mime = (f.get("mimetype") or "").lower()
    return mime.startswith(("audio/", "video/")) or (f.get("filetype") or "").lower() in RECORDING_TYPES


def is_transcript(f: dict[str, Any]) -> bool:
    name = (f.get("name") or "").lower()
    return (f.get("filetype") or "").lower() in TRANSCRIPT_TYPES or name.endswith((".vtt", ".srt"))


def channels_of(f: dict[str, Any]) -> set[str]:
    return {*(f.get("channels") or []), *(f.get("groups") or []), *(f.get("ims") or [])}


def file_id_in(text: str) -> str | None:
    m = _FILE_ID.search(text.strip())
    return m.group(1) if m else None


def _info(deps: SlackDeps, file_id: str) -> dict[str, Any]:
    try:
        return deps.client.files_info(file=file_id)["file"]
    except SlackApiError as e:
        if e.response.get("error") in ("file_not_found", "file_deleted"):
            raise FileRefusal("that file no longer exists, or I cannot see it") from e
        raise


def _usable(deps: SlackDeps, f: dict[str, Any], channel: str) -> dict[str, Any]:
    if channel not in channels_of(f):
        raise FileRefusal(f"{f.get('name', 'that file')} is not shared in this channel; share it here first")
    if int(f.get("size") or 0) > deps.max_file_bytes:
        raise FileRefusal(f"{f.get('name')} is {human_size(int(f['size']))}, more than the "
                          f"{human_size(deps.max_file_bytes)} I accept")
    return f


def shared_file(deps: SlackDeps, arg: str, channel: str) -> dict[str, Any]:
    """The recording or transcript a `/minutes` argument links to, if it is shared in ``channel``."""
    file_id = file_id_in(arg)
    if file_id is None:
        raise FileRefusal(f"“{arg[:100]}” is not a link to a Slack file")
    f = _usable(deps, _info(deps, file_id), channel)
    if not (is_recording(f) or is_transcript(f)):
        raise FileRefusal(f"{f.get('name')} is neither a recording nor a transcript")
    return f


def find_recording(deps: SlackDeps, channel: str, max_pages: int = 10) -> dict[str, Any]:
    """The latest audio or video file shared in ``channel`` (the newest of its recent history)."""
    for page in islice(deps.client.conversations_history(channel=channel, limit=200), max_pages):
        for message in page.get("messages") or []:
            for f in message.get("files") or []:
                if f.get("mode") not in _SKIP_MODES and is_recording(f):
                    return _usable(deps, _info(deps, f["id"]), channel)
    raise FileRefusal("I found no audio or video file in this channel's recent messages")


def _trusted(url: str, api_url: str) -> bool:
    """Only Slack's hosts (or the configured API's own host) ever see the bot token."""
    host = urlparse(url).hostname or ""
    return host == urlparse(api_url).hostname or host == "slack.com" or host.endswith(
        (".slack.com", ".slack-edge.com"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect means Slack refused the token: it sends a login page


def download(deps: SlackDeps, f: dict[str, Any], dest: Path) -> Path:
    """Fetch a file's bytes with the bot token, streaming, refusing more than the size limit."""
    url = f.get("url_private_download") or f.get("url_private")
    if not url:
        raise DownloadError(f"Slack gave no download link for {f.get('name')}")
    if not _trusted(url, deps.client.base_url):
        raise DownloadError(f"the download link of {f.get('name')} is not on a Slack host")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {deps.client.token}"})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as resp, open(dest, "wb") as out:
            if "text/html" in (resp.headers.get("content-type") or ""):
                raise DownloadError("Slack sent a login page instead of the file; the app needs the files:read scope")
            copied = 0
            while chunk := resp.read(1 << 20):
                copied += len(chunk)
                if copied > deps.max_file_bytes:
                    limit = human_size(deps.max_file_bytes)
                    raise DownloadError(f"{f.get('name')} is larger than the {limit} I accept")
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


def fetch(deps: SlackDeps, file_id: str, folder: Path) -> tuple[dict[str, Any], Path]:
    """Current file info and its bytes in ``folder`` (a fresh link each time: Slack's expire)."""
    f = _info(deps, file_id)
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._ -]", "_", f.get("name") or file_id).strip(". ") or file_id
    return f, download(deps, f, folder / safe[:200])


def register(app: App, deps: SlackDeps) -> None:
    def ack(ack: Ack) -> None:
        ack()

    def on_share(event: dict, context: Any) -> None:
        me = bot_identity(context)
        if event.get("bot_id") or event.get("user") in (None, me[0]):
            return  # IMP's own uploads (minutes) and other bots' files are not indexed
        channel = event["channel"]
        ts = event.get("thread_ts") or event["ts"]  # a file shared in a thread: reply in that thread
        for f in event.get("files") or []:
            if f.get("mode") in _SKIP_MODES or f.get("is_external") or (f.get("mimetype") or "").startswith("image/"):
                continue  # screenshots and links to outside files: nothing IMP can index
            name = f.get("name") or f.get("title") or f["id"]
            try:
                if int(f.get("size") or 0) > deps.max_file_bytes:
                    raise FileRefusal(f"it is {human_size(int(f['size']))}, more than the "
                                      f"{human_size(deps.max_file_bytes)} I accept")
                status = deps.client.chat_postMessage(channel=channel, thread_ts=ts,
                                                      text=progress_text("Indexing", name, "queued", 0, None))
                deps.state.add_task("ingest", channel, event["user"], thread_ts=ts, status_ts=status["ts"],
                                    file_id=f["id"], file_name=name)
            except Exception as e:
                post_error(deps.client, channel, ts, f"I could not index *{escape(name)}*", e)
        deps.followups.wake()

    def on_deleted(event: dict) -> None:
        file_id = event.get("file_id")
        if not file_id:
            return
        for doc in deps.engine.documents_from(f"slack:{file_id}/"):
            deps.engine.delete(doc.doc_id)
            log.info("file %s was deleted in Slack; removed document %s from scope %s", file_id, doc.doc_id, doc.scope)

    def on_unshared(event: dict) -> None:
        """A file taken out of a channel leaves that channel's scope (it stays where it is still shared)."""
        file_id = event.get("file_id")
        if not file_id:
            return
        try:
            still = channels_of(_info(deps, file_id))
        except FileRefusal:
            still = set()
        for doc in deps.engine.documents_from(f"slack:{file_id}/"):
            if doc.scope not in still:
                deps.engine.delete(doc.doc_id)
                log.info("file %s is no longer shared in %s; removed document %s", file_id, doc.scope, doc.doc_id)

    app.event({"type": "message", "subtype": "file_share"})(ack=ack, lazy=[on_share])
    app.event("file_deleted")(ack=ack, lazy=[on_deleted])
    app.event("file_unshared")(ack=ack, lazy=[on_unshared])
