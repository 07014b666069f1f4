"""Files in Slack: drops into a channel are indexed in its scope, deleted files leave the index,
and `/minutes` finds the recording it is asked about.

A file is only ever used in a channel it is shared in, so nobody can pull a file
from a channel they are not in by pasting its link. What a drop and a deletion do is
the chat layer's (bot.chat.files, bot.chat.tasks); the download is bot.slack.downloads'.
"""

from __future__ import annotations

import logging
import re
from itertools import islice
from typing import Any

from slack_bolt import Ack, App

from bot.chat.files import TRANSCRIPT_TYPES, forget_file, human_size, is_recording_type
from bot.slack.blocks import escape, progress_text
from bot.slack.deps import SlackDeps, bot_identity, post_error
from bot.slack.downloads import FileRefusal, file_info

log = logging.getLogger(__name__)

_FILE_ID = re.compile(r"(?:/files/[^/\s|>]+/|^|[\s<])(F[A-Z0-9]{6,})(?=[/\s|>]|$)")
_SKIP_MODES = {"tombstone", "hidden_by_limit", "external", "snippet_deleted"}


def is_recording(f: dict[str, Any]) -> bool:
    return is_recording_type(f.get("mimetype"), f.get("filetype"))


def is_transcript(f: dict[str, Any]) -> bool:
    name = (f.get("name") or "").lower()
    return (f.get("filetype") or "").lower() in TRANSCRIPT_TYPES or name.endswith((".vtt", ".srt"))


def channels_of(f: dict[str, Any]) -> set[str]:
    return {*(f.get("channels") or []), *(f.get("groups") or []), *(f.get("ims") or [])}


def file_id_in(text: str) -> str | None:
    m = _FILE_ID.search(text.strip())
    return m.group(1) if m else None


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
    f = _usable(deps, file_info(deps.client, file_id), channel)
    if not (is_recording(f) or is_transcript(f)):
        raise FileRefusal(f"{f.get('name')} is neither a recording nor a transcript")
    return f


def find_recording(deps: SlackDeps, channel: str, max_pages: int = 10) -> dict[str, Any]:
    """The latest audio or video file shared in ``channel`` (the newest of its recent history)."""
    for page in islice(deps.client.conversations_history(channel=channel, limit=200), max_pages):
        for message in page.get("messages") or []:
            for f in message.get("files") or []:
                if f.get("mode") not in _SKIP_MODES and is_recording(f):
                    return _usable(deps, file_info(deps.client, f["id"]), channel)
    raise FileRefusal("I found no audio or video file in this channel's recent messages")


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
                deps.state.add_task("ingest", channel, event["user"], thread=ts, status=status["ts"],
                                    file_id=f["id"], file_name=name, platform="slack")
            except Exception as e:
                post_error(deps.client, channel, ts, f"I could not index *{escape(name)}*", e)
        deps.followups.wake()

    def on_deleted(event: dict) -> None:
        file_id = event.get("file_id")
        if file_id:
            forget_file(deps.engine, "slack", file_id)

    def on_unshared(event: dict) -> None:
        """A file taken out of a channel leaves that channel's scope (it stays where it is still shared)."""
        file_id = event.get("file_id")
        if not file_id:
            return
        try:
            still = channels_of(file_info(deps.client, file_id))
        except FileRefusal:
            still = set()
        forget_file(deps.engine, "slack", file_id, still_in=still)

    app.event({"type": "message", "subtype": "file_share"})(ack=ack, lazy=[on_share])
    app.event("file_deleted")(ack=ack, lazy=[on_deleted])
    app.event("file_unshared")(ack=ack, lazy=[on_unshared])
