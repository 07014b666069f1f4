"""Hybrid retrieval: dense (vector store) and keyword (BM25) ranks fused by reciprocal rank.

Both retrievers filter by scope themselves; the registry then drops any
candidate that is not part of a committed document version, so a half-indexed
or deleted document never surfaces. The dense side uses a served embedder
(core.index.serving): the champion, or the challenger when a question is routed
to it; the keyword side does not depend on the embedder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidRequest
from core.index.embedders import Embedder
from core.index.keyword import KeywordIndex
from core.index.serving import ServingSet
from core.index.vectors import VectorStore
from core.models import Hit
from core.observe import Observer, guarded
from core.store.registry import DocumentRegistry

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]
DOC_BEST_CHUNKS = 2  # chunks of a document whose fused scores make its prior (see with_document_prior)


@dataclass(frozen=True, slots=True)
class Retrieval:
    """Hits, and the embedder version that found the dense ones (None: keyword search only)."""

    hits: list[Hit]
    embedder: str | None


def rrf(rankings: list[list[str]], k: int, weights: list[float] | None = None) -> dict[str, float]:
    """Reciprocal-rank fusion: each list adds weight/(k + rank) to its items (weight 1 by default)."""
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def with_document_prior(scores: dict[str, float], document: dict[str, str], weight: float,
                        best: int = DOC_BEST_CHUNKS) -> dict[str, float]:
    """Add ``weight`` x (the sum of a document's ``best`` chunk scores) to each of its chunks.

    A chunk from the document that matches the query as a whole (several
    candidates, in both rankings) rises above an equally ranked chunk from a
    document that matches in one place only. Only chunks named in ``document``
    (chunk id -> document id) are kept. With one document among the candidates
    every chunk gets the same bonus, so the order is unchanged.
    """
    if weight < 0 or best < 1:
        raise ValueError("weight must not be negative and best must be at least 1")
    kept = {cid: s for cid, s in scores.items() if cid in document}
    if weight == 0:
        return kept
    per_doc: dict[str, list[float]] = {}
    for cid, s in kept.items():
        per_doc.setdefault(document[cid], []).append(s)
    prior = {d: sum(sorted(v, reverse=True)[:best]) for d, v in per_doc.items()}
    return {cid: s + weight * prior[document[cid]] for cid, s in kept.items()}


class HybridRetriever:
    """Scope-filtered search over the vector store and the keyword index."""

    def __init__(self, registry: DocumentRegistry, vectors: VectorStore | None, keywords: KeywordIndex,
                 embedder: Embedder | None, *, candidates: int = 40, rrf_k: int = 60, keyword_weight: float = 1.0,
                 doc_weight: float = 0.0, serving: ServingSet | None = None, observer: Observer | None = None):
        """``serving`` gives the served embedders; without it, ``vectors`` and ``embedder`` are the one used.
        ``keyword_weight``: the keyword ranking's weight in the fusion, the dense one's being 1.
        ``doc_weight``: weight of the document prior added to fused scores in hybrid mode (0: none).
        ``observer`` is told how long each search and its query embedding took (core.observe)."""
        if keyword_weight < 0 or doc_weight < 0:
            raise ValueError("keyword_weight and doc_weight must not be negative")
        self._registry = registry
        if serving is None:
            if vectors is None or embedder is None:
                raise ValueError("give serving, or both vectors and embedder")
            serving = ServingSet.fixed(embedder, vectors)
        self._serving = serving
        self._keywords = keywords
        self._candidates = candidates
        self._rrf_k = rrf_k
        self._keyword_weight = keyword_weight
        self._doc_weight = doc_weight
        self._observer = guarded(observer)

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
        started = time.perf_counter()
        retrieval = self._retrieve(query, k, scopes, mode, challenger)
        self._observer.stage("retrieve", time.perf_counter() - started)
        return retrieval

    def _retrieve(self, query: str, k: int, scopes: list[str], mode: Mode, challenger: bool) -> Retrieval:
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
        weights: list[float] = []
        raw: dict[str, float] = {}
        similarity: dict[str, float] = {}
        if mode in ("hybrid", "dense"):
            embedding_started = time.perf_counter()
            vector = served.embedder.embed([query])[0]
            self._observer.stage("embed", time.perf_counter() - embedding_started)
            dense = served.store.query(vector, n, scopes)
            rankings.append([cid for cid, _ in dense])
            weights.append(1.0)
            raw.update(dense)
            similarity.update(dense)
        if mode in ("hybrid", "keyword"):
            sparse = self._keywords.query(query, n, scopes)
            rankings.append([cid for cid, _ in sparse])
            weights.append(self._keyword_weight)
            if mode == "keyword":
                raw.update(sparse)
        scores = rrf(rankings, self._rrf_k, weights) if mode == "hybrid" else raw
        visible = self._registry.visible_chunks(scores)
        allowed = set(scopes)
        # The scope check is repeated here so a stale index can never leak across scopes.
        visible = {cid: c for cid, c in visible.items() if c.scope in allowed}
        if mode == "hybrid" and self._doc_weight > 0:
            scores = with_document_prior(scores, {cid: c.doc_id for cid, c in visible.items()}, self._doc_weight)
        ordered = sorted(scores, key=scores.get, reverse=True)
        hits: list[Hit] = []
        for cid in ordered:
            chunk = visible.get(cid)
            if chunk is None:
                continue
            hits.append(Hit(chunk=chunk, score=scores[cid], rank=len(hits) + 1, similarity=similarity.get(cid)))
            if len(hits) == k:
                break
        return Retrieval(hits, version)
