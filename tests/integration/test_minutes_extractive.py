"""Extractive minutes with the bundled embedder: hand-made meetings, and real ones from ../shared when present."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.minutes.base import check_evidence
from core.minutes.extractive import ExtractiveMinutes
from core.models import Meeting, Minutes, Turn
from core.textutil import content_words, split_sentences

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ELITR = SHARED_DATA / "minutes" / "elitr_minutes_dev.jsonl"
QMSUM = SHARED_DATA / "qmsum" / "val.jsonl"

LINES = [
    ("Anna", "Okay, let's get started. Today we need to talk about the battery cells for the pilot and then "
             "the marketing launch."),
    ("Ben", "Um, so the supplier sent the test results for the new lithium iron phosphate cells last week."),
    ("Chloe", "How did the new cells do in the cold chamber tests?"),
    ("Ben", "They kept ninety percent of their capacity at minus ten degrees, which is much better than the old "
            "cells."),
    ("Anna", "And what about the charging time with the new cells?"),
    ("Ben", "Charging takes about forty minutes to eighty percent, a bit slower than the old cells, but within "
            "the pilot requirements."),
    ("Chloe", "The cost per cell is also twelve percent lower, according to the supplier quote."),
    ("Anna", "Then we will go with the new cells for the pilot."),
    ("Ben", "I will send the updated battery specification to the supplier by Friday."),
    ("Anna", "Chloe, can you check whether the charger firmware supports the new cell chemistry?"),
    ("Chloe", "Sure, I can do that."),
    ("Ben", "Do we know if the supplier can deliver five hundred cells before April?"),
    ("Anna", "Hmm."),
    ("Chloe", "Okay."),
    ("Anna", "Let's move on to the marketing launch."),
    ("Chloe", "The launch campaign needs a landing page, a short product video and a press release."),
    ("Ben", "Should we postpone the press release until the pilot results are in?"),
    ("Anna", "Agreed, that makes sense."),
    ("Chloe", "The video agency asked for the final script and the product photos for the launch video."),
    ("Anna", "Chloe will draft the video script by next Wednesday."),
    ("Chloe", "Fine. The landing page designer also needs the brand colours and the logo files."),
    ("Anna", "We still need to figure out the budget for paid social media ads."),
    ("Ben", "What is the budget for the trade fair booth in June?"),
    ("Anna", "The trade fair budget is fifteen thousand euros, the same as last year."),
    ("Ben", "Anna, please sign the agency contract by the end of the month."),
    ("Anna", "Okay, thanks everyone."),
]


def hand_meeting(*, timed: bool = False, date: str | None = "2026-03-02", title: str | None = None) -> Meeting:
    turns = [Turn(i, who, text, start=10.0 * i if timed else None, end=10.0 * i + 8 if timed else None)
             for i, (who, text) in enumerate(LINES, 1)]
    return Meeting(turns=turns, title=title, date=date)


@pytest.fixture(scope="module")
def drafter(embedder) -> ExtractiveMinutes:
    return ExtractiveMinutes(embedder)


def assert_sound(meeting: Meeting, minutes: Minutes) -> None:
    """Evidence verbatim, a summary made of the transcript's words, topics covering the meeting in order."""
    assert check_evidence(meeting, minutes) == []
    said = content_words(" ".join(t.text for t in meeting.turns))
    for sentence in split_sentences(minutes.summary):
        assert content_words(sentence) <= said, sentence
    first, last = meeting.turns[0], meeting.turns[-1]
    if meeting.timed:
        assert minutes.topics[0].start == first.start and minutes.topics[-1].end == last.end
    else:
        assert (minutes.topics[0].start, minutes.topics[-1].end) == (first.index, last.index)
        for a, b in zip(minutes.topics, minutes.topics[1:]):
            assert b.start == a.end + 1
    assert all(a.start <= a.end < b.start <= b.end for a, b in zip(minutes.topics, minutes.topics[1:]))


