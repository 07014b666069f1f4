"""Checked reading of hostile JSONL training files, and the content digests of what they become.

Every file is untrusted: its size is refused up front, it is read line by line
with a cap on each line, and each record's texts are checked for type, length
and encodability. A bad line raises ``InvalidRequest`` naming the file, the line
number and what is wrong, never the offending content.

Digests are over content, never over paths or people: the same pairs give the
same digest wherever the file lies and whoever rated the answers behind them.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from training.types import EvalDocument, EvalQuery, EvalSet, Pair

MAX_FILE_BYTES = 2 << 30  # 2 GiB
MAX_QUERY_CHARS = 4000  # the engine's own limit on a question
MAX_PASSAGE_CHARS = 20_000
MAX_NEGATIVES = 64
MAX_RECORDS = 2_000_000


def check_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Path:
    """``path`` as a regular file of at most ``max_bytes``, or InvalidRequest saying why not."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InvalidRequest(f"{path.name}: not a regular file")
        size = path.stat().st_size
    except OSError as e:
        raise InvalidRequest(f"{path.name}: cannot be read ({e.strerror or type(e).__name__})") from e
    if size > max_bytes:
        raise InvalidRequest(f"{path.name}: {size:,} bytes, over the limit of {max_bytes:,}")
    return path


def read_jsonl(path: Path, *, max_line_bytes: int, max_bytes: int = MAX_FILE_BYTES
               ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, streaming; refuses what is not a JSON object."""
    path = check_file(path, max_bytes)
    name = path.name
    with path.open("rb") as f:
        number = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_line_bytes:
                raise InvalidRequest(f"{name} line {number}: longer than {max_line_bytes:,} bytes")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise InvalidRequest(f"{name} line {number}: not UTF-8 (byte {e.start + 1})") from e
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise InvalidRequest(f"{name} line {number}: not JSON ({e.msg} at column {e.colno})") from e
            except (RecursionError, ValueError) as e:  # nesting too deep, an integer of thousands of digits
                raise InvalidRequest(f"{name} line {number}: JSON too deeply nested or too large a number") from e
            if not isinstance(record, dict):
                raise InvalidRequest(f"{name} line {number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def clean_text(value: Any, *, field: str, where: str, max_chars: int) -> str:
    """A non-empty string of at most ``max_chars``, NFC-normalised, with plain newlines and no edges."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: {field} must be a string, got {type(value).__name__}")
    if len(value) > max_chars * 2:  # refused before normalising megabytes
        raise InvalidRequest(f"{where}: {field} is longer than {max_chars:,} characters")
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not text:
        raise InvalidRequest(f"{where}: {field} is empty")
    if len(text) > max_chars:
        raise InvalidRequest(f"{where}: {field} is longer than {max_chars:,} characters")
    if "\x00" in text:
        raise InvalidRequest(f"{where}: {field} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate ("\ud800") that JSON let through
        raise InvalidRequest(f"{where}: {field} holds an unpaired surrogate at character {e.start + 1}") from e
    return text


def pairs_digest(pairs: Iterable[Pair]) -> str:
    """sha256 over the pairs' texts in order: the same content gives the same digest, wherever it came from."""
    h = hashlib.sha256(b"imp-pairs-v1\n")
    for p in pairs:
        h.update(json.dumps([p.query, p.positive, list(p.negatives)], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def eval_set(documents: Iterable[EvalDocument], queries: Iterable[EvalQuery]) -> EvalSet:
    """An EvalSet with its content digest; document names must be unique and every query's document present."""
    docs = tuple(documents)
    qs = tuple(queries)
    names = [d.name for d in docs]
    if len(set(names)) != len(names):
        raise InvalidRequest("an evaluation set names two documents the same")
    known = set(names)
    missing = next((q.document for q in qs if q.document not in known), None)
    if missing is not None:
        raise InvalidRequest(f"an evaluation query refers to a document not in the set: {missing[:80]!r}")
    h = hashlib.sha256(b"imp-evalset-v1\n")
    for d in docs:
        h.update(json.dumps(["doc", d.name, d.text], ensure_ascii=False).encode() + b"\n")
    for q in qs:
        h.update(json.dumps(["query", q.query, q.document, list(q.gold)], ensure_ascii=False).encode() + b"\n")
    return EvalSet(documents=docs, queries=qs, digest=h.hexdigest())


def merge_eval_sets(*sets: EvalSet | None) -> EvalSet | None:
    """One evaluation set from several (None ones skipped); a name used twice must hold the same text."""
    present = [s for s in sets if s is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    docs: dict[str, EvalDocument] = {}
    for s in present:
        for d in s.documents:
            if docs.setdefault(d.name, d).text != d.text:
                raise InvalidRequest(f"two evaluation sets hold different documents named {d.name[:80]!r}")
    return eval_set(docs.values(), (q for s in present for q in s.queries))
