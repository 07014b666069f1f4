"""The data stage of the learning loop: training pairs and evaluation sets from files and feedback.

Two file formats, told apart by the first non-blank line:
- pairs JSONL: ``{"query": ..., "positive": ..., "negatives": [...]}`` a line (negatives optional);
- QMSum JSONL: a meeting a line (``meeting_transcripts``), read by training/qmsum.py.

``load_training_data`` reads either, adds pairs from rated answers (training/feedback.py),
and, with ``held_out``, keeps back an evaluation slice no training pair comes from: whole
meetings, whole queries, and the most recently rated questions. Its digest covers the
training pairs' content only, never the file's path nor anyone's identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from core.models import RatedAnswer
from core.textutil import reflow
from training.feedback import feedback_negatives, feedback_pairs, split_feedback
from training.qmsum import MAX_LINE_BYTES as MAX_MEETING_LINE_BYTES
from training.qmsum import held_out_count, read_qmsum, read_qmsum_eval
from training.records import (
    MAX_NEGATIVES, MAX_PASSAGE_CHARS, MAX_QUERY_CHARS, MAX_RECORDS, clean_text, eval_set, merge_eval_sets, pairs_digest,
    read_jsonl,
)
from training.types import Dataset, EvalDocument, EvalQuery, EvalSet, Pair

__all__ = ["feedback_negatives", "feedback_pairs", "load_training_data", "pairs_eval_set", "pairs_from_eval",
           "read_eval_set", "read_pairs", "read_qmsum", "read_qmsum_eval", "split_pairs"]

MAX_PAIR_LINE_BYTES = 1 << 20
_SPACE = re.compile(r"\s+")


def _pair(record: dict, where: str) -> Pair:
    query = clean_text(record.get("query"), field="query", where=where, max_chars=MAX_QUERY_CHARS)
    positive = clean_text(record.get("positive"), field="positive", where=where, max_chars=MAX_PASSAGE_CHARS)
    raw = record.get("negatives")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where}: negatives must be a list of strings, got {type(raw).__name__}")
    if len(raw) > MAX_NEGATIVES:
        raise InvalidRequest(f"{where}: {len(raw):,} negatives, over the limit of {MAX_NEGATIVES}")
    negatives = tuple(dict.fromkeys(
        clean_text(n, field=f"negative {i + 1}", where=where, max_chars=MAX_PASSAGE_CHARS) for i, n in enumerate(raw)))
    if positive in negatives:
        raise InvalidRequest(f"{where}: the positive passage is also listed as a negative")
    return Pair(query, positive, negatives)


def read_pairs(path: Path) -> list[Pair]:
    """Every pair of a pairs JSONL file, checked line by line (InvalidRequest names the bad line)."""
    path = Path(path)
    pairs: list[Pair] = []
    for number, record in read_jsonl(path, max_line_bytes=MAX_PAIR_LINE_BYTES):
        if len(pairs) >= MAX_RECORDS:
            raise InvalidRequest(f"{path.name}: more than {MAX_RECORDS:,} pairs")
        pairs.append(_pair(record, f"{path.name} line {number}"))
    if not pairs:
        raise InvalidRequest(f"{path.name}: no pairs (the file is empty or blank)")
    return pairs


def _query_key(query: str) -> str:
    return _SPACE.sub(" ", query).strip().casefold()


def split_pairs(pairs: Sequence[Pair], held_out: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(training, evaluation): a ``held_out`` share of the distinct queries, all of a query's pairs on one side.

    Which queries is fixed by ``seed`` and the query texts, not by the order of the pairs.
    """
    keys = list(dict.fromkeys(_query_key(p.query) for p in pairs))
    n = held_out_count(len(keys), held_out, "distinct queries")
    if n == 0:
        return list(pairs), []
    held = set(sorted(keys, key=lambda k: hashlib.sha256(f"{seed}\x00{k}".encode()).hexdigest())[:n])
    return [p for p in pairs if _query_key(p.query) not in held], [p for p in pairs if _query_key(p.query) in held]


def _document_text(passage: str) -> str:
    """The passage's logical lines, as the text loader reads a file holding it."""
    return "\n".join(reflow(passage))


def pairs_eval_set(pairs: Sequence[Pair], *, prefix: str = "passage") -> EvalSet:
    """An evaluation set from pairs: every distinct passage (positive or negative) is a small document,
    and each distinct (query, positive) a query whose gold is the positive's lines."""
    documents: dict[str, EvalDocument] = {}
    queries: dict[tuple[str, str], EvalQuery] = {}

    def document(passage: str) -> EvalDocument:
        text = _document_text(passage)
        name = f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
        return documents.setdefault(name, EvalDocument(name, text))

    for p in pairs:
        for negative in p.negatives:
            document(negative)
        doc = document(p.positive)
        queries.setdefault((p.query, doc.name), EvalQuery(p.query, doc.name, tuple(doc.text.split("\n"))))
    return eval_set(documents.values(), queries.values())


