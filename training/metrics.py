"""Retrieval metrics over ranked lists: hit@k, recall@k and MRR@k, pooled over queries."""

from __future__ import annotations

from collections.abc import Sequence


def hit_at(found: Sequence[bool], k: int) -> float:
    """1 when any of the first ``k`` results is relevant."""
    return float(any(found[:k]))


def mrr_at(found: Sequence[bool], k: int) -> float:
    """1/rank of the first relevant result within ``k``, else 0."""
    for rank, ok in enumerate(found[:k], start=1):
        if ok:
            return 1.0 / rank
    return 0.0


def recall_at(covered: Sequence[set], k: int, total: int) -> float:
    """Share of the ``total`` gold items covered by the first ``k`` results (each result covers a set)."""
    if total <= 0:
        return 0.0
    seen: set = set()
    for items in covered[:k]:
        seen |= items
    return len(seen) / total


def pooled(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over queries, rounded for reading; empty input gives zeros."""
    if not rows:
        return {"hit@5": 0.0, "recall@5": 0.0, "mrr@10": 0.0, "queries": 0}
    keys = rows[0].keys()
    out = {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in keys}
    out["queries"] = len(rows)
    return out
