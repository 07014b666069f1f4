"""LLM minutes against a real local OpenAI-compatible server: windows, repairs, fallback, evidence."""

from __future__ import annotations

import json
import re

import pytest

from core.errors import BackendError
from core.llm.openai_backend import OpenAIGenerator
from core.minutes.base import check_evidence, evidence
from core.minutes.llm import LLMMinutes
from core.models import Meeting, Minutes, OpenQuestion, Topic, Turn
from tests.fakes.openai_server import FakeOpenAI, Reply

LINES = [
    ("Priya", "Welcome everyone, today we review the rover firmware release plan."),
    ("Marco", "The regression in the battery driver is fixed on the main branch."),
    ("Lena", "Good. Then we ship firmware 2.4 on March 6 as planned."),
    ("Priya", "Agreed, we ship 2.4 on March 6. Marco, please write the release notes."),
    ("Marco", "I will write the release notes by Friday."),
    ("Lena", "Who signs off on the safety checklist this time?"),
    ("Priya", "Nobody yet, we need to find out before the release."),
    ("Marco", "Next item is the warehouse pilot with the new charging docks."),
    ("Lena", "The docks charge a rover in ninety minutes, down from two hours."),
    ("Priya", "Then we extend the pilot to the second warehouse in April."),
    ("Lena", "I will book the site visit for 2026-03-20."),
    ("Marco", "Do we have budget for twelve more docks?"),
    ("Priya", "Finance has not answered yet. We stay with the plan to ship 2.4 on March 6."),
    ("Lena", "Thanks all, see you next week."),
]
# With max_new_tokens=160, a 750-token context holds turns 1-7 in one window and 8-14 in the next.
TWO_WINDOWS = 750


def _meeting(timed: bool = True, title: str | None = "Rover weekly") -> Meeting:
    turns = [Turn(i, who, text, (i - 1) * 20.0 if timed else None, (i - 1) * 20.0 + 18 if timed else None)
             for i, (who, text) in enumerate(LINES, 1)]
    return Meeting(turns, title=title, date="2026-03-02")  # a Monday


class FirstSentence:
    """An honest drafter for the fallback path: the first sentence as summary, questions quoted whole."""

    model_id = "first-sentence"

    def __init__(self) -> None:
        self.seen: list[Meeting] = []

    def draft(self, meeting: Meeting, progress=None) -> Minutes:
        self.seen.append(meeting)
        first = meeting.turns[0].text.split(". ")[0].rstrip(".") + "."
        unit = (lambda t: t.start) if meeting.timed else (lambda t: float(t.index))
        questions = [OpenQuestion(t.text, (evidence(t, t.text, meeting.timed),))
                     for t in meeting.turns if t.text.endswith("?")]
        return Minutes(title=meeting.title or "Meeting", date=meeting.date, attendees=[], summary=first,
                       topics=[Topic("Discussion", unit(meeting.turns[0]), unit(meeting.turns[-1]))], decisions=[],
                       action_items=[], open_questions=questions, timed=meeting.timed, model=self.model_id)


@pytest.fixture
def fake_llm():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _drafter(server: FakeOpenAI, context: int = 8192, **kw) -> tuple[LLMMinutes, FirstSentence]:
    fallback = FirstSentence()
    gen = OpenAIGenerator(server.base_url, "fake-7b", max_retries=kw.pop("max_retries", 1), context_tokens=context)
    return LLMMinutes(gen, fallback, max_new_tokens=kw.pop("max_new_tokens", 160), **kw), fallback


WINDOW_1 = {
    "summary": "The team reviewed the rover firmware release. Version 2.4 ships on March 6.",
    "topics": [{"title": "Firmware release", "first_turn": 1, "last_turn": 7}],
    "decisions": [{"text": "Ship firmware 2.4 on March 6", "turn": 4, "quote": "we ship 2.4 on March 6"}],
    "action_items": [{"task": "Write the release notes", "owner": "Marco", "due_text": "by Friday", "turn": "[5]",
                      "quote": "I will write the release notes by Friday"}],
    "open_questions": [{"text": "Who signs off on the safety checklist?", "turn": 6,
                        "quote": "Who signs off on the safety checklist"}],
}
WINDOW_2 = {
    "summary": "The charging docks halve charging time. The pilot extends to a second warehouse.",
    "topics": [{"title": "Warehouse pilot", "first_turn": 8, "last_turn": 12},
               {"title": "Wrap-up", "first_turn": 13, "last_turn": 14}],
    "decisions": [{"text": "Extend the pilot to the second warehouse in April", "turn": 10,
                   "quote": "extend the pilot to the second warehouse in April"},
                  {"text": "We ship firmware 2.4 on March 6", "turn": 13, "quote": "ship 2.4 on March 6"}],
    "action_items": [{"task": "Book the site visit", "owner": "Lena", "due_text": "2026-03-20", "turn": 11,
                      "quote": "book the site visit for 2026-03-20"}],
    "open_questions": [{"text": "Is there budget for twelve more docks?", "turn": 12,
                        "quote": "Do we have budget for twelve more docks?"}],
}
MERGED = ("The team reviewed the rover firmware release and agreed to ship 2.4 on March 6. "
          "The warehouse pilot with new charging docks extends to a second warehouse in April.")