def test_minutes_of_a_planning_meeting(drafter):
    meeting = hand_meeting()
    calls: list[tuple[float, float]] = []
    minutes = drafter.draft(meeting, progress=lambda done, total: calls.append((done, total)))
    assert_sound(meeting, minutes)
    assert minutes.attendees == ["Anna", "Ben", "Chloe"]
    assert minutes.title.startswith("Meeting: ") and "cells" in minutes.title
    assert minutes.date == "2026-03-02" and not minutes.timed
    assert minutes.model.startswith("extractive-minutes:")
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)

    assert minutes.summary and "?" not in minutes.summary
    assert 1 <= len(split_sentences(minutes.summary)) <= 6
    assert "Hmm" not in minutes.summary and not minutes.summary.startswith("Okay")

    decisions = [d.text for d in minutes.decisions]
    assert decisions == ["We will go with the new cells for the pilot.",
                         "Postpone the press release until the pilot results are in"]
    assert minutes.decisions[0].evidence[0].speaker == "Anna"

    actions = {(a.owner, a.task): (a.due_text, a.due) for a in minutes.action_items}
    assert actions == {
        ("Ben", "Send the updated battery specification to the supplier"): ("by Friday", "2026-03-06"),
        ("Chloe", "Check whether the charger firmware supports the new cell chemistry"): (None, None),
        ("Chloe", "Draft the video script"): ("by next Wednesday", "2026-03-11"),
        ("Anna", "Sign the agency contract"): ("by the end of the month", "2026-03-31"),
    }
    accepted = next(a for a in minutes.action_items if a.task.startswith("Check"))
    assert [e.turn for e in accepted.evidence] == [10, 11]

    questions = [q.text for q in minutes.open_questions]
    assert questions == ["Do we know if the supplier can deliver five hundred cells before April?",
                         "We still need to figure out the budget for paid social media ads."]

    assert len(minutes.topics) >= 2
    assert any(w in minutes.topics[0].title for w in ("cells", "battery"))
    assert any(w in minutes.topics[-1].title for w in ("budget", "launch", "press", "video", "landing", "agency"))
    assert "extractive" in minutes.notes[0].lower() and "no LLM" in minutes.notes[0]


def test_timed_meeting_has_minutes_in_seconds(drafter):
    meeting = hand_meeting(timed=True, title="Pilot sync")
    minutes = drafter.draft(meeting)
    assert_sound(meeting, minutes)
    assert minutes.timed and minutes.title == "Pilot sync"
    assert (minutes.topics[0].start, minutes.topics[-1].end) == (10.0, 268.0)
    ev = minutes.action_items[0].evidence[0]
    assert (ev.turn, ev.start, ev.end) == (9, 90.0, 98.0)


def test_without_a_meeting_date_relative_deadlines_stay_words(drafter):
    minutes = drafter.draft(hand_meeting(date=None))
    ben = next(a for a in minutes.action_items if a.owner == "Ben")
    assert (ben.due_text, ben.due) == ("by Friday", None)
    assert minutes.date is None


def test_repeated_items_are_listed_once(drafter):
    lines = LINES[:9] + [("Anna", "So to repeat: we will go with the new cells for the pilot.")] + LINES[9:]
    meeting = Meeting(turns=[Turn(i, who, text) for i, (who, text) in enumerate(lines, 1)])
    minutes = drafter.draft(meeting)
    assert [d.text for d in minutes.decisions].count("We will go with the new cells for the pilot.") == 1
    assert check_evidence(meeting, minutes) == []


def test_small_and_empty_meetings(drafter):
    empty = drafter.draft(Meeting(turns=[], title="Stand-up"))
    assert (empty.title, empty.summary, empty.topics, empty.action_items) == ("Stand-up", "", [], [])
    tiny = Meeting(turns=[Turn(1, None, "Okay."), Turn(2, None, "I will email the minutes to everyone tomorrow.")])
    minutes = drafter.draft(tiny)
    assert minutes.attendees == [] and len(minutes.topics) == 1
    [item] = minutes.action_items
    assert (item.owner, item.task, item.due_text) == (None, "Email the minutes to everyone", "tomorrow")
    assert_sound(tiny, minutes)


