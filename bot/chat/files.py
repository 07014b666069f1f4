"""File drops and deletions, on every platform: a dropped file becomes a task indexing it in the
conversation's scope; a file deleted (or taken out of a conversation) leaves the index there.

A chat file is stored under the source ``<platform>:<file id>/<name>``, so every copy of it, in every
conversation it was dropped in, is found again by its prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from core.engine import Engine

log = logging.getLogger(__name__)

RECORDING_TYPES = {"mp3", "m4a", "wav", "mp4", "mov", "webm", "ogg", "oga", "opus", "flac", "mkv", "aac", "mpg",
                   "mpeg", "avi", "wma", "amr", "3gp", "m4v"}
TRANSCRIPT_TYPES = {"vtt", "srt", "text", "txt", "json"}


def source_prefix(platform: str, file_id: str) -> str:
    return f"{platform}:{file_id}/"


def source_of(platform: str, file_id: str, name: str) -> str:
    return f"{source_prefix(platform, file_id)}{name}"


def human_size(n: int) -> str:
    """A byte count as a person reads it: "1.5 KB", "200 MB", "1 GB" (never "0 MB")."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def is_recording_type(mime: str | None, extension: str | None) -> bool:
    return (mime or "").lower().startswith(("audio/", "video/")) or (extension or "").lower() in RECORDING_TYPES


def forget_file(engine: Engine, platform: str, file_id: str, *, still_in: Collection[str] = (),
                only_in: Collection[str] | None = None) -> list[str]:
    """Remove the documents made from a chat file, except in the conversations it is ``still_in`` (and, with
    ``only_in``, only in those conversations); their ids."""
    removed = []
    for doc in engine.documents_from(source_prefix(platform, file_id)):
        if doc.scope in still_in or (only_in is not None and doc.scope not in only_in):
            continue
        engine.delete(doc.doc_id)
        removed.append(doc.doc_id)
        log.info("%s file %s left %s; removed document %s", platform, file_id, doc.scope, doc.doc_id)
    return removed


def transcribed_before(engine: Engine, platform: str, file_id: str, channel: str) -> str | None:
    """The document of a recording already indexed (and so transcribed) in ``channel``, for its minutes."""
    for doc in engine.documents_from(source_prefix(platform, file_id)):
        if doc.scope == channel and doc.kind in ("audio", "video") and doc.version:
            return doc.doc_id
    return None


def indexed_meeting(engine: Engine, platform: str, file_id: str, channel: str) -> str | None:
    """The document of a recording (transcribed) or a meeting transcript indexed in ``channel``: minutes are
    written from it without fetching the file again (a platform's download link may have expired)."""
    recorded = transcribed_before(engine, platform, file_id, channel)
    if recorded is not None:
        return recorded
    for doc in engine.documents_from(source_prefix(platform, file_id)):
        if doc.scope == channel and doc.kind not in ("audio", "video"):
            return doc.doc_id
    return None