def pairs_from_eval(evalset: EvalSet) -> list[Pair]:
    """Each evaluation query with its gold lines as the positive passage (the trainer's per-epoch check)."""
    return [Pair(q.query, "\n".join(q.gold)) for q in evalset.queries if q.gold]


def detect_format(path: Path) -> str:
    """"pairs" or "qmsum", from the first non-blank line of the file."""
    with contextlib.closing(read_jsonl(Path(path), max_line_bytes=MAX_MEETING_LINE_BYTES)) as records:
        for number, record in records:
            if "meeting_transcripts" in record:
                return "qmsum"
            if "query" in record:
                return "pairs"
            raise InvalidRequest(f"{Path(path).name} line {number}: neither a pair (\"query\") nor a QMSum meeting "
                                 "(\"meeting_transcripts\")")
    raise InvalidRequest(f"{Path(path).name}: no records (the file is empty or blank)")


def read_eval_set(path: Path) -> EvalSet:
    """An evaluation file, pairs or QMSum, as an evaluation set."""
    if detect_format(path) == "qmsum":
        return read_qmsum_eval(path)
    return pairs_eval_set(read_pairs(path))


def _from_file(path: Path, tokenizer: Any, max_tokens: int, *, overlap: float, hard_negatives: int,
               held_out: float, seed: int, max_positives: int | None) -> Dataset:
    if detect_format(path) == "qmsum":
        return read_qmsum(path, tokenizer, max_tokens, overlap=overlap, hard_negatives=hard_negatives, seed=seed,
                          held_out=held_out, max_positives=max_positives)
    train, held = split_pairs(read_pairs(path), held_out, seed)
    evaluation = pairs_eval_set(held) if held else None
    stats = {"format": "pairs", "pairs": len(train), "held_out_pairs": len(held),
             "negatives": sum(len(p.negatives) for p in train),
             "eval_queries": len(evaluation.queries) if evaluation else 0}
    return Dataset(tuple(train), pairs_digest(train), f"pairs:{Path(path).name}", evaluation, stats)


def load_training_data(path: Path | None, tokenizer: Any, max_tokens: int, *, overlap: float = 0.15,
                       hard_negatives: int = 1, held_out: float = 0.0, seed: int = 0,
                       feedback: Sequence[RatedAnswer] | None = None, max_positives: int | None = 1) -> Dataset:
    """Training pairs from a pairs or QMSum file (``path``, optional when there is feedback) and rated answers.

    ``tokenizer``/``max_tokens``/``overlap`` are the production chunker's (QMSum only). With
    ``held_out`` > 0 the evaluation slice (``Dataset.eval``) holds that share of the file's
    meetings or queries and of the most recently rated questions.
    """
    if path is None and not feedback:
        raise InvalidRequest("no training data: neither a data file nor rated answers")
    pairs: list[Pair] = []
    stats: dict[str, Any] = {}
    sources: list[str] = []
    evaluation: EvalSet | None = None
    if path is not None:
        base = _from_file(Path(path), tokenizer, max_tokens, overlap=overlap, hard_negatives=hard_negatives,
                          held_out=held_out, seed=seed, max_positives=max_positives)
        pairs.extend(base.pairs)
        stats.update(base.stats)
        sources.append(base.source)
        evaluation = base.eval
    if feedback:
        older, recent = split_feedback(list(feedback), held_out)
        rated_pairs = feedback_pairs(older)
        recent_pairs = feedback_pairs(recent)
        recent_eval = pairs_eval_set(recent_pairs, prefix="feedback") if recent_pairs else None
        evaluation = merge_eval_sets(evaluation, recent_eval)
        pairs.extend(rated_pairs)
        stats.update({
            "feedback_answers": len(feedback), "feedback_pairs": len(rated_pairs),
            "feedback_negatives": sum(len(p.negatives) for p in rated_pairs),
            "feedback_negative_only_questions": len(feedback_negatives(older)),
            "feedback_eval_queries": len(recent_eval.queries) if recent_eval else 0,
        })
        sources.append(f"feedback ({len(feedback)} answers)")
    stats["pairs"] = len(pairs)
    stats["eval_queries"] = len(evaluation.queries) if evaluation else 0
    return Dataset(tuple(pairs), pairs_digest(pairs), " + ".join(sources), evaluation, stats)