# A longer meeting: three topics of substantive statements, small talk and backchannels between them,
# and one statement said three times.
TOPICS = {
    "battery": ["The new lithium cells kept ninety percent of their capacity in the cold chamber tests.",
                "Charging the pack to eighty percent takes about forty minutes with the current charger.",
                "The supplier quoted twelve percent less per cell if we order five thousand cells.",
                "The battery housing needs two more screws so that the pack survives the drop test.",
                "Thermal sensors on every second cell would warn the firmware before the pack overheats.",
                "The pilot vehicles will run on the new cells from March until the end of June."],
    "launch": ["The launch campaign needs a landing page, a product video and a press release.",
               "The video agency wants the final script and the product photos by the end of the month.",
               "Paid social media ads would cost about eight thousand euros over the first quarter.",
               "The press release should quote the pilot customer and the results of the cold tests.",
               "The landing page designer needs the brand colours, the logo files and the price list.",
               "The trade fair booth in June will show the pilot vehicle and the charging station."],
    "hiring": ["Two firmware engineers start in April and will work on the charger protocol first.",
               "The recruiting agency charges one fifth of the first annual salary for each hire.",
               "New engineers spend their first week with the test team in the cold chamber lab.",
               "The team lead will interview the three remaining candidates for the data analyst role.",
               "Remote work stays at two days a week for the engineering team after the move.",
               "The new office has room for twelve more desks on the second floor next to the lab."],
}


def long_meeting() -> Meeting:
    lines: list[tuple[str, str]] = []
    repeated = "We ship the firmware update for the charging station on the fifteenth of May."
    for n, sentences in enumerate(TOPICS.values()):
        for i, sentence in enumerate(sentences):
            lines += [("Anna" if i % 2 else "Ben", sentence), ("Chloe", "Yeah."), ("Ben", "Um, okay, mm-hmm.")]
            if i == 2 and n < 3:
                lines.append(("Anna", repeated))
    return Meeting(turns=[Turn(i, who, text) for i, (who, text) in enumerate(lines, 1)])