def test_two_windows_give_merged_minutes_with_evidence_in_the_right_turns(fake_llm):
    drafter, fallback = _drafter(fake_llm, TWO_WINDOWS)
    fake_llm.script.extend([Reply("Here are the minutes:\n```json\n" + json.dumps(WINDOW_1) + "\n```"),
                            Reply(json.dumps(WINDOW_2)), Reply(MERGED)])
    calls = []
    meeting = _meeting()
    minutes = drafter.draft(meeting, progress=lambda done, total: calls.append((done, total)))

    assert calls == [(1, 2), (2, 2)] and len(fake_llm.requests) == 3 and not fallback.seen
    first, second = (r["messages"][1]["content"] for r in fake_llm.requests[:2])
    assert "[1] Priya: Welcome" in first and "[7] Priya:" in first and "[8]" not in first
    assert "[8] Marco: Next item" in second and "[14] Lena:" in second and "[7]" not in second
    merge = fake_llm.requests[2]["messages"][1]["content"]
    assert WINDOW_1["summary"] in merge and WINDOW_2["summary"] in merge
    assert minutes.summary == MERGED

    ship, pilot = minutes.decisions
    assert ship.text == "Ship firmware 2.4 on March 6"  # the same decision from both windows, once
    assert [(e.turn, e.quote) for e in ship.evidence] == [(4, "we ship 2.4 on March 6"), (13, "ship 2.4 on March 6")]
    assert ship.evidence[0].start == 60.0 and ship.evidence[0].speaker == "Priya"
    assert pilot.evidence[0].turn == 10
    notes, visit = minutes.action_items
    assert (notes.owner, notes.due_text, notes.due, notes.evidence[0].turn) == ("Marco", "by Friday", "2026-03-06", 5)
    assert (visit.owner, visit.due, visit.evidence[0].turn) == ("Lena", "2026-03-20", 11)
    assert [q.evidence[0].turn for q in minutes.open_questions] == [6, 12]
    assert [(t.title, t.start, t.end) for t in minutes.topics] == [
        ("Firmware release", 0.0, 138.0), ("Warehouse pilot", 140.0, 238.0), ("Wrap-up", 240.0, 278.0)]
    assert minutes.title == "Rover weekly" and minutes.date == "2026-03-02" and minutes.timed
    assert minutes.attendees == ["Priya", "Marco", "Lena"]
    assert minutes.model == "openai:fake-7b" and drafter.model_id == "llm-minutes:openai:fake-7b"
    assert any("2 windows" in n for n in minutes.notes)
    assert check_evidence(meeting, minutes) == []


def test_an_item_whose_quote_is_not_in_the_transcript_is_dropped_and_noted(fake_llm):
    drafter, _ = _drafter(fake_llm)
    reply = {"summary": "Firmware 2.4 ships on March 6.",
             "topics": [{"title": "Release", "first_turn": 1, "last_turn": 14},
                        {"title": "release", "first_turn": 3, "last_turn": 14}],
             "decisions": [{"text": "Ship 2.4 on March 6", "turn": 3, "quote": "we ship\n firmware  2.4"},
                           {"text": "Cancel the pilot", "turn": 10, "quote": "we cancel the pilot"}],
             "action_items": [{"task": "Write the release notes", "owner": "null", "due_text": "soon", "turn": 5,
                               "quote": "Marco will write the notes"}],
             "open_questions": []}
    fake_llm.script.append(Reply(json.dumps(reply)))
    meeting = _meeting(timed=False, title=None)
    minutes = drafter.draft(meeting)

    assert len(fake_llm.requests) == 1  # one window: no merge call
    (ship,) = minutes.decisions
    assert ship.evidence[0].quote == "we ship firmware 2.4" and ship.evidence[0].turn == 3
    assert (ship.evidence[0].start, ship.evidence[0].end) == (3.0, 3.0)  # untimed: turn numbers
    assert minutes.action_items == []
    assert "2 items dropped: their quotes are not in the transcript" in minutes.notes
    assert minutes.summary == "Firmware 2.4 ships on March 6."
    assert [(t.title, t.start, t.end) for t in minutes.topics] == [("Release", 1.0, 14.0)]
    assert minutes.title == "Release" and not minutes.timed
    assert check_evidence(meeting, minutes) == []


def test_a_malformed_reply_gets_one_repair_request_and_the_repair_is_used(fake_llm):
    drafter, fallback = _drafter(fake_llm)
    broken = {**WINDOW_1, "decisions": [{"text": "Ship firmware 2.4 on March 6", "turn": 4}]}  # no quote
    fake_llm.script.extend([Reply(json.dumps(broken)), Reply(json.dumps(WINDOW_1))])
    meeting = _meeting()
    minutes = drafter.draft(meeting)

    assert len(fake_llm.requests) == 2 and not fallback.seen
    repair = fake_llm.requests[1]["messages"][1]["content"]
    assert "could not be used" in repair and "decisions.0.quote" in repair and '"action_items"' in repair
    assert "[4] Priya: Agreed" in repair
    assert [d.evidence[0].turn for d in minutes.decisions] == [4]
    assert minutes.action_items[0].due == "2026-03-06"
    assert any("used after 1 repair request" in n for n in minutes.notes)
    assert check_evidence(meeting, minutes) == []


