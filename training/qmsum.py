"""QMSum meeting corpora (JSONL, one meeting a line) read as checked meetings and evaluation sets.

A meeting is written the way production ingests a transcript text file: one line
per turn, ``Speaker: text`` (whitespace collapsed, empty turns left out), as
bench/retrieval_qmsum.py writes ``<meeting_id>.txt``. Only *specific* queries
with ``relevant_text_span`` turn ranges carry gold; general queries have none and
are counted, not used. Gold turns of fewer than 4 words ("Yeah .") are left out
of a query's gold unless it has only such turns, as the benchmark does.

``read_qmsum`` turns meetings into training pairs with the production chunker
(training/mining.py): a query's positives are the chunks holding one of its
gold turns (a chunk holding a window of a turn longer than a chunk counts); its
hard negatives are top BM25 chunks holding none of its gold turns, one from its
own meeting and the rest from other meetings. ``held_out`` keeps whole meetings
back, as an evaluation set of meetings training never saw.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from training.mining import KeywordScorer, LocatedChunk, candidates, locate_chunks, make_chunker, pick
from training.records import MAX_NEGATIVES, MAX_QUERY_CHARS, clean_text, eval_set, pairs_digest, read_jsonl
from training.types import Dataset, EvalDocument, EvalQuery, EvalSet, Pair

MAX_LINE_BYTES = 64 << 20  # one meeting; the real ones are under 200 KB
MAX_TURNS = 50_000
MAX_TURN_CHARS = 100_000
MAX_SPEAKER_CHARS = 200
MAX_QUERIES = 1000
MAX_SPANS = 100
MAX_MEETINGS = 100_000
MIN_WORDS = 4
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SPACE = re.compile(r"\s+")
_INDEX = re.compile(r"\d{1,9}")


@dataclass(frozen=True, slots=True)
class GoldQuery:
    """A specific query and its gold turns, as positions in ``QMeeting.lines``."""

    query: str
    gold: tuple[int, ...]  # every gold turn with text
    core: tuple[int, ...]  # the gold turns that count as answers: 4 words or more, unless there are none such


@dataclass(frozen=True, slots=True)
class QMeeting:
    meeting_id: str
    lines: tuple[str, ...]  # "Speaker: text", one per turn that has text
    queries: tuple[GoldQuery, ...]
    general_queries: int = 0  # no span: not used
    queries_without_gold: int = 0  # a specific query whose spans name no turn with text

    @property
    def name(self) -> str:
        return f"{self.meeting_id}.txt"

    @property
    def text(self) -> str:
        """The transcript file production would ingest."""
        return "\n".join(self.lines) + "\n"


def turn_line(speaker: str | None, content: str | None) -> str | None:
    """``Speaker: text`` with whitespace collapsed; None for a turn without text."""
    text = _SPACE.sub(" ", content or "").strip()
    if not text:
        return None
    return f"{_SPACE.sub(' ', speaker or '').strip() or 'Unknown'}: {text}"


def words(line: str) -> int:
    """Words of a turn line's text (after the speaker), counting only those with a letter or digit."""
    return sum(any(ch.isalnum() for ch in w) for w in line.split(":", 1)[-1].split())


def _list(record: dict, key: str, where: str, cap: int) -> list:
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: {key} must be a list, got {type(value).__name__}")
    if len(value) > cap:
        raise InvalidRequest(f"{where}: {key} has {len(value):,} entries, over the limit of {cap:,}")
    return value


def _turns(record: dict, where: str) -> tuple[list[str], dict[int, int]]:
    """The meeting's turn lines and, for each turn index with text, its position among them."""
    turns = _list(record, "meeting_transcripts", where, MAX_TURNS)
    if not turns:
        raise InvalidRequest(f"{where}: meeting_transcripts is missing or empty")
    lines: list[str] = []
    position: dict[int, int] = {}
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InvalidRequest(f"{where}: turn {i} must be an object, got {type(turn).__name__}")
        speaker, content = turn.get("speaker"), turn.get("content")
        if speaker is not None and (not isinstance(speaker, str) or len(speaker) > MAX_SPEAKER_CHARS):
            raise InvalidRequest(f"{where}: turn {i} speaker must be a string of at most {MAX_SPEAKER_CHARS}")
        if content is not None and (not isinstance(content, str) or len(content) > MAX_TURN_CHARS):
            raise InvalidRequest(f"{where}: turn {i} content must be a string of at most {MAX_TURN_CHARS:,}")
        line = turn_line(speaker, content)
        if line is not None:
            if "\x00" in line:
                raise InvalidRequest(f"{where}: turn {i} contains a NUL character")
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:  # a lone surrogate ("\ud800") that JSON let through
                raise InvalidRequest(f"{where}: turn {i} holds an unpaired surrogate") from e
            position[i] = len(lines)
            lines.append(line)
    if not lines:
        raise InvalidRequest(f"{where}: no turn has any text")
    return lines, position


