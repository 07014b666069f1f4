"""The contract of a minutes drafter, and the evidence rules every drafter follows.

A drafter turns a Meeting into Minutes. Evidence is never paraphrased: a quote
is a verbatim piece of one turn's text, located by ``quote_in``; an item whose
quote cannot be found is dropped, never kept without evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from core.models import Evidence, Meeting, Minutes, Turn

Progress = Callable[[float, float], None]  # (windows done, windows in all)

_SPACE = re.compile(r"\s+")


class MinutesDrafter(Protocol):
    """Writes minutes of a meeting."""

    @property
    def model_id(self) -> str: ...

    def draft(self, meeting: Meeting, progress: Progress | None = None) -> Minutes: ...


def evidence(turn: Turn, quote: str, timed: bool) -> Evidence:
    """Evidence for ``quote``, which must be a verbatim substring of ``turn.text``."""
    if quote not in turn.text:
        raise ValueError(f"quote is not in turn {turn.index}: {quote!r}")
    if timed:
        return Evidence(quote=quote, turn=turn.index, start=turn.start, end=turn.end, speaker=turn.speaker)
    return Evidence(quote=quote, turn=turn.index, start=float(turn.index), end=float(turn.index),
                    speaker=turn.speaker)


def quote_in(meeting: Meeting, quote: str, *, near: int | None = None) -> Evidence | None:
    """Locate a model-given quote in the meeting, verbatim (only runs of whitespace may differ).

    Returns evidence whose quote is the transcript's own text, from the turn nearest
    ``near`` (a turn number) when the words occur more than once; None when absent.
    """
    wanted = _SPACE.sub(" ", quote.strip().strip('"“”')).strip()
    if len(wanted) < 3:
        return None
    pattern = re.compile(r"\s+".join(re.escape(w) for w in wanted.split(" ")))
    found: list[tuple[int, Turn, str]] = []
    for turn in meeting.turns:
        m = pattern.search(turn.text)
        if m:
            found.append((abs(turn.index - near) if near is not None else 0, turn, m.group(0)))
    if not found:
        return None
    _, turn, text = min(found, key=lambda f: (f[0], f[1].index))
    return evidence(turn, text, meeting.timed)


def check_evidence(meeting: Meeting, minutes: Minutes) -> list[str]:
    """Problems with the minutes' evidence: an item without any, or a quote not verbatim in its turn."""
    turns = {t.index: t for t in meeting.turns}
    problems = []
    items = ([("decision", d.text, d.evidence) for d in minutes.decisions]
             + [("action item", a.task, a.evidence) for a in minutes.action_items]
             + [("open question", q.text, q.evidence) for q in minutes.open_questions])
    for kind, text, ev in items:
        if not ev:
            problems.append(f"{kind} without evidence: {text!r}")
        for e in ev:
            turn = turns.get(e.turn)
            if turn is None or e.quote not in turn.text:
                problems.append(f"{kind} quote not verbatim in turn {e.turn}: {e.quote!r}")
    return problems
