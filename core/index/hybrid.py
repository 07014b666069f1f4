"""Hybrid retrieval: dense (vector store) and keyword (BM25) ranks fused by reciprocal rank.

Both retrievers filter by scope themselves; the registry then drops any
candidate that is not part of a committed document version, so a half-indexed
or deleted document never surfaces. The dense side uses a served embedder
(core.index.serving): the champion, or the challenger when a question is routed
to it; the keyword side does not depend on the embedder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidRequest
from core.index.embedders import Embedder
from core.index.keyword import KeywordIndex
from core.index.serving import ServingSet
from core.index.vectors import VectorStore
from core.models import Hit
from core.store.registry import DocumentRegistry

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Hits, and the embedder version that found the dense ones (None: keyword search only)."""

    hits: list[Hit]
    embedder: str | None


def rrf(rankings: list[list[str]], k: int) -> dict[str, float]:
    """Reciprocal-rank fusion: each list adds 1/(k + rank) to its items."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


class HybridRetriever:
    """Scope-filtered search over the vector store and the keyword index."""

    def __init__(self, registry: DocumentRegistry, vectors: VectorStore | None, keywords: KeywordIndex,
                 embedder: Embedder | None, *, candidates: int = 40, rrf_k: int = 60,
                 serving: ServingSet | None = None):
        """``serving`` gives the served embedders; without it, ``vectors`` and ``embedder`` are the one used."""
        self._registry = registry
        if serving is None:
            if vectors is None or embedder is None:
                raise ValueError("give serving, or both vectors and embedder")
            serving = ServingSet.fixed(embedder, vectors)
        self._serving = serving
        self._keywords = keywords
        self._candidates = candidates
        self._rrf_k = rrf_k

    @property
    def _vectors(self) -> VectorStore:
        """The champion's vector store."""
        return self._serving.snapshot().champion.store

    def search(self, query: str, k: int, scopes: list[str], mode: Mode = "hybrid", *,
               challenger: bool = False) -> list[Hit]:
        return self.retrieve(query, k, scopes, mode, challenger=challenger).hits

    def retrieve(self, query: str, k: int, scopes: list[str], mode: Mode = "hybrid", *,
                 challenger: bool = False) -> Retrieval:
        """Search with the champion's embedder, or the challenger's when asked and one is served."""
        query = query.strip()
        if not query:
            raise InvalidRequest("the query is empty")
        if k < 1:
            raise InvalidRequest("k must be at least 1")
        scopes = list(dict.fromkeys(s for s in scopes if s))
        served = self._serving.snapshot().pick(challenger)  # one snapshot for the whole query
        version = served.version if mode != "keyword" else None
        if not scopes:
            return Retrieval([], version)
        n = max(self._candidates, k)
        rankings: list[list[str]] = []
        raw: dict[str, float] = {}
        similarity: dict[str, float] = {}
        if mode in ("hybrid", "dense"):
            dense = served.store.query(served.embedder.embed([query])[0], n, scopes)
            rankings.append([cid for cid, _ in dense])
            raw.update(dense)
            similarity.update(dense)
        if mode in ("hybrid", "keyword"):
            sparse = self._keywords.query(query, n, scopes)
            rankings.append([cid for cid, _ in sparse])
            if mode == "keyword":
                raw.update(sparse)
        scores = rrf(rankings, self._rrf_k) if mode == "hybrid" else raw
        ordered = sorted(scores, key=scores.get, reverse=True)
        visible = self._registry.visible_chunks(ordered)
        allowed = set(scopes)
        hits: list[Hit] = []
        for cid in ordered:
            chunk = visible.get(cid)
            # The scope check is repeated here so a stale index can never leak across scopes.
            if chunk is None or chunk.scope not in allowed:
                continue
            hits.append(Hit(chunk=chunk, score=scores[cid], rank=len(hits) + 1, similarity=similarity.get(cid)))
            if len(hits) == k:
                break
        return Retrieval(hits, version)
