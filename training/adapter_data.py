"""Examples for the answer adapter: what the model should say, and what people rated, for cited answers.

Supervised (SFT) examples are (question, numbered source passages, a reference
answer that cites them as [n]). They come from a JSONL file whose lines are either

- pairs: ``{"query", "positive", "negatives"?, "answer"?}``. With an ``answer`` the
  target is that answer citing the positive passage's number; a pair without an
  answer has nothing to imitate and is skipped (counted in ``skipped``);
- QMSum meetings: ``{"meeting_transcripts", "specific_query_list": [{"query",
  "answer", "relevant_text_span"}]}``. The gold turn spans become passages, one
  distractor passage from elsewhere in the meeting is added, and each sentence of
  the reference answer cites the gold passage that supports it;
- rated answers: ``{"question", "passages", "answer", "label"}``, which are KTO
  examples (label true = 👍).

Feedback from the store becomes KTO examples with ``rated_examples``. Prompts are
always built by production's ``answer_messages`` (``messages``), so the adapter is
trained on exactly the text it is served.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.answer.prompts import TRUNCATED, Packed, answer_messages, pack_sources
from core.answer.validation import SUPPORT_THRESHOLD, citations, support, without_citations
from core.errors import InvalidRequest
from core.models import Chunk, Hit, Message
from core.textutil import split_sentences
from training.qmsum import MAX_LINE_BYTES, parse_meeting
from training.records import MAX_NEGATIVES, MAX_QUERY_CHARS, clean_text, read_jsonl
from training.records import MAX_PASSAGE_CHARS as MAX_SOURCE_CHARS

NOT_FOUND = "NOT FOUND"  # what the system prompt tells the model to reply when the sources lack the answer
MAX_EXAMPLES = 200_000
MAX_ANSWER_CHARS = 4_000
MAX_PASSAGE_CHARS = 2_000  # a passage shown to the model; longer ones are shortened, and say so, as production does
MAX_PASSAGES = 8
MAX_DISTRACTORS = 3
PROMPT_SLACK = 64  # tokens kept free for the chat template's own words, as answering.py keeps them


@dataclass(frozen=True, slots=True)
class Passage:
    """A source as the model sees it: its text, and the name its header shows."""

    text: str
    source: str = "document"


@dataclass(frozen=True, slots=True)
class AnswerExample:
    """A supervised example: the answer cites passages by their 1-based number."""

    question: str
    passages: tuple[Passage, ...]
    answer: str


@dataclass(frozen=True, slots=True)
class RatedExample:
    """An answer people rated: ``label`` True for 👍, False for 👎 (KTO's desirable / undesirable).

    ``core.models.RatedAnswer`` holds no answer text, so the lead maps feedback here
    with ``rated_examples(records, texts=...)``, the texts coming from the answer log.
    """

    question: str
    passages: tuple[Passage, ...]
    answer: str
    label: bool


@dataclass(frozen=True, slots=True)
class AdapterData:
    sft: tuple[AnswerExample, ...]
    kto: tuple[RatedExample, ...]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> how many lines or queries


# ---------------------------------------------------------------- prompts, as production builds them


def packed(passages: Sequence[Passage]) -> Packed:
    """The passages numbered from 1 as production's ``pack_sources`` hands them to ``answer_messages``."""
    hits = []
    for i, p in enumerate(passages, 1):
        digest = hashlib.sha256(p.text.encode()).hexdigest()[:16]
        chunk = Chunk(chunk_id=f"train-{digest}", doc_id=f"train-{p.source}", version=digest, ordinal=i,
                      source=p.source, scope="train", text=p.text)
        hits.append(Hit(chunk=chunk, score=1.0, rank=i))
    return Packed(hits, [p.text for p in passages], [])


def messages(question: str, passages: Sequence[Passage]) -> list[Message]:
    """The chat prompt production sends for this question and these sources."""
    return answer_messages(question, packed(passages))


def fit(question: str, passages: Sequence[Passage], room: int, count: Callable[[str], int]) -> Packed:
    """The sources that fit ``room`` tokens of prompt, packed the way answering.py packs them."""
    overhead = count(answer_messages(question, Packed([], [], []))[0].content + question) + PROMPT_SLACK
    budget = room - overhead
    return pack_sources(packed(passages).hits, budget, count) if budget > 0 else Packed([], [], [])


# Citation marks are read with validation's own pattern, so "a citation" means what serving means by it.
def cited_numbers(answer: str) -> list[int]:
    """Every source number the answer cites, in order."""
    return citations(answer)


def uncited(text: str) -> str:
    return without_citations(text)


def abstains(answer: str) -> bool:
    return uncited(answer).rstrip(".") == NOT_FOUND


def cite(answer: str, passages: Sequence[Passage], gold: Sequence[int]) -> str:
    """The answer with each sentence citing the gold passage(s) that support it.

    Markers go before the sentence's final punctuation, as validation writes them.
    A sentence no gold passage supports cites the best-supporting one anyway: the
    reference answer is true of the gold passages as a whole.
    """
    out = []
    for sentence in split_sentences(uncited(answer)):
        scores = {n: support(sentence, passages[n - 1].text) for n in gold}
        backed = [n for n in gold if scores[n] >= SUPPORT_THRESHOLD] or [max(gold, key=lambda n: scores[n])]
        marks = "".join(f"[{n}]" for n in backed)
        out.append(f"{sentence[:-1]} {marks}{sentence[-1]}" if sentence[-1] in ".!?" else f"{sentence} {marks}")
    return " ".join(out)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + TRUNCATED


def _place(key: str, positive: Passage, others: Sequence[Passage]) -> tuple[tuple[Passage, ...], int]:
    """Put the positive at a position fixed by the question, so the model never learns "always cite [1]"."""
    slot = _key(key) % (len(others) + 1)
    ordered = [*others[:slot], positive, *others[slot:]]
    return tuple(ordered), slot + 1


# ---------------------------------------------------------------- line readers


def _text(obj: Mapping, key: str, where: str, limit: int) -> str:
    return clean_text(obj.get(key), field=key, where=where, max_chars=limit)


def from_pair(obj: Mapping, where: str, *, passage_chars: int = MAX_PASSAGE_CHARS) -> AnswerExample | None:
    """A pair line as an SFT example, or None when it has no answer to imitate."""
    query = _text(obj, "query", where, MAX_QUERY_CHARS)
    positive = _text(obj, "positive", where, MAX_SOURCE_CHARS)
    raw = obj.get("negatives") or []
    if not isinstance(raw, list) or len(raw) > MAX_NEGATIVES:
        raise InvalidRequest(f"{where}: negatives must be a list of at most {MAX_NEGATIVES} strings")
    negatives = [clean_text(n, field=f"negative {i}", where=where, max_chars=MAX_SOURCE_CHARS)
                 for i, n in enumerate(raw, 1)]
    if obj.get("answer") is None:
        return None
    answer = _text(obj, "answer", where, MAX_ANSWER_CHARS)
    others = [Passage(_shorten(n, passage_chars)) for n in negatives if n != positive][:MAX_DISTRACTORS]
    passages, gold = _place(query, Passage(_shorten(positive, passage_chars)), others)
    target = answer if abstains(answer) else cite(answer, passages, [gold])
    if not target:
        raise InvalidRequest(f"{where}: answer has no text besides citation marks")
    return AnswerExample(query, passages, target)


def _runs(positions: Sequence[int]) -> list[list[int]]:
    """Consecutive line positions grouped: each run of gold turns is one passage."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def from_meeting(obj: dict, where: str, *, passage_chars: int = MAX_PASSAGE_CHARS) -> tuple[list[AnswerExample],
                                                                                              int]:
    """A QMSum meeting line as SFT examples (one per specific query with gold turns), and how many had none.

    The meeting is checked by training/qmsum.py's ``parse_meeting``, which keeps the
    queries that have gold turns in file order; their answers are read beside them.
    """
    meeting = parse_meeting(obj, where)
    raw = [q for q in obj.get("specific_query_list") or [] if isinstance(q, dict)]
    examples: list[AnswerExample] = []
    pending = list(meeting.queries)
    for n, q in enumerate(raw):
        if not pending or q.get("query") is None:
            break
        at = f"{where}, specific query {n}"
        if clean_text(q.get("query"), field="query", where=at, max_chars=MAX_QUERY_CHARS) != pending[0].query:
            continue  # a query without gold turns: parse_meeting left it out
        gq = pending.pop(0)
        answer = _text(q, "answer", at, MAX_ANSWER_CHARS)
        gold = [Passage(_shorten("\n".join(meeting.lines[i] for i in run), passage_chars), meeting.name)
                for run in _runs(gq.gold)[:MAX_PASSAGES - 1]]
        passages = list(gold)
        distractor = _distractor(meeting.lines, set(gq.gold), gq.query, passage_chars, meeting.name)
        if distractor is not None:
            # First or last, decided by the question, so the distractor's number is not a constant.
            passages = [distractor, *gold] if _key(gq.query) % 2 else [*gold, distractor]
        target = cite(answer, passages, [passages.index(p) + 1 for p in gold])
        if not target:
            raise InvalidRequest(f"{at}: answer has no text besides citation marks")
        examples.append(AnswerExample(gq.query, tuple(passages), target))
    return examples, meeting.queries_without_gold


def _key(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def _distractor(lines: Sequence[str], used: set[int], key: str, chars: int, source: str) -> Passage | None:
    """Consecutive turns outside the gold ones, from a place in the meeting fixed by the question."""
    free = [i for i in range(len(lines)) if i not in used]
    if not free:
        return None
    picked, size = [], 0
    for i in free[_key(key) % len(free):]:
        if size >= chars // 2:
            break
        picked.append(lines[i])
        size += len(lines[i])
    return Passage(_shorten("\n".join(picked), chars), source)


def _passage(p: Any) -> tuple[Any, Any]:
    """(text, source) of a passage given as a string, a {"text", "source"?} object or a Passage-like record."""
    if isinstance(p, str):
        return p, "document"
    if isinstance(p, dict):
        return p.get("text"), p.get("source") or "document"
    return getattr(p, "text", None), getattr(p, "source", None) or "document"


def _passages(value: Any, where: str, chars: int) -> tuple[Passage, ...]:
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not value or len(value) > MAX_PASSAGES:
        raise InvalidRequest(f"{where}: passages must be a list of 1 to {MAX_PASSAGES} passages")
    out = []
    for i, p in enumerate(value, 1):
        text, source = _passage(p)
        text = clean_text(text, field=f"passage {i}", where=where, max_chars=MAX_SOURCE_CHARS)
        source = clean_text(source, field=f"passage {i} source", where=where, max_chars=200)
        out.append(Passage(_shorten(text, chars), source))
    return tuple(out)


def from_rated(obj: Mapping, where: str, *, passage_chars: int = MAX_PASSAGE_CHARS) -> RatedExample:
    label = obj.get("label")
    if not isinstance(label, bool):
        raise InvalidRequest(f"{where}: label must be true (👍) or false (👎)")
    passages = _passages(obj.get("passages"), where, passage_chars)
    answer = _text(obj, "answer", where, MAX_ANSWER_CHARS)
    if any(not 1 <= n <= len(passages) for n in cited_numbers(answer)):
        raise InvalidRequest(f"{where}: the answer cites a source number beyond its {len(passages)} passages")
    return RatedExample(_text(obj, "question", where, MAX_QUERY_CHARS), passages, answer, label)


def _count(skipped: dict[str, int], why: str, n: int = 1) -> None:
    if n:
        skipped[why] = skipped.get(why, 0) + n


def read_examples(path: Path, *, passage_chars: int = MAX_PASSAGE_CHARS,
                  max_examples: int = MAX_EXAMPLES) -> AdapterData:
    """SFT and KTO examples from a JSONL file of pairs, QMSum meetings and/or rated answers, in any mix."""
    path = Path(path)
    sft: list[AnswerExample] = []
    kto: list[RatedExample] = []
    skipped: dict[str, int] = {}
    kinds: set[str] = set()
    for number, obj in read_jsonl(path, max_line_bytes=MAX_LINE_BYTES):
        where = f"{path.name} line {number}"
        if "meeting_transcripts" in obj:
            kinds.add("qmsum")
            made, missing = from_meeting(obj, where, passage_chars=passage_chars)
            sft.extend(made)
            _count(skipped, "query without gold turns", missing)
        elif "positive" in obj:
            kinds.add("pairs")
            example = from_pair(obj, where, passage_chars=passage_chars)
            if example is None:
                _count(skipped, "pair without an answer")
            else:
                sft.append(example)
        elif "label" in obj:
            kinds.add("rated")
            kto.append(from_rated(obj, where, passage_chars=passage_chars))
        else:
            raise InvalidRequest(f"{where}: neither a pair (query, positive), a QMSum meeting "
                                 "(meeting_transcripts) nor a rated answer (question, passages, answer, label)")
        if len(sft) + len(kto) > max_examples:
            raise InvalidRequest(f"{path.name}: more than {max_examples:,} examples")
    if not sft and not kto:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items()) or "the file is empty"
        raise InvalidRequest(f"{path.name}: no example to train on ({reasons})")
    return AdapterData(tuple(sft), tuple(kto), f"{'+'.join(sorted(kinds))}:{path.name}", skipped)


def rated_examples(records: Iterable[Any], texts: Mapping[str, str] | None = None, *,
                   passage_chars: int = MAX_PASSAGE_CHARS) -> tuple[RatedExample, ...]:
    """KTO examples from rated answers (``core.models.RatedAnswer``-like: question, passages, ups, downs).

    The answer text is the record's ``answer`` (or ``text``) when it has one, else
    ``texts[record.answer_id]``. More 👍 than 👎 is desirable, more 👎 undesirable;
    a tie says nothing and is left out. The prompt holds the cited passages in
    citation order (what the record keeps), so the answer's [n] still name them;
    an answer that cited nothing (an abstention) has no prompt to rebuild and is left out.
    """
    out = []
    for i, r in enumerate(records, 1):
        where = f"rated answer {getattr(r, 'answer_id', i)}"
        ups, downs = getattr(r, "ups", 0), getattr(r, "downs", 0)
        if not isinstance(ups, int) or not isinstance(downs, int) or ups < 0 or downs < 0:
            raise InvalidRequest(f"{where}: ups and downs must be counts")
        if ups == downs or not getattr(r, "passages", None):
            continue
        answer = getattr(r, "answer", None) or getattr(r, "text", None)
        if answer is None and texts is not None:
            answer = texts.get(getattr(r, "answer_id", ""))
        if answer is None:
            raise InvalidRequest(f"{where}: no answer text (give the answer log's texts by answer_id)")
        obj = {"question": getattr(r, "question", None), "passages": getattr(r, "passages", None),
               "answer": answer, "label": ups > downs}
        out.append(from_rated(obj, where, passage_chars=passage_chars))
    return tuple(out)
