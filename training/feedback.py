"""Ratings become training data: 👍 answers give (question, cited passage) pairs, 👎 answers negatives.

An answer's net rating decides (ups − downs): above zero, each passage it cited is a
positive for its question; below zero, each is a negative for it; a tie gives nothing.
Questions are one question whatever their case and spacing.

A pair needs a positive. The 👎 passages of a question join every pair that 👍 answers
to the same question give. A question with only 👎 answers yields no pair: its passages
are returned by ``feedback_negatives`` and counted in the dataset's stats, but embedder
training leaves them out (a contrastive loss has nothing to pull the question towards).
A passage cited by both a 👍 and a 👎 answer to one question counts as a positive only.

``RatedAnswer`` carries no user and no channel, so none can reach a dataset or a digest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.errors import InvalidRequest
from core.models import RatedAnswer
from training.records import MAX_NEGATIVES, MAX_PASSAGE_CHARS, MAX_QUERY_CHARS, clean_text
from training.types import Pair

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class FeedbackNegative:
    """Passages people rated down for a question no rated-up answer covers."""

    question: str
    passages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Question:
    text: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


def question_key(question: str) -> str:
    return _SPACE.sub(" ", question).strip().casefold()


def _clean(text: str, field: str, limit: int) -> str | None:
    """The text checked like file data; None when it would be refused (logged data is kept, not fatal)."""
    try:
        return clean_text(text, field=field, where="feedback", max_chars=limit)
    except InvalidRequest:
        return None


def _chronological(rated: Iterable[RatedAnswer]) -> list[RatedAnswer]:
    return sorted(rated, key=lambda r: (r.rated_at, r.answer_id))


def _questions(rated: Iterable[RatedAnswer]) -> list[_Question]:
    """Each question's positive and negative passages, questions in the order they were first rated."""
    groups: dict[str, tuple[str, dict[str, None], dict[str, None]]] = {}
    for r in _chronological(rated):
        net = r.ups - r.downs
        question = _clean(r.question, "question", MAX_QUERY_CHARS)
        if net == 0 or question is None:
            continue
        _, positives, negatives = groups.setdefault(question_key(question), (question, {}, {}))
        side = positives if net > 0 else negatives
        for passage in r.passages:
            text = _clean(passage, "passage", MAX_PASSAGE_CHARS)
            if text is not None:
                side.setdefault(text, None)
    return [_Question(text, tuple(pos), tuple(n for n in neg if n not in pos))
            for text, pos, neg in groups.values()]


def feedback_pairs(rated: Sequence[RatedAnswer]) -> list[Pair]:
    """A pair per (question, passage of a 👍 answer), with the question's 👎 passages as negatives."""
    return [Pair(q.text, positive, q.negatives[:MAX_NEGATIVES])
            for q in _questions(rated) for positive in q.positives]


def feedback_negatives(rated: Sequence[RatedAnswer]) -> list[FeedbackNegative]:
    """The 👎 passages of questions that have no 👍 passage, which therefore yield no pair."""
    return [FeedbackNegative(q.text, q.negatives) for q in _questions(rated) if not q.positives and q.negatives]


def split_feedback(rated: Sequence[RatedAnswer], held_out: float) -> tuple[list[RatedAnswer], list[RatedAnswer]]:
    """(older, recent): the most recently rated ``held_out`` share of questions is kept back whole.

    With fewer than two questions nothing is kept back: feedback alone never empties the training side.
    """
    latest: dict[str, tuple] = {}
    for r in rated:
        key = question_key(r.question)
        latest[key] = max(latest.get(key, (r.rated_at, r.answer_id)), (r.rated_at, r.answer_id))
    n = 0
    if held_out > 0 and len(latest) >= 2:
        n = min(len(latest) - 1, max(1, round(held_out * len(latest))))
    recent = set(sorted(latest, key=lambda k: latest[k])[len(latest) - n:]) if n else set()
    return ([r for r in rated if question_key(r.question) not in recent],
            [r for r in rated if question_key(r.question) in recent])
