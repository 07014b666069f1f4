"""Extractive answers: no LLM; quote the source sentences closest to the question.

Sentences of the top hits are ranked by cosine similarity to the question with
the embedder already loaded for search, plus a small bonus for shared content
words. The best few are quoted verbatim, each with its source number, so every
claim is supported by construction.
"""

from __future__ import annotations

import numpy as np

from core.index.embedders import Embedder
from core.models import Hit
from core.textutil import content_words, split_sentences

MIN_WORDS = 4
MAX_CANDIDATES = 240


class ExtractiveWriter:
    """Writes an answer by quoting the best supporting sentences."""

    def __init__(self, embedder: Embedder, *, max_sentences: int = 3, min_score: float = 0.35,
                 spread: float = 0.12, per_source: int = 2):
        self._embedder = embedder
        self._spread = spread
        self._max = max_sentences
        self._min = min_score
        self._per_source = per_source

    @property
    def model_id(self) -> str:
        return f"extractive:{self._embedder.model_id.split(':', 1)[-1]}"

    def write(self, question: str, hits: list[Hit]) -> str:
        candidates: list[tuple[int, str]] = []
        for n, hit in enumerate(hits, 1):
            for line in hit.chunk.text.splitlines():
                for sentence in split_sentences(line):
                    if len(sentence.split()) >= MIN_WORDS:
                        candidates.append((n, sentence))
        # A question someone asked in a meeting or an e-mail is not an answer to one.
        statements = [c for c in candidates if not c[1].rstrip().endswith("?")]
        candidates = (statements or candidates)[:MAX_CANDIDATES]
        if not candidates:
            return ""
        vecs = self._embedder.embed([question] + [s for _, s in candidates])
        sims = vecs[1:] @ vecs[0]
        q_words = content_words(question)
        bonus = np.array([len(q_words & content_words(s)) / max(1, len(q_words)) for _, s in candidates])
        scores = sims + 0.2 * bonus
        # Quote only sentences nearly as relevant as the best one, so answers stay on point.
        floor = max(self._min, float(scores.max()) - self._spread)
        chosen: list[int] = []
        used: dict[int, int] = {}
        seen: set[str] = set()
        for i in np.argsort(-scores):
            n, sentence = candidates[i]
            if scores[i] < floor or len(chosen) == self._max:
                break
            if used.get(n, 0) >= self._per_source or sentence in seen:
                continue
            chosen.append(int(i))
            used[n] = used.get(n, 0) + 1
            seen.add(sentence)
        # Quote in reading order within each source, sources in rank order, so the answer reads naturally.
        chosen.sort()
        return " ".join(f"{_terminated(candidates[i][1])} [{candidates[i][0]}]." for i in chosen)


def _terminated(sentence: str) -> str:
    s = sentence.rstrip()
    return s[:-1] if s and s[-1] in ".!?" else s