def test_summary_of_a_longer_meeting_is_substantive_and_says_nothing_twice(embedder):
    meeting = long_meeting()
    words = sum(len(t.text.split()) for t in meeting.turns)
    minutes = ExtractiveMinutes(embedder, summary_words=30).draft(meeting)
    assert_sound(meeting, minutes)
    summary = split_sentences(minutes.summary)
    statements = {s for group in TOPICS.values() for s in group} | {
        "We ship the firmware update for the charging station on the fifteenth of May."}
    assert summary and all(s in statements for s in summary), summary  # no "Yeah.", no "Um, okay"
    assert len(summary) == len(set(summary))
    assert 20 <= len(minutes.summary.split()) <= 30
    # The default length is about a human summary's, but never over a tenth of a short meeting.
    longer = ExtractiveMinutes(embedder).draft(meeting)
    assert 30 <= len(longer.summary.split()) <= max(45, words // 10)
    assert len(set(split_sentences(longer.summary))) == len(split_sentences(longer.summary))
    assert all(s in statements for s in split_sentences(longer.summary))


def test_the_scorer_refuses_weights_trained_on_other_features(embedder):
    from core.minutes.summary_weights import MADE, WEIGHTS

    assert MADE["by"].startswith("bench/train_minutes_scorer.py") and MADE["data"].startswith("qmsum/train.jsonl")
    stale = dict(WEIGHTS, features=list(WEIGHTS["features"])[:-1])
    with pytest.raises(ValueError, match="rerun the trainer"):
        ExtractiveMinutes(embedder, weights=stale)


# ---------------------------------------------------------------- real meetings (../shared/data)

def elitr_meeting(row: dict) -> Meeting:
    """ELITR: "(PERSON6) text" lines; a line without the prefix continues the previous speaker's turn."""
    turns: list[list] = []
    for line in row["transcript_text"].splitlines():
        line = line.strip()
        if line.startswith("(") and ")" in line:
            speaker, text = line[1:].split(")", 1)
            turns.append([speaker.strip(), text.strip()])
        elif line and turns:
            turns[-1][1] += " " + line
        elif line:
            turns.append([None, line])
    return Meeting(turns=[Turn(i, s, t) for i, (s, t) in enumerate(turns, 1) if t], source=row["meeting_id"])


def qmsum_meeting(row: dict) -> Meeting:
    turns = [t for t in row["meeting_transcripts"] if t["content"].strip()]
    return Meeting(turns=[Turn(i, t["speaker"], t["content"]) for i, t in enumerate(turns, 1)],
                   source=row["meeting_id"])


def longest(path: Path, parse) -> Meeting:
    if not path.exists():
        pytest.skip(f"{path} is not here")
    meetings = [parse(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return max(meetings, key=lambda m: sum(len(t.text.split()) for t in m.turns))


@pytest.mark.slow
@pytest.mark.parametrize(("path", "parse"), [(ELITR, elitr_meeting), (QMSUM, qmsum_meeting)], ids=["elitr", "qmsum"])
def test_minutes_of_the_longest_real_meeting(drafter, path, parse):
    meeting = longest(path, parse)
    words = sum(len(t.text.split()) for t in meeting.turns)
    began = time.perf_counter()
    minutes = drafter.draft(meeting)
    took = time.perf_counter() - began
    print(f"\n{meeting.source}: {len(meeting.turns)} turns, {words} words, drafted in {took:.1f} s")
    assert_sound(meeting, minutes)
    assert minutes.summary and len(minutes.summary.split()) < 0.15 * words
    assert 2 <= len(minutes.topics) <= 8
    assert len(minutes.open_questions) <= 8
    assert minutes.attendees and minutes.title.startswith("Meeting: ")


# The sample stand-up as Whisper transcribed it on two x86 CPUs: the pause after a spoken cue became a comma
# on one, a period (or a segment of its own) on another. The minutes are the same either way.
STANDUP_VTT = """WEBVTT

00:29.440 --> 00:36.900
<v Speaker 1>Decision{pause} we keep the pilot running until the end of June, and we add two more robots in May.

00:37.260 --> 00:42.380
<v Speaker 1>Action item for Jonas{pause} order the two extra robots by Friday.

00:42.380 --> 00:47.900
<v Speaker 2>Agreed. I will also send the weekly pilot report to the customer every Monday.
"""


@pytest.mark.parametrize("pause", [",", ".", ":", " -"])
def test_minutes_of_a_recognised_stand_up_do_not_depend_on_its_punctuation(engine, tmp_path, pause):
    vtt = tmp_path / "standup.vtt"
    text = STANDUP_VTT.replace("{pause} we", f"{pause} {'We' if pause == '.' else 'we'}")
    vtt.write_text(text.replace("{pause} order", f"{pause} {'Order' if pause == '.' else 'order'}"))
    minutes = engine.minutes(vtt)
    assert [d.text for d in minutes.decisions] == [
        "We keep the pilot running until the end of June, and we add two more robots in May."]
    assert [(a.task, a.owner) for a in minutes.action_items] == [
        ("Order the two extra robots", "Jonas"), ("Send the weekly pilot report to the customer every Monday",
                                                  "Speaker 2")]
    assert [e.start for e in minutes.decisions[0].evidence] == [29.44]
    assert check_evidence(engine.meeting(vtt), minutes) == []


def test_a_cue_recognised_as_a_cue_of_its_own_introduces_the_next_one(engine, tmp_path):
    vtt = tmp_path / "standup.vtt"
    vtt.write_text("WEBVTT\n\n00:29.440 --> 00:30.500\n<v Speaker 1>Decision.\n\n"
                   "00:30.500 --> 00:36.900\n<v Speaker 1>We keep the pilot running until the end of June.\n")
    [decision] = engine.minutes(vtt).decisions
    assert decision.text == "We keep the pilot running until the end of June."
    assert [(e.quote, e.start) for e in decision.evidence] == [
        ("Decision.", 29.44), ("We keep the pilot running until the end of June.", 30.5)]