def test_a_window_still_malformed_after_repair_is_drafted_by_the_fallback(fake_llm):
    drafter, fallback = _drafter(fake_llm, TWO_WINDOWS)
    fake_llm.script.extend([Reply(json.dumps(WINDOW_1)), Reply("Sorry, I cannot help with that."),
                            Reply('{"summary": "The docks were discussed", "decisions": [{"text": '), Reply(MERGED)])
    meeting = _meeting()
    minutes = drafter.draft(meeting)

    assert len(fake_llm.requests) == 4
    (window,) = fallback.seen  # the fallback wrote window 2 only, from its turns only
    assert [t.index for t in window.turns] == list(range(8, 15))
    assert "The docks were discussed" not in minutes.summary and minutes.summary == MERGED
    assert "Next item is the warehouse pilot with the new charging docks." in \
        fake_llm.requests[3]["messages"][1]["content"]
    assert [d.evidence[0].turn for d in minutes.decisions] == [4]  # window 1's, from the model
    assert [(q.text, q.evidence[0].turn) for q in minutes.open_questions] == [
        ("Who signs off on the safety checklist?", 6), ("Do we have budget for twelve more docks?", 12)]
    assert [t.title for t in minutes.topics] == ["Firmware release", "Discussion"]
    assert minutes.topics[1].start == 140.0
    note = next(n for n in minutes.notes if n.startswith("window 2 (turns 8–14)"))
    assert "unusable after 1 repair request" in note and "first-sentence" in note and "not valid JSON" in note
    assert check_evidence(meeting, minutes) == []


def test_an_llm_server_that_keeps_failing_is_a_backend_error(fake_llm):
    drafter, fallback = _drafter(fake_llm, max_retries=0)
    fake_llm.script.extend([Reply(status=500)] * 3)
    with pytest.raises(BackendError, match="kept failing"):
        drafter.draft(_meeting())
    assert len(fake_llm.requests) == 1 and not fallback.seen


def test_a_monologue_longer_than_a_window_is_split_and_every_request_fits(fake_llm):
    context, new = 900, 160
    drafter, fallback = _drafter(fake_llm, context, max_new_tokens=new)
    speech = " ".join(f"Point {i}: the rover fleet needs another calibration pass before the audit."
                      for i in range(1, 81))
    meeting = Meeting([Turn(1, "Priya", "Shall we start?"), Turn(2, "Marco", speech),
                       Turn(3, "Lena", "Can we afford that before the audit?")])
    minutes = drafter.draft(meeting)

    windows = [r for r in fake_llm.requests if r["messages"][0]["content"].startswith("You write meeting minutes")]
    assert len(windows) >= 6 and len(fallback.seen) == len(windows) // 2  # echo replies: repair, then fallback
    for r in fake_llm.requests:
        assert sum(len(m["content"]) / 3.5 + 1 for m in r["messages"]) + new <= context
    pieces = [line.split(": ", 1)[1] for r in windows[::2] for line in r["messages"][1]["content"].splitlines()
              if re.match(r"\[2\] Marco( \(cont\.\))?: ", line)]
    assert len(pieces) >= 5 and " ".join(pieces) == speech and all(p in speech for p in pieces)
    assert [q.evidence[0].turn for q in minutes.open_questions] == [1, 3]
    assert check_evidence(meeting, minutes) == []


def test_a_two_hour_meeting_completes_window_by_window(fake_llm):
    drafter, fallback = _drafter(fake_llm, 4096, max_new_tokens=512)
    speakers = ["Priya", "Marco", "Lena", "Omar"]
    turns = [Turn(i, speakers[i % 4], f"Item {i}: the sensor log for bay {i % 37} looks fine."
                  if i % 50 else f"Did anyone check bay {i % 37} after update {i}?", i * 3.6, i * 3.6 + 3.0)
             for i in range(1, 2001)]
    meeting = Meeting(turns, title="Operations review")
    calls = []
    minutes = drafter.draft(meeting, progress=lambda done, total: calls.append((done, total)))

    n = len(fallback.seen)  # the echo model never writes JSON: every window falls back after a repair
    assert n >= 10 and calls == [(i, n) for i in range(1, n + 1)]
    covered = [t.index for m in fallback.seen for t in m.turns]
    assert covered == list(range(1, 2001))
    assert len(minutes.open_questions) == 40 and minutes.open_questions[-1].evidence[0].turn == 2000
    assert minutes.attendees == ["Marco", "Lena", "Omar", "Priya"]
    assert minutes.summary.startswith("Item 1: the sensor log for bay 1 looks fine.")
    assert any("window summaries are joined" in note for note in minutes.notes)
    assert sum("drafted by first-sentence" in note for note in minutes.notes) == n
    assert check_evidence(meeting, minutes) == []
