"""Small text helpers shared by loaders and writers."""

from __future__ import annotations

import re

_ENDS_UNIT = re.compile(r"[.!?:;)\]\"'»”]\s*$")
_CONTINUES = re.compile(r"^[a-z0-9(,;%€$£–-]")


def reflow(text: str) -> list[str]:
    """Logical lines: hard-wrapped prose is joined back, one-unit-per-line text is kept.

    A line continues the previous one when the previous does not end a unit
    (sentence punctuation, a colon, a closing bracket) and this one starts the
    way a continuation does (lowercase, a digit, a comma).
    """
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            out.append("")
            continue
        if out and out[-1] and not _ENDS_UNIT.search(out[-1]) and _CONTINUES.match(line):
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
    return [line for line in out if line]
