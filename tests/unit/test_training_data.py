"""The data stage of the learning loop: pairs files, QMSum meetings and feedback become checked datasets.

QMSum conversion runs on tests/data/qmsum_tiny.jsonl (three small meetings, one
without a meeting_id like train.jsonl) with the bundled MiniLM tokenizer and the
production chunker, at 40 tokens a chunk so each meeting makes several chunks.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.errors import InvalidRequest
from core.ingest.chunking import Chunker
from core.ingest.loaders import load_file
from core.models import RatedAnswer
from training.data import (
    feedback_pairs, load_training_data, pairs_eval_set, read_eval_set, read_pairs, read_qmsum, read_qmsum_eval,
    split_pairs,
)
from training.feedback import feedback_negatives
from training.types import Pair

TINY = Path(__file__).resolve().parents[1] / "data" / "qmsum_tiny.jsonl"
MAX_TOKENS = 40
_SPACE = re.compile(r"\s+")


@pytest.fixture(scope="module")
def tok(embedder):
    return embedder.tokenizer()


def meetings() -> list[dict]:
    return [json.loads(line) for line in TINY.read_text().splitlines() if line.strip()]


def line_of(turn: dict) -> str | None:
    content = _SPACE.sub(" ", turn["content"]).strip()
    return f"{turn['speaker']}: {content}" if content else None


def gold_lines(meeting: dict, query: dict) -> list[str]:
    turns = meeting["meeting_transcripts"]
    lines = [line_of(turns[i]) for s in query["relevant_text_span"] for i in range(int(s[0]), int(s[1]) + 1)]
    return [x for x in lines if x]


def holds(passage: str, line: str) -> bool:
    """The passage has the whole line, or a window of it (a turn longer than a chunk is cut in windows)."""
    return line in passage or any(len(piece.split()) >= 5 and piece in line for piece in passage.split("\n"))


def gold_by_query() -> dict[str, tuple[dict, list[str]]]:
    return {q["query"]: (m, gold_lines(m, q)) for m in meetings() for q in m["specific_query_list"]}


def write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


# -- pairs files ---------------------------------------------------------------------


def test_a_pairs_file_is_read_with_blank_lines_skipped_and_negatives_optional(tmp_path):
    path = write(tmp_path / "pairs.jsonl", [
        json.dumps({"query": "hotel limit in Europe?", "positive": "Hotels: up to 180 EUR per night.",
                    "negatives": ["Flights: economy class.", "Flights: economy class."]}),
        "",
        "   ",
        json.dumps({"query": "  parental leave?\r\n", "positive": "Parents get 20 weeks.", "user": "U0ALICE"}),
    ])
    pairs = read_pairs(path)
    assert pairs == [
        Pair("hotel limit in Europe?", "Hotels: up to 180 EUR per night.", ("Flights: economy class.",)),
        Pair("parental leave?", "Parents get 20 weeks.", ()),
    ]
    assert "U0ALICE" not in repr(pairs)  # fields other than the pair's texts never enter


HOSTILE = [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"positive": "p"}), "query must be a string"),
    (json.dumps({"query": "q", "positive": "   "}), "positive is empty"),
    (json.dumps({"query": "", "positive": "p"}), "query is empty"),
    (json.dumps({"query": "q", "positive": "p", "negatives": "n"}), "negatives must be a list"),
    (json.dumps({"query": "q", "positive": "p", "negatives": ["n", 3]}), "negative 2 must be a string"),
    (json.dumps({"query": "q", "positive": "p", "negatives": ["n"] * 65}), "over the limit of 64"),
    (json.dumps({"query": "q" * 5000, "positive": "p"}), "query is longer than 4,000"),
    (json.dumps({"query": "q", "positive": "p" * 25_000}), "positive is longer than 20,000"),
    (json.dumps({"query": "q\u0000x", "positive": "p"}), "NUL"),
    ('{"query": "q\\ud800", "positive": "p"}', "unpaired surrogate"),
    ("[" * 100_000 + "]" * 100_000, "too deeply nested"),
    (json.dumps({"query": "q", "positive": "p", "negatives": ["p"]}), "also listed as a negative"),
    (b'{"query": "caf\xe9", "positive": "p"}', "not UTF-8"),
    (json.dumps({"query": "q", "positive": "p" * (2 << 20)}), "longer than 1,048,576 bytes"),
]


@pytest.mark.parametrize("bad,reason", HOSTILE, ids=[r for _, r in HOSTILE])
def test_a_bad_line_is_refused_naming_its_number_and_fault_without_echoing_it(tmp_path, bad, reason):
    good = json.dumps({"query": "q", "positive": "p"})
    path = write(tmp_path / "pairs.jsonl", [good, "", bad, good])
    with pytest.raises(InvalidRequest) as e:
        read_pairs(path)
    assert "pairs.jsonl line 3" in e.value.detail and reason in e.value.detail
    assert len(e.value.detail) < 200  # never the megabytes it was given


def test_an_empty_or_oversized_file_is_refused_before_reading(tmp_path):
    with pytest.raises(InvalidRequest, match="no pairs"):
        read_pairs(write(tmp_path / "blank.jsonl", ["", "  "]))
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as f:  # sparse: 2 GiB + 1 on paper, nothing on disk
        f.truncate((2 << 30) + 1)
    started = time.perf_counter()
    with pytest.raises(InvalidRequest, match="over the limit"):
        read_pairs(huge)
    with pytest.raises(InvalidRequest, match="over the limit"):
        load_training_data(huge, None, MAX_TOKENS)
    assert time.perf_counter() - started < 5  # refused by its size, not read


def test_split_pairs_keeps_every_query_on_one_side_whatever_the_order():
    pairs = [Pair(f"Question {i % 10}", f"passage {i}") for i in range(40)]
    pairs += [Pair("question 3", "one more passage")]  # the same question, other case
    train, held = split_pairs(pairs, 0.3, seed=7)
    assert len(train) + len(held) == len(pairs)
    key = lambda p: p.query.casefold()  # noqa: E731
    assert {key(p) for p in train}.isdisjoint({key(p) for p in held})
    assert len({key(p) for p in held}) == 3
    _, again_held = split_pairs(list(reversed(pairs)), 0.3, seed=7)
    assert {key(p) for p in again_held} == {key(p) for p in held}
    assert split_pairs(pairs, 0.0, seed=7) == (pairs, [])
    with pytest.raises(InvalidRequest):
        split_pairs(pairs, 1.0, seed=7)


def test_pairs_become_an_evaluation_set_of_small_documents():
    pairs = [Pair("hotel limit?", "Hotels: up to 180 EUR per night.\nReceipts are required.",
                  ("Flights: economy class.",)),
             Pair("receipts?", "Hotels: up to 180 EUR per night.\nReceipts are required.")]
    ev = pairs_eval_set(pairs)
    assert len(ev.documents) == 2 and len(ev.queries) == 2  # each distinct passage once, negatives included
    docs = {d.name: d.text for d in ev.documents}
    for q in ev.queries:
        assert all(line in docs[q.document].split("\n") for line in q.gold)
        assert "180 EUR" in docs[q.document]
    assert pairs_eval_set(list(pairs)).digest == ev.digest


# -- QMSum ---------------------------------------------------------------------------


def test_qmsum_keeps_by_default_one_positive_per_query_the_chunk_with_most_gold_turns(tok):
    every = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=0, max_positives=None)
    one = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=0)
    gold = gold_by_query()
    assert sorted(p.query for p in one.pairs) == sorted(set(gold))  # one pair per query
    for p in one.pairs:
        lines = [g for g in gold[p.query][1] if len(g.split(":", 1)[1].split()) >= 4] or gold[p.query][1]
        held = sum(holds(p.positive, g) for g in lines)
        assert held >= max(sum(holds(q.positive, g) for g in lines) for q in every.pairs if q.query == p.query)


def test_qmsum_positives_hold_a_gold_turn_and_cover_every_gold_turn(tok):
    ds = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=1, max_positives=None)
    gold = gold_by_query()
    specific = set(gold)
    assert {p.query for p in ds.pairs} == specific  # every specific query, no general one
    assert ds.stats["general_queries_skipped"] == 3 and ds.stats["meetings"] == 3
    for p in ds.pairs:
        _, lines = gold[p.query]
        answers = [g for g in lines if len(g.split(":", 1)[1].split()) >= 4] or lines
        assert any(holds(p.positive, g) for g in answers), (p.query, p.positive)
    for query, (_, lines) in gold.items():
        positives = [p.positive for p in ds.pairs if p.query == query]
        for g in lines:
            if len(g.split(":", 1)[1].split()) >= 4:
                assert any(holds(pos, g) for pos in positives), (query, g)
    # The turn longer than a chunk: each of its windows is a positive of its own.
    long_turn = gold["Why did the industrial designer want a rubber case?"][1][1]
    windows = [p.positive for p in ds.pairs if p.query.startswith("Why") and long_turn not in p.positive
               and holds(p.positive, long_turn)]
    assert len(windows) >= 2


def test_qmsum_hard_negatives_hold_no_gold_turn_and_come_from_the_same_then_other_meetings(tok):
    by_query = gold_by_query()
    transcripts = {m.get("meeting_id", "third"): "\n".join(filter(None, map(line_of, m["meeting_transcripts"])))
                   for m in meetings()}

    def meeting_of(passage: str) -> set[str]:
        return {mid for mid, text in transcripts.items()
                if all(line in text for line in passage.split("\n") if len(line.split()) >= 5)}

    one = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=1)
    three = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=3)
    for ds, wanted in ((one, 1), (three, 3)):
        assert all(1 <= len(p.negatives) <= wanted for p in ds.pairs)
        for p in ds.pairs:
            _, lines = by_query[p.query]
            for n in p.negatives:
                assert not any(holds(n, g) for g in lines), (p.query, n)
                assert n != p.positive
    same = [p for p in one.pairs if meeting_of(p.negatives[0]) == {meeting_of(p.positive).pop()}]
    assert len(same) >= len(one.pairs) - 2  # one per pair from its own meeting, where it has a candidate
    assert one.stats["negatives_same_meeting"] >= len(same)
    others = [n for p in three.pairs for n in p.negatives[1:]]
    assert others and three.stats["negatives_other_meetings"] >= len(others)
    for p in three.pairs:
        home = meeting_of(p.positive)
        assert all(meeting_of(n).isdisjoint(home) for n in p.negatives[1:] if meeting_of(n))


def test_qmsum_chunks_are_the_ones_production_makes_of_the_transcript_file(tok, tmp_path):
    ds = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=1)
    ev = read_qmsum_eval(TINY)
    produced: set[str] = set()
    for doc in ev.documents:
        path = tmp_path / doc.name
        path.write_text(doc.text)
        loaded = load_file(path)  # as the ingest pipeline reads a .txt
        chunks = Chunker(tok, MAX_TOKENS, 0.15).chunk(loaded.segments, doc_id="d", version="v",
                                                      source=doc.name, scope="s")
        produced |= {c.text for c in chunks}
    passages = {p.positive for p in ds.pairs} | {n for p in ds.pairs for n in p.negatives}
    assert passages <= produced


def test_held_out_meetings_never_reach_training_and_become_the_evaluation_set(tok, tmp_path):
    ds = read_qmsum(TINY, tok, MAX_TOKENS, hard_negatives=3, held_out=0.34, seed=1)
    assert ds.stats["held_out_meetings"] == 1 and ds.stats["meetings"] == 2
    [doc] = ds.eval.documents
    held_lines = set(doc.text.splitlines())
    trained = " ".join(t for p in ds.pairs for t in (p.query, p.positive, *p.negatives))
    assert not any(line in trained for line in held_lines)
    held_queries = {q.query for q in ds.eval.queries}
    assert held_queries and held_queries.isdisjoint({p.query for p in ds.pairs})
    for q in ds.eval.queries:
        assert q.document == doc.name and all(g in held_lines for g in q.gold)
    # Which meetings are held out depends on the seed and the meetings, not on the file's order.
    shuffled = write(tmp_path / "shuffled.jsonl", list(reversed(TINY.read_text().splitlines())))
    again = read_qmsum(shuffled, tok, MAX_TOKENS, hard_negatives=3, held_out=0.34, seed=1)
    assert again.eval.documents == ds.eval.documents


def test_a_qmsum_file_as_an_evaluation_set_keeps_gold_lines_verbatim(tmp_path):
    ev = read_qmsum_eval(TINY)
    names = [d.name for d in ev.documents]
    assert names[:2] == ["ES2001a.txt", "Bmr001.txt"] and re.fullmatch(r"m-[0-9a-f]{12}\.txt", names[2])
    texts = {d.name: d.text for d in ev.documents}
    assert texts["ES2001a.txt"].startswith("Project Manager: Okay , welcome everyone")
    assert "User Interface: \n" not in texts["ES2001a.txt"]  # the empty turn is left out
    queries = {q.query: q for q in ev.queries}
    assert len(queries) == 5
    for q in ev.queries:
        assert all(g in texts[q.document].split("\n") for g in q.gold)
    # Short turns ("Yeah .") are not gold next to real ones, but are when a query has nothing else.
    assert "Marketing: Yeah ." not in queries["Why did the industrial designer want a rubber case?"].gold
    assert queries["How did Grad A reply to the question about the schedule?"].gold == ("Grad A: Yeah .",)
    assert read_eval_set(TINY) == ev
    moved = tmp_path / "elsewhere" / "copy.jsonl"
    moved.parent.mkdir()
    shutil.copy(TINY, moved)
    assert read_qmsum_eval(moved).digest == ev.digest


def test_the_digest_follows_content_not_path(tok, tmp_path):
    ds = load_training_data(TINY, tok, MAX_TOKENS, hard_negatives=1, held_out=0.0, seed=0)
    copy = tmp_path / "renamed.jsonl"
    shutil.copy(TINY, copy)
    same = load_training_data(copy, tok, MAX_TOKENS, hard_negatives=1, held_out=0.0, seed=0)
    assert same.digest == ds.digest and same.pairs == ds.pairs
    assert same.source != ds.source  # the source names the file; the digest does not
    edited = tmp_path / "edited.jsonl"
    edited.write_text(TINY.read_text().replace("twenty-five euros", "thirty euros", 1))
    assert load_training_data(edited, tok, MAX_TOKENS, hard_negatives=1).digest != ds.digest


def _meeting_line(**changes) -> str:
    m = meetings()[0]
    m.update(changes)
    return json.dumps(m)


QMSUM_HOSTILE = [
    (_meeting_line(meeting_id="../../etc/passwd"), "meeting_id must be"),
    (_meeting_line(meeting_transcripts=[]), "meeting_transcripts is missing or empty"),
    (_meeting_line(meeting_transcripts=["text"]), "turn 0 must be an object"),
    (_meeting_line(meeting_transcripts=[{"speaker": "A", "content": 5}]), "turn 0 content"),
    (_meeting_line(specific_query_list=[{"query": "q", "relevant_text_span": [["5", "2"]]}]), "starts after"),
    (_meeting_line(specific_query_list=[{"query": "q", "relevant_text_span": [["x", "2"]]}]), "turn number"),
    (_meeting_line(specific_query_list=[{"query": "q", "relevant_text_span": [["1"]]}]), "[start, end]"),
    (_meeting_line(specific_query_list="all of them"), "specific_query_list must be a list"),
    (_meeting_line(meeting_transcripts=[{"speaker": "A", "content": "x\u0000y"}]), "NUL"),
    (_meeting_line(meeting_transcripts=[{"speaker": "A", "content": "x\ud800y"}]), "unpaired surrogate"),
]


@pytest.mark.parametrize("bad,reason", QMSUM_HOSTILE, ids=[r for _, r in QMSUM_HOSTILE])
def test_a_bad_meeting_is_refused_naming_its_line(tok, tmp_path, bad, reason):
    path = write(tmp_path / "meetings.jsonl", [TINY.read_text().splitlines()[1], bad])
    with pytest.raises(InvalidRequest) as e:
        read_qmsum(path, tok, MAX_TOKENS)
    assert "meetings.jsonl line 2" in e.value.detail and reason in e.value.detail


def test_a_span_of_a_billion_turns_is_clipped_to_the_meeting(tok, tmp_path):
    m = meetings()[2]
    m["specific_query_list"] = [{"query": "What did the committee say about teacher salaries?",
                                 "relevant_text_span": [["1", "999999999"]]}]
    path = write(tmp_path / "wide.jsonl", [json.dumps(m), TINY.read_text().splitlines()[0]])
    started = time.perf_counter()
    ds = read_qmsum(path, tok, MAX_TOKENS, hard_negatives=1)
    assert time.perf_counter() - started < 30
    assert ds.pairs


def test_two_meetings_with_one_id_are_refused(tok, tmp_path):
    first = meetings()[0]
    other = dict(meetings()[1], meeting_id=first["meeting_id"])
    with pytest.raises(InvalidRequest, match="is used by another meeting"):
        read_qmsum(write(tmp_path / "dup.jsonl", [json.dumps(first), json.dumps(other)]), tok, MAX_TOKENS)


def test_the_format_is_told_from_the_first_record(tok, tmp_path):
    pairs = write(tmp_path / "pairs.jsonl", ["", json.dumps({"query": "q one", "positive": "p one"}),
                                             json.dumps({"query": "q two", "positive": "p two"})])
    ds = load_training_data(pairs, tok, MAX_TOKENS, held_out=0.5, seed=0)
    assert ds.stats["format"] == "pairs" and len(ds.pairs) == 1 and len(ds.eval.queries) == 1
    assert ds.source == "pairs:pairs.jsonl"
    assert load_training_data(TINY, tok, MAX_TOKENS).stats["format"] == "qmsum"
    with pytest.raises(InvalidRequest, match="neither a pair"):
        load_training_data(write(tmp_path / "other.jsonl", ['{"text": "hello"}']), tok, MAX_TOKENS)


# -- feedback --------------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 9, 0)


def rated(aid: str, question: str, passages: tuple[str, ...], ups: int, downs: int, minutes: int = 0) -> RatedAnswer:
    return RatedAnswer(aid, question, passages, ups, downs, T0 + timedelta(minutes=minutes))


def test_feedback_makes_pairs_from_thumbs_up_and_negatives_from_thumbs_down():
    answers = [
        rated("a1", "Hotel limit in Europe?", ("Hotels: 180 EUR a night.", "Receipts within 30 days."), 2, 0),
        rated("a2", "hotel limit in  europe?", ("Flights: economy class.", "Receipts within 30 days."), 0, 1, 5),
        rated("a3", "Parental leave?", ("Parents get 20 weeks.",), 1, 1, 6),  # a tie teaches nothing
        rated("a4", "Laptop memory?", ("Core hours are 10 to 16.",), 0, 2, 7),  # only 👎: no pair
    ]
    assert feedback_pairs(answers) == [
        Pair("Hotel limit in Europe?", "Hotels: 180 EUR a night.", ("Flights: economy class.",)),
        Pair("Hotel limit in Europe?", "Receipts within 30 days.", ("Flights: economy class.",)),
    ]
    [negative] = feedback_negatives(answers)
    assert negative.question == "Laptop memory?" and negative.passages == ("Core hours are 10 to 16.",)


def test_recent_feedback_joins_the_evaluation_slice_and_old_feedback_the_training(tok):
    answers = [rated(f"a{i}", f"Question number {i}?", (f"Passage number {i} answers it.",), 1, 0, i)
               for i in range(10)]
    ds = load_training_data(TINY, tok, MAX_TOKENS, held_out=0.34, seed=0, feedback=answers)
    trained = {p.query for p in ds.pairs}
    evaluated = {q.query for q in ds.eval.queries}
    assert {f"Question number {i}?" for i in range(7)} <= trained  # the older ones
    assert {f"Question number {i}?" for i in (7, 8, 9)} <= evaluated  # the most recent share
    assert evaluated.isdisjoint(trained)
    assert ds.stats["feedback_pairs"] == 7 and ds.stats["feedback_eval_queries"] == 3
    assert ds.source.endswith("+ feedback (10 answers)")
    alone = load_training_data(None, tok, MAX_TOKENS, feedback=answers)
    assert len(alone.pairs) == 10 and alone.eval is None
    with pytest.raises(InvalidRequest, match="no training data"):
        load_training_data(None, tok, MAX_TOKENS, feedback=[])
