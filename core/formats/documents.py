"""How an indexed document is summed up for people: "12:04 of audio, 31 passages", "4 pages, 9 passages"."""

from __future__ import annotations

from core.formats.locations import clock
from core.models import DocumentRecord


def extent(record: DocumentRecord) -> str:
    """A recording's length, or a document's pages, and the passages it was indexed as."""
    parts = []
    if record.duration:
        parts.append(f"{clock(record.duration)} of {'video' if record.kind == 'video' else 'audio'}")
    elif record.pages:
        parts.append(f"{record.pages} page{'s' if record.pages != 1 else ''}")
    parts.append(f"{record.chunks} passage{'s' if record.chunks != 1 else ''}")
    return ", ".join(parts)
