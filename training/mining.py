"""Transcripts chunked as production chunks them, each chunk located by the lines it holds,
and BM25 hard negatives mined among those chunks.

A transcript is turned into segments exactly as the text loader turns a .txt file
into segments (``core.textutil.reflow``: one segment per logical line) and cut by
the production ``Chunker``. Each segment also carries, in ``start``/``end``, the
positions of the transcript lines it holds; a chunk's ``start``/``end`` then say
which lines (whole, or a window of a line longer than a chunk) it holds. Those
fields only steer the chunker through ``max_seconds``, which is infinite here:
for a text file, where they are None, the chunker never looks at them either, so
the chunks are the ones production makes.

BM25 is bm25s with English stopwords and the PyStemmer stemmer, as in
core/index/keyword.py.
"""

from __future__ import annotations

import logging
import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import InvalidRequest
from core.ingest.chunking import Chunker
from core.models import Segment
from core.textutil import reflow

# Hard negatives are drawn from this many of the best-scoring candidates per wanted negative:
# the single best non-gold chunk is often a paraphrase of the answer (QMSum spans are incomplete).
POOL = 5


@dataclass(frozen=True, slots=True)
class LocatedChunk:
    """A chunk's text, the document it is from, and the lines of that document it holds (inclusive)."""

    doc: int
    text: str
    first: int
    last: int

    def holds(self, positions: Sequence[int]) -> bool:
        """Whether the chunk holds one of ``positions`` (sorted ascending)."""
        i = bisect_left(positions, self.first)
        return i < len(positions) and positions[i] <= self.last

    def count(self, positions: Sequence[int]) -> int:
        """How many of ``positions`` (sorted ascending) the chunk holds."""
        return bisect_right(positions, self.last) - bisect_left(positions, self.first)


def make_chunker(tokenizer: Any, max_tokens: int, overlap: float) -> Chunker:
    """The production chunker with these parameters (core.ingest.pipeline builds it the same way)."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 8:
        raise InvalidRequest("max_tokens must be a whole number of at least 8")
    if not isinstance(overlap, (int, float)) or not 0.0 <= overlap < 0.9:
        raise InvalidRequest("overlap is a share of a chunk from 0 up to 0.9")
    # Infinite: segment times here are line positions, never seconds (see the module docstring).
    return Chunker(tokenizer, max_tokens, overlap, max_seconds=math.inf)


def transcript_segments(lines: Sequence[str]) -> list[Segment]:
    """The text loader's segments of ``"\\n".join(lines)``, each located by the lines it joins."""
    segments: list[Segment] = []
    p = 0
    for logical in reflow("\n".join(lines)):
        first, joined = p, lines[p].strip()
        # reflow joins a continuation line to the one before with a space; follow it line by line.
        while joined != logical and p + 1 < len(lines) and len(joined) < len(logical):
            p += 1
            joined = f"{joined} {lines[p].strip()}"
        if joined != logical:
            raise InvalidRequest(f"transcript line {first + 1} cannot be matched to the loader's text")
        segments.append(Segment(text=logical, start=float(first), end=float(p)))
        p += 1
    return segments


def locate_chunks(chunker: Chunker, lines: Sequence[str], *, doc: int, name: str) -> list[LocatedChunk]:
    """The chunks production makes of the transcript ``lines``, each with the lines it holds."""
    chunks = chunker.chunk(transcript_segments(lines), doc_id=f"training-{doc}", version="training",
                           source=name, scope="training")
    return [LocatedChunk(doc, c.text, int(c.start or 0), int(c.end or 0)) for c in chunks]


class KeywordScorer:
    """BM25 scores of every chunk for a query, over one corpus of chunk texts."""

    def __init__(self, texts: Sequence[str]):
        import bm25s
        import Stemmer

        # bm25s sets its logger to DEBUG on import.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._retriever = bm25s.BM25()
        self._size = len(texts)
        if texts:
            tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False)
            self._retriever.index(tokens, show_progress=False)

    def words(self, queries: Sequence[str]) -> list[list[str]]:
        """Each query's stemmed words that occur in the corpus (tokenised together: one call is much faster)."""
        if not self._size or not queries:
            return [[] for _ in queries]
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stemmer, return_ids=False,
                                      show_progress=False)
        vocab = self._retriever.vocab_dict
        return [[w for w in words if w in vocab] for words in tokens]

    def scores(self, words: list[str]) -> np.ndarray | None:
        """One score per chunk for a query's ``words``, or None when it has none."""
        return self._retriever.get_scores(words) if words else None


@dataclass(frozen=True, slots=True)
class Candidates:
    """A query's hard-negative candidates, best first: chunk indices in its own document and in others."""

    same: list[int]
    other: list[int]


def candidates(scores: np.ndarray | None, own: range, wanted: int, excluded: Callable[[int], bool]) -> Candidates:
    """The best-scoring chunks (score > 0) not ``excluded``: up to POOL in ``own``, POOL × ``wanted`` elsewhere."""
    if scores is None or wanted <= 0:
        return Candidates([], [])
    inside = sorted((i for i in own if scores[i] > 0 and not excluded(i)), key=lambda i: (-scores[i], i))
    outside = scores.copy()
    outside[own.start : own.stop] = 0.0
    spare = min(len(outside), POOL * wanted * 4)  # a few more than needed, for the excluded ones
    best = np.argpartition(-outside, spare - 1)[:spare] if spare else np.array([], dtype=int)
    other: list[int] = []
    for i in sorted((int(i) for i in best), key=lambda i: (-outside[i], i)):
        if outside[i] <= 0 or len(other) >= POOL * wanted:
            break
        if not excluded(i):
            other.append(i)
    return Candidates(inside[:POOL], other)


def pick(found: Candidates, wanted: int, rng: random.Random) -> tuple[list[int], int]:
    """(chunk indices, how many are from the query's own document): one from its own document
    when it has a candidate, the rest from others, drawn among the best."""
    picked: list[int] = []
    if wanted > 0 and found.same:
        picked.append(rng.choice(found.same))
    same = len(picked)
    rest = wanted - same
    if rest > 0 and found.other:
        picked.extend(rng.sample(found.other, min(rest, len(found.other))))
    return picked, same
