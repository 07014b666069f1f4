"""LLM minutes: map-reduce over windows of a meeting's turns, with verbatim evidence or nothing.

Map: the turns are cut into windows that fit the model's context (a turn too long for one
window is split) and each window is asked for JSON minutes; an unusable reply gets up to
``max_repairs`` repair requests, then the fallback drafter writes that window. Reduce: window
summaries are merged by one more call, items are deduplicated, topics concatenated. Every
item's quote is located in the transcript; an item whose quote is not there is dropped.
Windows run one at a time and quotes are looked for in their own window only, so work and
memory grow linearly with the meeting.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

from core.llm.base import Generator
from core.minutes import prompts as P
from core.minutes.base import MinutesDrafter, Progress, evidence, quote_in
from core.models import ActionItem, Decision, Evidence, Meeting, Minutes, OpenQuestion, Topic, Turn

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 8  # chat-template tokens around each message
MIN_WINDOW_TOKENS = 64  # below this a window holds too little transcript to be worth a call
MAX_EVIDENCE = 3
RECENT = 50  # near-duplicates are looked for among this many latest items of a kind
SIMILAR = 0.7  # word-set Jaccard similarity at which two items say the same thing
_WORD = re.compile(r"\w+")
_STOP = frozenset("a an the and or to of in on at by for with we will be is are it this that should".split())
_NONE = frozenset({"", "null", "none", "n/a", "unknown", "tbd", "-"})


@dataclass(slots=True)
class _Window:
    number: int
    parts: list[tuple[Turn, str, int]]  # (turn, its text or a piece of it, part number)

    @property
    def first(self) -> int:
        return self.parts[0][0].index

    @property
    def last(self) -> int:
        return self.parts[-1][0].index

    @property
    def label(self) -> str:
        return f"window {self.number} (turns {self.first}–{self.last})"


@dataclass(slots=True)
class _Item:
    text: str
    evidence: list[Evidence]
    owner: str | None = None
    due: str | None = None
    due_text: str | None = None
    words: frozenset[str] = frozenset()


class _Deduplicated:
    """Items of one kind, merged as they arrive: same normalised text, or mostly the same words."""

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self._by_key: dict[str, _Item] = {}

    def add(self, item: _Item) -> None:
        words = _WORD.findall(item.text.lower())
        item.words = frozenset(w for w in words if w not in _STOP) or frozenset(words)
        key = " ".join(words) + "|" + (item.owner or "").casefold()
        same = self._by_key.get(key) or next((old for old in reversed(self.items[-RECENT:])
                                              if _compatible(old, item) and _similar(old.words, item.words)), None)
        if same is None:
            self.items.append(item)
            self._by_key[key] = item
            return
        seen = {(e.turn, e.quote) for e in same.evidence}
        same.evidence = sorted(same.evidence + [e for e in item.evidence if (e.turn, e.quote) not in seen],
                               key=lambda e: e.turn)[:MAX_EVIDENCE]
        same.owner, same.due, same.due_text = (same.owner or item.owner, same.due or item.due,
                                               same.due_text or item.due_text)

    def in_order(self) -> list[_Item]:
        return sorted(self.items, key=lambda i: i.evidence[0].turn)


def _compatible(a: _Item, b: _Item) -> bool:
    # Items that name different numbers (versions, dates, amounts) are different items, however alike.
    numbers = {w for w in a.words if w.isdigit()} == {w for w in b.words if w.isdigit()}
    return numbers and (a.owner is None or b.owner is None or a.owner.casefold() == b.owner.casefold())


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= SIMILAR


@dataclass(slots=True)
class _Run:
    """What one draft collects while its windows are processed."""

    meeting: Meeting
    decisions: _Deduplicated = field(default_factory=_Deduplicated)
    actions: _Deduplicated = field(default_factory=_Deduplicated)
    questions: _Deduplicated = field(default_factory=_Deduplicated)
    topics: list[Topic] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: int = 0

    def add_topics(self, topics: list[Topic]) -> None:
        for t in sorted(topics, key=lambda t: (t.start is None, t.start or 0.0)):
            last = self.topics[-1] if self.topics else None
            if last and _norm(last.title) == _norm(t.title):
                ends = [e for e in (last.end, t.end) if e is not None]
                self.topics[-1] = Topic(last.title, last.start, max(ends) if ends else None)
            else:
                self.topics.append(t)


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def _said(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value.casefold() in _NONE else value


class LLMMinutes:
    """Minutes drafted by an LLM window by window, with a fallback drafter for unusable replies."""

    def __init__(self, generator: Generator, fallback: MinutesDrafter, *, max_new_tokens: int = 512,
                 max_repairs: int = 1):
        self._gen = generator
        self._fallback = fallback
        self._max_new = max_new_tokens
        self._max_repairs = max_repairs

    @property
    def model_id(self) -> str:
        return "llm-minutes:" + self._gen.model_id

    def prompt_overhead(self, title: str | None = None) -> int:
        """Tokens of a window request (a repair request, the longer kind) besides the transcript lines."""
        system, user = P.window_messages(title, 10**6, 10**6, [], error="x" * P.MAX_ERROR_CHARS)
        return self._gen.count_tokens(system.content) + self._gen.count_tokens(user.content) + 2 * MESSAGE_OVERHEAD

    def draft(self, meeting: Meeting, progress: Progress | None = None) -> Minutes:
        budget = self._gen.context_tokens - self.prompt_overhead(meeting.title) - self._max_new
        if budget < MIN_WINDOW_TOKENS:
            log.warning("LLM context of %d tokens is too small for minutes; using %s", self._gen.context_tokens,
                        self._fallback.model_id)
            minutes = self._fallback.draft(meeting, progress)
            return replace(minutes, notes=[f"the model's context ({self._gen.context_tokens} tokens) leaves no room "
                                           f"for the transcript; drafted by {self._fallback.model_id}"] + minutes.notes)
        windows = list(self._windows(meeting.turns, budget))
        run = _Run(meeting)
        run.notes.append(f"drafted in {len(windows)} window{'s' * (len(windows) != 1)} of at most {budget} "
                         f"transcript tokens")
        for window in windows:
            self._map(run, window)
            if progress is not None:
                progress(window.number, len(windows))
        if run.dropped:
            run.notes.append(f"{run.dropped} item{'s' * (run.dropped != 1)} dropped: their quotes are not in the "
                             f"transcript")
        summary = self._reduce_summary(run)
        title = meeting.title or (run.topics[0].title if run.topics else "Meeting minutes")
        return Minutes(
            title=title, date=meeting.date, summary=summary, topics=run.topics,
            attendees=list(dict.fromkeys(t.speaker for t in meeting.turns if t.speaker)),
            decisions=[Decision(i.text, tuple(i.evidence)) for i in run.decisions.in_order()],
            action_items=[ActionItem(i.text, i.owner, i.due, i.due_text, tuple(i.evidence))
                          for i in run.actions.in_order()],
            open_questions=[OpenQuestion(i.text, tuple(i.evidence)) for i in run.questions.in_order()],
            timed=meeting.timed, model=self._gen.model_id, notes=run.notes)

    # -- map ---------------------------------------------------------------------------------------

    def _windows(self, turns: list[Turn], budget: int):
        count = self._gen.count_tokens
        parts: list[tuple[Turn, str, int]] = []
        used = number = 0
        for turn in turns:
            if not turn.text.strip():
                continue
            cost = count(P.turn_line(turn, turn.text)) + 1
            pieces = [(turn.text, 0, cost)] if cost <= budget else self._split(turn, budget)
            for text, part, cost in pieces:
                if parts and used + cost > budget:
                    number += 1
                    yield _Window(number, parts)
                    parts, used = [], 0
                parts.append((turn, text, part))
                used += cost
        if parts:
            yield _Window(number + 1, parts)

    def _split(self, turn: Turn, budget: int) -> list[tuple[str, int, int]]:
        """Pieces of a turn's text (each a verbatim substring) that fit a window, cut at spaces."""
        count = self._gen.count_tokens
        room = max(8, budget - count(P.turn_line(turn, "", 1)) - 1)
        pieces: list[str] = []
        rest = turn.text.strip()
        while rest:
            n = count(rest)
            if n <= room:
                pieces.append(rest)
                break
            piece = rest[:max(1, int(len(rest) * room / n * 0.95))]
            while len(piece) > 1 and count(piece) > room:
                piece = piece[:int(len(piece) * 0.9)]
            space = piece.rfind(" ")
            if space > len(piece) // 2:
                piece = piece[:space]
            pieces.append(piece.rstrip())
            rest = rest[len(piece):].lstrip()
        return [(p, i, count(P.turn_line(turn, p, i)) + 1) for i, p in enumerate(pieces)]

    def _map(self, run: _Run, window: _Window) -> None:
        meeting = run.meeting
        lines = [P.turn_line(t, text, part) for t, text, part in window.parts]
        reply = self._gen.complete(P.window_messages(meeting.title, window.first, window.last, lines),
                                   max_tokens=self._max_new)
        parsed, error, repairs = None, None, 0
        while True:
            try:
                parsed = P.parse_reply(reply)
                break
            except P.BadReply as e:
                error = str(e)
            if repairs >= self._max_repairs:
                break
            repairs += 1
            reply = self._gen.complete(P.window_messages(meeting.title, window.first, window.last, lines, error),
                                       max_tokens=self._max_new)
        if parsed is None:
            log.info("%s: unusable model reply (%s); using %s", window.label, error, self._fallback.model_id)
            run.notes.append(f"{window.label}: the model's reply was unusable after {repairs} repair "
                             f"request{'s' * (repairs != 1)} ({error}); drafted by {self._fallback.model_id}")
            self._from_fallback(run, window)
            return
        if repairs:
            run.notes.append(f"{window.label}: the model's reply was used after {repairs} repair "
                             f"request{'s' * (repairs != 1)}")
        self._from_reply(run, window, parsed)

    def _from_reply(self, run: _Run, window: _Window, reply: P.WindowReply) -> None:
        timed = run.meeting.timed
        turns = {t.index: t for t, _, _ in window.parts}
        here = Meeting(turns=list(turns.values()))

        def locate(quote: str, near: int | None) -> list[Evidence]:
            found = quote_in(here, quote, near=near)
            if found is None:
                run.dropped += 1
                return []
            return [evidence(turns[found.turn], found.quote, timed)]

        run.summaries.append(reply.summary.strip())
        for d in reply.decisions:
            if d.text.strip() and (ev := locate(d.quote, d.turn)):
                run.decisions.add(_Item(d.text.strip(), ev))
        for a in reply.action_items:
            if a.task.strip() and (ev := locate(a.quote, a.turn)):
                due_text = _said(a.due_text)
                due = P.resolve_due(due_text, run.meeting.date)
                run.actions.add(_Item(a.task.strip(), ev, _said(a.owner), due, due_text))
        for q in reply.open_questions:
            if q.text.strip() and (ev := locate(q.quote, q.turn)):
                run.questions.add(_Item(q.text.strip(), ev))
        topics = []
        for t in reply.topics:
            if not t.title.strip():
                continue
            first = min(max(t.first_turn or window.first, window.first), window.last)
            last = min(max(t.last_turn or first, first), window.last)
            a, b = _nearest(window, first), _nearest(window, last)
            if timed:
                topics.append(Topic(t.title.strip(), a.start, b.end if b.end is not None else b.start))
            else:
                topics.append(Topic(t.title.strip(), float(a.index), float(b.index)))
        run.add_topics(topics)

    def _from_fallback(self, run: _Run, window: _Window) -> None:
        meeting, timed = run.meeting, run.meeting.timed
        turns = {t.index: t for t, _, _ in window.parts}
        texts: dict[int, list[str]] = {}
        for t, text, _ in window.parts:
            texts.setdefault(t.index, []).append(text)
        sub = Meeting(turns=[Turn(t.index, t.speaker, " ".join(texts[i]), t.start if timed else None,
                                  t.end if timed else None) for i, t in turns.items()],
                      title=meeting.title, date=meeting.date, source=meeting.source)
        minutes = self._fallback.draft(sub)

        def kept(ev: tuple[Evidence, ...]) -> list[Evidence]:
            # Checked against the full turns: the fallback saw only this window's pieces of them.
            out = [evidence(turns[e.turn], e.quote, timed) for e in ev
                   if e.turn in turns and e.quote and e.quote in turns[e.turn].text]
            run.dropped += not out
            return out[:MAX_EVIDENCE]

        run.summaries.append(minutes.summary.strip())
        for d in minutes.decisions:
            if ev := kept(d.evidence):
                run.decisions.add(_Item(d.text, ev))
        for a in minutes.action_items:
            if ev := kept(a.evidence):
                due = a.due or P.resolve_due(a.due_text, meeting.date)
                run.actions.add(_Item(a.task, ev, a.owner, due, a.due_text))
        for q in minutes.open_questions:
            if ev := kept(q.evidence):
                run.questions.add(_Item(q.text, ev))
        run.add_topics(list(minutes.topics))

    # -- reduce ------------------------------------------------------------------------------------

    def _reduce_summary(self, run: _Run) -> str:
        parts = [s for s in run.summaries if s]
        if len(parts) <= 1:
            return parts[0] if parts else ""
        level = parts
        while len(level) > 1:  # one call normally; a very long meeting merges in groups, then merges those
            groups = self._summary_groups(run.meeting.title, level)
            if len(groups) == len(level):  # not even two summaries fit one request
                run.notes.append("the window summaries are too long to merge in the model's context; they are joined")
                return " ".join(level)
            merged = []
            for group in groups:
                text = group[0] if len(group) == 1 else P.clean_summary(
                    self._gen.complete(P.merge_messages(run.meeting.title, group), max_tokens=self._max_new))
                if not text:
                    run.notes.append("the model's merged summary was unusable; the window summaries are joined")
                    return " ".join(parts)
                merged.append(text)
            level = merged
        return level[0]

    def _summary_groups(self, title: str | None, summaries: list[str]) -> list[list[str]]:
        count = self._gen.count_tokens
        budget = (self._gen.context_tokens - self._max_new - 2 * MESSAGE_OVERHEAD
                  - sum(count(m.content) for m in P.merge_messages(title, [])))
        groups: list[list[str]] = [[]]
        used = 0
        for s in summaries:
            cost = count(f"Part {len(groups[-1]) + 1}: {s}\n\n")
            if groups[-1] and used + cost > budget:
                groups.append([])
                used = 0
            groups[-1].append(s)
            used += cost
        return groups


def _nearest(window: _Window, index: int) -> Turn:
    return min((t for t, _, _ in window.parts), key=lambda t: abs(t.index - index))
