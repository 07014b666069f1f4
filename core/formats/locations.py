"""Where something is, as a person would cite it: a recording's time (12:34, 1:02:05) or a page."""

from __future__ import annotations

from pathlib import Path

from core.models import Chunk


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def locator(c: Chunk) -> str:
    """Where a chunk sits in its document, as a person would cite it."""
    name = c.source.removeprefix("upload:")
    name = Path(name).name or name
    if c.start is not None:
        where = f"{clock(c.start)}–{clock(c.end if c.end is not None else c.start)}"
        who = f" {', '.join(c.speakers)}" if c.speakers else ""
        return f"{name} [{where}]{who}"
    if c.page_start is not None:
        pages = f"p. {c.page_start}" if c.page_end in (None, c.page_start) else f"pp. {c.page_start}–{c.page_end}"
        return f"{name}, {pages}"
    return name
