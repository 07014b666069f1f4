"""Redaction of stored answers whose sources are gone: deleted, unshared, or replaced by a new version.

An answer is stored once, but read again later: over REST by id, by Slack's "Share in
channel" button, as the history of a follow-up question. By then a cited document may
have been deleted, taken out of the channel it was shared in, or replaced by a version
that no longer holds the cited passage. Reading must then not serve that text again,
neither in the citations nor in the answer's own sentences (an extractive answer quotes
the source word for word, and a model's sentence restates it).

Sentences are split exactly as citation validation split them when the answer was
written, so each sentence carries the marks of the sources it rests on. A sentence
that cites any removed source is dropped, even when it also cites one still visible:
the visible source supports at least half of its words, not necessarily the rest. A
short uncited sentence (validation keeps "Yes." beside the sentence before it) goes
with the sentence it follows. Surviving citations keep their numbers, so [2] still
means what it meant when the answer was given. The answer then says plainly how many
sources were removed (``Answer.removed_sources`` counts them), and its diagnostic
notes, which may quote a dropped draft sentence, are left out.

This sits with answering because it is the inverse of validation; the answerer applies
it to every answer read back (``Answerer.read``), so every front door gets it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection

from core.models import Answer
from core.textutil import split_sentences

# The citation marks validation writes ("[1][2]"); "[1, 2]" too, as older drafts had it. Linear: the
# separators between numbers are required, so the groups cannot be split two ways.
_MARKS = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_NUMBER = re.compile(r"\d+")

def _cited(sentence: str) -> set[int]:
    return {int(n) for group in _MARKS.findall(sentence) for n in _NUMBER.findall(group)}


def removal_notice(removed: int, *, everything: bool) -> str:
    """What a person reads about the removal, in place of (or after) what was removed."""
    what = "1 source" if removed == 1 else f"{removed} sources"
    if everything:
        return (f"This answer is no longer available: {'its source was' if removed == 1 else f'its {what} were'} "
                "deleted, unshared or replaced since it was given. Ask again to get an answer from what "
                "is available now.")
    return (f"({what} of this answer {'was' if removed == 1 else 'were'} deleted, unshared or replaced since it "
            "was given; what rested on it has been removed.)")


def redact(answer: Answer, visible: Collection[str]) -> Answer:
    """``answer`` without the sources whose chunk ids are not in ``visible``, nor the sentences citing them."""
    gone = {c.n for c in answer.citations if c.chunk.chunk_id not in visible}
    if not gone:
        return answer
    kept: list[str] = []
    follows_kept = False  # whether the last cited sentence was kept (an uncited one goes with it)
    for sentence in split_sentences(answer.text):
        cited = _cited(sentence)
        if cited:
            follows_kept = not (cited & gone)
        if follows_kept:
            kept.append(sentence)
    remaining = [c for c in answer.citations if c.n not in gone]
    # Only sources a kept sentence still cites remain (a removed sentence may have been a source's only use).
    still_cited = set().union(*(_cited(s) for s in kept)) if kept else set()
    remaining = [c for c in remaining if c.n in still_cited]
    everything = not remaining
    notice = removal_notice(len(gone), everything=everything)
    text = notice if everything else f"{' '.join(kept)} {notice}"
    return dataclasses.replace(
        answer, text=text, abstained=answer.abstained or everything, citations=remaining, notes=[],
        removed_sources=len(gone))

