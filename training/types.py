"""What the learning loop passes between its stages: training pairs, evaluation sets, datasets.

Typed, never dicts: the data stage (training/data.py) makes them, the trainers
(training/embedder.py, training/adapter.py) and the gate (training/gate.py) read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pair:
    """A query, a passage that answers it, and passages that look relevant but do not."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EvalDocument:
    """A document of an evaluation set, ingested as text the way production ingests it."""

    name: str  # a file name, unique in the set: "<meeting_id>.txt"
    text: str


@dataclass(frozen=True, slots=True)
class EvalQuery:
    """A question and the passages (verbatim lines of one document) that answer it."""

    query: str
    document: str  # EvalDocument.name the gold passages are in
    gold: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EvalSet:
    documents: tuple[EvalDocument, ...]
    queries: tuple[EvalQuery, ...]
    digest: str


@dataclass(frozen=True, slots=True)
class Dataset:
    """Training pairs with where they came from and a digest of their content (no user ids)."""

    pairs: tuple[Pair, ...]
    digest: str
    source: str  # e.g. "qmsum:train.jsonl (140 meetings)", "pairs:file.jsonl", "feedback (12 answers)"
    eval: EvalSet | None = None  # the held-back slice, when the data was split
    stats: dict = field(default_factory=dict)