def _index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRequest(f"{where}: a span bound must be a turn number, got {type(value).__name__}")
    if isinstance(value, str):
        if not _INDEX.fullmatch(value.strip()):
            raise InvalidRequest(f"{where}: a span bound must be a turn number of at most 9 digits")
        value = int(value)
    if not 0 <= value < 10**9:
        raise InvalidRequest(f"{where}: a span bound must be a turn number from 0")
    return value


def _gold(query: dict, where: str, position: dict[int, int], turns: int) -> tuple[int, ...]:
    found: list[int] = []
    for span in _list(query, "relevant_text_span", where, MAX_SPANS):
        if not isinstance(span, list) or len(span) != 2:
            raise InvalidRequest(f"{where}: a relevant_text_span entry must be [start, end]")
        lo, hi = _index(span[0], where), _index(span[1], where)
        if lo > hi:
            raise InvalidRequest(f"{where}: a span starts after it ends ({lo} > {hi})")
        # Clipped to the meeting before iterating: a span of a billion turns costs nothing.
        found.extend(position[i] for i in range(lo, min(hi, turns - 1) + 1) if i in position)
    return tuple(sorted(set(found)))


def parse_meeting(record: dict, where: str) -> QMeeting:
    """A checked meeting from one JSONL record; ``where`` names the file and line in errors."""
    lines, position = _turns(record, where)
    raw_id = record.get("meeting_id")
    if raw_id is None:  # train.jsonl has none: named by content, so the name is the same wherever the file is
        meeting_id = "m-" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
    elif isinstance(raw_id, str) and _ID.fullmatch(raw_id):
        meeting_id = raw_id
    else:
        raise InvalidRequest(f"{where}: meeting_id must be 1-100 letters, digits, '.', '_' or '-'")
    queries: list[GoldQuery] = []
    without = 0
    for n, q in enumerate(_list(record, "specific_query_list", where, MAX_QUERIES)):
        at = f"{where}, specific query {n}"
        if not isinstance(q, dict):
            raise InvalidRequest(f"{at}: must be an object")
        text = clean_text(q.get("query"), field="query", where=at, max_chars=MAX_QUERY_CHARS)
        gold = _gold(q, at, position, len(record["meeting_transcripts"]))
        if not gold:
            without += 1
            continue
        core = tuple(p for p in gold if words(lines[p]) >= MIN_WORDS) or gold
        queries.append(GoldQuery(text, gold, core))
    general = len(_list(record, "general_query_list", where, MAX_QUERIES))
    return QMeeting(meeting_id, tuple(lines), tuple(queries), general, without)


def read_meetings(path: Path) -> list[QMeeting]:
    """Every meeting of a QMSum JSONL file, checked; ids must be unique, identical meetings count once."""
    meetings: list[QMeeting] = []
    seen: dict[str, QMeeting] = {}
    for number, record in read_jsonl(path, max_line_bytes=MAX_LINE_BYTES):
        meeting = parse_meeting(record, f"{Path(path).name} line {number}")
        known = seen.get(meeting.meeting_id)
        if known is not None:
            if known.lines != meeting.lines:
                raise InvalidRequest(f"{Path(path).name} line {number}: meeting_id {meeting.meeting_id!r} "
                                     "is used by another meeting")
            continue
        if len(meetings) >= MAX_MEETINGS:
            raise InvalidRequest(f"{Path(path).name}: more than {MAX_MEETINGS:,} meetings")
        seen[meeting.meeting_id] = meeting
        meetings.append(meeting)
    if not meetings:
        raise InvalidRequest(f"{Path(path).name}: no meetings")
    return meetings


def check_share(held_out: float) -> float:
    if not isinstance(held_out, (int, float)) or not 0.0 <= held_out < 1.0:
        raise InvalidRequest("held_out is a share from 0 up to (not including) 1")
    return float(held_out)


def held_out_count(total: int, held_out: float, what: str) -> int:
    """How many of ``total`` items ``held_out`` keeps back: at least one, never all."""
    if check_share(held_out) == 0.0:
        return 0
    if total < 2:
        raise InvalidRequest(f"cannot hold back a share of {total} {what}: at least 2 are needed")
    return min(total - 1, max(1, round(held_out * total)))


def split_meetings(meetings: Sequence[QMeeting], held_out: float, seed: int
                   ) -> tuple[list[QMeeting], list[QMeeting]]:
    """(training, held out): whole meetings, chosen by seed and meeting id, not by file order."""
    n = held_out_count(len(meetings), held_out, "meetings")
    order = sorted(meetings, key=lambda m: hashlib.sha256(f"{seed}\x00{m.meeting_id}".encode()).hexdigest())
    held = {m.meeting_id for m in order[:n]}
    return [m for m in meetings if m.meeting_id not in held], [m for m in meetings if m.meeting_id in held]


