"""Which transcript sentences belong in a meeting summary: sentence features and a small linear scorer.

The scorer is a ridge regression over the features below, learnt by
``bench/train_minutes_scorer.py`` from QMSum train meetings and their human general
summaries (the target is the share of a sentence's words that the human summary uses).
Its weights are the few numbers in ``summary_weights.py``; no data and no model files are
read at run time.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from core.models import Meeting

FEATURES = ("position", "position_sq", "log_words", "info", "noise", "centrality", "topic_centrality",
            "frequency", "speaker_share", "turn_words", "content_share", "pronoun_share",
            "first_person", "we", "number")

DUPLICATE = 0.9  # a sentence this similar to one already in the summary says the same thing again
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+")
_PRONOUNS = frozenset("i you he she it we they me him her us them this that these those there here".split())
_FIRST = frozenset("i i'm i've i'd i'll me my mine myself".split())
_WE = frozenset("we we're we've we'll we'd us our ours let's".split())


@dataclass
class Sentence:
    """A sentence the summary may quote."""

    pos: int  # the turn's position in the meeting
    text: str  # cleaned sentence, as the summary prints it
    info: float  # density of words particular to this meeting
    noise: float  # share of the spoken words that were fillers, repeats or markup
    stems: frozenset[str]  # its content words, stemmed


@dataclass
class SummaryTable:
    """A meeting's summary candidates: sentences, unit embeddings, topic stretches, and FEATURES rows."""

    sentences: list[Sentence]
    vecs: np.ndarray
    spans: list[tuple[int, int]]  # topics as (first, last) turn positions
    span_of: np.ndarray  # each sentence's topic
    stem_counts: Counter  # the meeting's content words, stemmed, and how often each was said
    features: np.ndarray


def features(meeting: Meeting, sentences: list[Sentence], vecs: np.ndarray, span_of: np.ndarray,
             stem_counts: Counter) -> np.ndarray:
    """One row of FEATURES per sentence; columns a meeting can vary in are standardised within it."""
    n = len(sentences)
    if not n:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    turns = meeting.turns
    spoken: Counter = Counter()
    for t in turns:
        spoken[t.speaker] += len(t.text.split())
    total = max(1, sum(spoken.values()))
    centre = _unit(vecs.sum(0))
    topic_centre = np.zeros_like(vecs)
    for span in set(span_of.tolist()):
        mine = span_of == span
        topic_centre[mine] = _unit(vecs[mine].sum(0))
    top = max(stem_counts.values(), default=1)
    rows = []
    for i, s in enumerate(sentences):
        words = [w.lower() for w in _WORD.findall(s.text)] or [""]
        size = len(words)
        rel = s.pos / max(1, len(turns) - 1)
        freq = (sum(math.log(1 + stem_counts.get(st, 0)) for st in s.stems) / max(1, len(s.stems))
                / math.log(1 + top))
        turn = turns[s.pos]
        rows.append([rel, rel * rel, math.log(size), s.info, s.noise, 0.0, 0.0, freq,
                     spoken[turn.speaker] / total, math.log(1 + len(turn.text.split())), len(s.stems) / size,
                     sum(w in _PRONOUNS for w in words) / size, sum(w in _FIRST for w in words) / size,
                     sum(w in _WE for w in words) / size, float(any(w.isdigit() for w in words))])
    x = np.array(rows, dtype=np.float32)
    x[:, 5] = vecs @ centre
    x[:, 6] = (vecs * topic_centre).sum(1)
    for col in ("info", "centrality", "topic_centrality", "frequency"):
        j = FEATURES.index(col)
        x[:, j] = _zscore(x[:, j])
    return x


class SentenceScorer:
    """A linear score over FEATURES: higher means more of the sentence is summary material."""

    def __init__(self, weights: dict):
        if list(weights["features"]) != list(FEATURES):
            raise ValueError("the summary weights were trained on other features; rerun the trainer")
        self._mean = np.asarray(weights["mean"], dtype=np.float32)
        self._scale = np.asarray(weights["scale"], dtype=np.float32)
        self._coef = np.asarray(weights["coef"], dtype=np.float32)
        self._intercept = float(weights["intercept"])

    def score(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0, dtype=np.float32)
        return ((x - self._mean) / self._scale) @ self._coef + self._intercept


def pick_summary(table: SummaryTable, scores: np.ndarray, budget: int, redundancy: float,
                 coverage: float = 0.0) -> list[int]:
    """The best sentences up to ``budget`` words, in meeting order.

    One at a time, each sentence's score is lowered by its likeness to those already taken
    (MMR: the summary should not say one thing twice) and raised by how much of the meeting's
    frequent vocabulary it would add that the summary does not have yet (coverage, as SumBasic).
    """
    n = len(table.sentences)
    if not n:
        return []
    z = _zscore(np.asarray(scores, dtype=np.float32))
    sizes = np.array([len(s.text.split()) for s in table.sentences])
    top = math.log(1 + max(table.stem_counts.values(), default=1))
    weight = {st: math.log(1 + c) / top for st, c in table.stem_counts.items()}
    covered: set[str] = set()
    closest = np.zeros(n, dtype=np.float32)  # each sentence's highest similarity to one already chosen
    taken = np.zeros(n, dtype=bool)
    words = 0
    while words < budget:
        value = z - redundancy * closest
        if coverage:
            new = [sum(weight.get(st, 0.0) for st in s.stems - covered) / max(1, len(s.stems))
                   for s in table.sentences]
            value = value + coverage * _zscore(np.array(new, dtype=np.float32))
        value[taken | (closest >= DUPLICATE) | (words + sizes > budget)] = -np.inf
        if words == 0:  # the first sentence is always allowed, however long
            value = z.copy()
        i = int(np.argmax(value))
        if value[i] == -np.inf:
            break
        taken[i] = True
        words += int(sizes[i])
        covered |= table.sentences[i].stems
        closest = np.maximum(closest, np.clip(table.vecs @ table.vecs[i], 0, None))
    return np.flatnonzero(taken).tolist()


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
