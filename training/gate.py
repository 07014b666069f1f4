"""The evaluation gate: champion and candidate embedders scored the same way on the same evaluation set.

Each embedder gets a fresh engine built exactly as production builds one (the
same loaders, chunker, Chroma collection, BM25 index and hybrid search), the
evaluation documents are ingested into it, and every query is searched over the
whole pool. A hit is a chunk of the query's document that holds a gold line
(a line longer than a chunk counts through any window of it of at least 20 words).
Pooled over queries: hit@5, recall@5 (share of gold lines in the top 5), MRR@10.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import BackendError
from training.metrics import hit_at, mrr_at, pooled, recall_at
from training.types import EvalQuery, EvalSet

log = logging.getLogger(__name__)

# (data folder, embedder) -> an Engine over that folder, built the way app.py builds the serving one.
EngineFactory = Callable[[Path, Any], Any]
EVAL_SCOPE = "eval"
MIN_WINDOW_WORDS = 20
_SPACE = re.compile(r"\s+")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _holds(chunk_text: str, line: str) -> bool:
    if line in chunk_text:
        return True
    return any(len(piece.split()) >= MIN_WINDOW_WORDS and _norm(piece) in line for piece in chunk_text.split("\n"))


def _covered(chunk: Any, query: EvalQuery, gold: list[str]) -> set[int]:
    if Path(chunk.source).name != _file_name(query.document):
        return set()
    text = chunk.text
    return {i for i, line in enumerate(gold) if _holds(text, line)}


def _file_name(name: str) -> str:
    """Evaluation documents are written as files; their names are made safe (they come from data files)."""
    safe = _SAFE.sub("_", name)[:120] or "document"
    return safe if safe.endswith(".txt") else f"{safe}.txt"


def write_documents(evalset: EvalSet, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in evalset.documents:
        path = folder / _file_name(doc.name)
        path.write_text(doc.text if doc.text.endswith("\n") else doc.text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def evaluate(evalset: EvalSet, embedder: Any, make_engine: EngineFactory, workdir: Path, *,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, float]:
    """Pooled hit@5, recall@5 and MRR@10 of hybrid search with ``embedder`` over ``evalset``."""
    if not evalset.queries:
        raise BackendError("the evaluation set has no queries")
    shutil.rmtree(workdir, ignore_errors=True)
    files = write_documents(evalset, workdir / "docs")
    engine = make_engine(workdir / "index", embedder)
    try:
        done = [0]

        def indexed(_result: Any) -> None:
            done[0] += 1
            if progress:
                progress("indexing", done[0], len(files))

        results = engine.ingest(files, EVAL_SCOPE, on_result=indexed)
        failed = [r for r in results if r.status.value == "failed"]
        if failed:
            raise BackendError(f"{len(failed)} evaluation documents failed to index: {failed[0].error}")
        rows = []
        for i, query in enumerate(evalset.queries, 1):
            gold = [_norm(g) for g in query.gold if _norm(g)]
            hits = engine.search(query.query, 10, [EVAL_SCOPE], mode="hybrid")
            covered = [_covered(h.chunk, query, gold) for h in hits]
            found = [bool(c) for c in covered]
            rows.append({"hit@5": hit_at(found, 5), "recall@5": recall_at(covered, 5, len(gold)),
                         "mrr@10": mrr_at(found, 10)})
            if progress and i % 25 == 0:
                progress("searching", i, len(evalset.queries))
        return pooled(rows)
    finally:
        engine.close()
        shutil.rmtree(workdir, ignore_errors=True)


def decide(champion: dict[str, float], candidate: dict[str, float], *, min_gain: float) -> tuple[bool, str]:
    """Promote only when hit@5 rises by at least ``min_gain``, MRR@10 does not drop, and something rose."""
    gain = candidate["hit@5"] - champion["hit@5"]
    mrr_change = candidate["mrr@10"] - champion["mrr@10"]
    if gain < min_gain - 1e-9:
        return False, (f"hit@5 {candidate['hit@5']:.3f} vs champion {champion['hit@5']:.3f}: a gain of "
                       f"{gain:+.3f} is below the required {min_gain:.3f} (IMP_TRAIN__MIN_GAIN)")
    if mrr_change < -1e-9:
        return False, (f"hit@5 changed by {gain:+.3f}, but MRR@10 dropped from {champion['mrr@10']:.3f} "
                       f"to {candidate['mrr@10']:.3f}")
    if gain <= 1e-9 and mrr_change <= 1e-9:  # with IMP_TRAIN__MIN_GAIN=0: equal is not better
        return False, (f"no better than the champion: hit@5 {candidate['hit@5']:.3f}, "
                       f"MRR@10 {candidate['mrr@10']:.3f}")
    return True, (f"hit@5 {champion['hit@5']:.3f} -> {candidate['hit@5']:.3f} ({gain:+.3f}), "
                  f"MRR@10 {champion['mrr@10']:.3f} -> {candidate['mrr@10']:.3f}")