def meetings_eval_set(meetings: Sequence[QMeeting]) -> EvalSet:
    """The meetings as transcript files, and their specific queries with the gold lines verbatim."""
    documents = [EvalDocument(m.name, m.text) for m in meetings]
    queries = [EvalQuery(q.query, m.name, tuple(dict.fromkeys(m.lines[p] for p in q.core)))
               for m in meetings for q in m.queries]
    return eval_set(documents, queries)


def read_qmsum_eval(path: Path) -> EvalSet:
    """A whole QMSum file as an evaluation set (``--eval val.jsonl``)."""
    return meetings_eval_set(read_meetings(path))


def qmsum_pairs(meetings: Sequence[QMeeting], chunker: Any, hard_negatives: int, seed: int,
                max_positives: int | None = 1) -> tuple[list[Pair], dict[str, int]]:
    """A pair per (query, chunk holding its gold turns), with its mined hard negatives.

    QMSum's spans are wide (a median of 5 chunks a query, up to 78): ``max_positives``
    keeps the chunks holding the most gold turns (None: all). Many weak positives of one
    query would also meet in a batch, where each is the other's in-batch negative.
    """
    if isinstance(hard_negatives, bool) or not isinstance(hard_negatives, int) \
            or not 0 <= hard_negatives <= MAX_NEGATIVES:
        raise InvalidRequest(f"hard_negatives is a whole number from 0 to {MAX_NEGATIVES}")
    chunks: list[LocatedChunk] = []
    spans: list[range] = []
    for i, m in enumerate(meetings):
        start = len(chunks)
        chunks.extend(locate_chunks(chunker, m.lines, doc=i, name=m.name))
        spans.append(range(start, len(chunks)))
    scorer = KeywordScorer([c.text for c in chunks]) if hard_negatives else None
    words = iter(scorer.words([q.query for m in meetings for q in m.queries]) if scorer else [])
    pairs: list[Pair] = []
    stats = {"chunks": len(chunks), "queries": 0, "negatives_same_meeting": 0, "negatives_other_meetings": 0}
    for m, own in zip(meetings, spans, strict=True):
        for q in m.queries:
            query_words = next(words, [])
            holding = [i for i in own if chunks[i].holds(q.core)]
            if max_positives is not None:
                holding = sorted(holding, key=lambda i: (-chunks[i].count(q.core), i))[:max_positives]
            positives = list(dict.fromkeys(chunks[i].text for i in holding))
            if not positives:
                continue
            stats["queries"] += 1
            gold_texts = {chunks[i].text for i in own if chunks[i].holds(q.gold)}

            def excluded(i: int, own: range = own, q: GoldQuery = q, gold_texts: set = gold_texts) -> bool:
                c = chunks[i]
                return (i in own and c.holds(q.gold)) or c.text in gold_texts

            found = candidates(scorer.scores(query_words) if scorer else None, own, hard_negatives, excluded)
            rng = random.Random(f"{seed}\x00{m.meeting_id}\x00{q.query}")  # str seeds hash alike in every process
            for positive in positives:
                picked, same = pick(found, hard_negatives, rng)
                negatives = tuple(dict.fromkeys(chunks[i].text for i in picked))
                stats["negatives_same_meeting"] += same
                stats["negatives_other_meetings"] += len(picked) - same
                pairs.append(Pair(q.query, positive, negatives))
    return pairs, stats


def read_qmsum(path: Path, tokenizer: Any, max_tokens: int, *, overlap: float = 0.15, hard_negatives: int = 1,
               seed: int = 0, held_out: float = 0.0, max_positives: int | None = 1) -> Dataset:
    """Training pairs from a QMSum file, chunked as production chunks with ``tokenizer`` and ``max_tokens``
    (the embedder's window, or less); ``held_out`` of the meetings become ``Dataset.eval``."""
    chunker = make_chunker(tokenizer, max_tokens, overlap)
    meetings = read_meetings(path)
    train, held = split_meetings(meetings, held_out, seed)
    pairs, mined = qmsum_pairs(train, chunker, hard_negatives, seed, max_positives)
    if not pairs:
        raise InvalidRequest(f"{Path(path).name}: no specific query with gold turns in the training meetings")
    evaluation = meetings_eval_set(held) if held else None
    stats = {
        "format": "qmsum", "pairs": len(pairs), "meetings": len(train), "held_out_meetings": len(held),
        **mined, "negatives": sum(len(p.negatives) for p in pairs),
        "general_queries_skipped": sum(m.general_queries for m in train),
        "queries_without_gold": sum(m.queries_without_gold for m in train),
        "eval_queries": len(evaluation.queries) if evaluation else 0,
    }
    held_note = f", {len(held)} held out" if held else ""
    return Dataset(pairs=tuple(pairs), digest=pairs_digest(pairs),
                   source=f"qmsum:{Path(path).name} ({len(train)} meetings{held_note})", eval=evaluation, stats=stats)
