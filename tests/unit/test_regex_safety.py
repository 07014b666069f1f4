"""Text from users cannot stall the service: every pattern that reads it runs in linear time.

Each attack goes through the public function a user's file or words reach (a loader via
``load_file``, the minutes rules on a meeting, answer validation, an LLM minutes reply)
with the input that made the old code backtrack: 10 s to minutes each, a crash for some
(bench/attacks_regex.py has the figures). The bound is generous, against catastrophic
behaviour only; a second test of each family shows that ordinary input reads as before.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.answer.validation import validate
from core.errors import CorruptDocument, EmptyDocument
from core.ingest.loaders import load_file
from core.minutes.dates import find_due
from core.minutes.extractive import ExtractiveMinutes
from core.minutes.inputs import meeting_from_text
from core.minutes.prompts import BadReply, clean_summary, parse_reply
from core.minutes.rules import find_actions, find_decisions, find_open_questions
from core.models import Chunk, Hit, Meeting, Turn
from core.textutil import clean

BOUND_S = 2.0


@contextmanager
def quick(bound: float = BOUND_S):
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    assert elapsed < bound, f"took {elapsed:.1f} s (bound {bound} s)"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def loads_quickly(path: Path, bound: float = BOUND_S):
    """The document, or None when it is refused with a clear reason (empty, corrupt): either way, quickly."""
    with quick(bound):
        try:
            return load_file(path)
        except (EmptyDocument, CorruptDocument):
            return None


# --- subtitles --------------------------------------------------------------------------------


@pytest.mark.parametrize("cue", ["<v " * 20_000, "hi " + "<" * 100_000, "hi " + "{\\" * 50_000,
                                 "<v.a" + " " * 50_000 + "x"])
def test_unclosed_tags_in_a_cue_load_quickly(tmp_path, cue):
    loads_quickly(write(tmp_path, "attack.vtt", f"WEBVTT\n\n00:00.000 --> 00:01.000\n{cue}\n"))
    loads_quickly(write(tmp_path, "attack.srt", f"1\n00:00:00,000 --> 00:00:01,000\n{cue}\n"))


def test_voice_tags_and_overrides_read_as_before(tmp_path):
    vtt = loads_quickly(write(tmp_path, "a.vtt", "WEBVTT\n\n00:01.000 --> 00:02.000\n"
                                                 "<v.loud Ada Lovelace>Hello <b>there</b></v>\n"))
    srt = loads_quickly(write(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\n{\\an8}Bob: <i>Hi</i> all\n"))
    assert [(s.speaker, s.text) for s in vtt.segments] == [("Ada Lovelace", "Hello there")]
    assert [(s.speaker, s.text) for s in srt.segments] == [("Bob", "Hi all")]


# --- HTML, Markdown, text, CSV ------------------------------------------------------------------


@pytest.mark.parametrize("markup", ["<a b=" * 20_000, "<a " * 20_000, "<!--" * 20_000, "<![CDATA[" * 10_000,
                                    "<a b='" * 20_000, "</a" * 20_000])
def test_unclosed_html_markup_loads_quickly(tmp_path, markup):
    doc = loads_quickly(write(tmp_path, "attack.html", "<p>Badges are worn at all times.</p>" + markup))
    assert doc is None or "Badges are worn at all times." in doc.segments[0].text


def test_html_reads_as_before(tmp_path):
    page = ("<html><head><title>Policy</title></head><body><h1>Badges</h1>"
            "<p>Badges are <b>always</b> worn.<br>Visitors sign in.</p><table><tr><td>Room</td><td>Owner</td></tr>"
            "</table><script>steal()</script></body></html>")
    doc = loads_quickly(write(tmp_path, "policy.html", page))
    assert doc.title == "Policy"
    assert [(s.section, s.text) for s in doc.segments] == [
        ("Badges", "Badges"), ("Badges", "Badges are always worn. Visitors sign in."), ("Badges", "Room | Owner")]


def test_a_long_markdown_heading_line_loads_quickly(tmp_path):
    doc = loads_quickly(write(tmp_path, "attack.md", "# a" + " \t" * 20_000 + "b\n\nBody text.\n"))
    assert doc.segments[0].section == doc.segments[0].text and doc.segments[0].text.startswith("a")


@pytest.mark.parametrize(("line", "heading"), [
    ("# Runbook", "Runbook"), ("## Escalation ##", "Escalation"), ("### Done #not closing", "Done #not closing"),
    ("   #  Spaced   #  ", "Spaced"), ("# ###", "###"), ("#hashtag", None), ("####### seven", None)])
def test_markdown_headings_read_as_before(tmp_path, line, heading):
    doc = loads_quickly(write(tmp_path, "a.md", f"{line}\n\nBody text.\n"))
    first = heading if heading else line
    assert [(s.text, s.section) for s in doc.segments] == [(first, heading), ("Body text.", heading)]


def test_many_wrapped_lines_load_quickly(tmp_path):
    doc = loads_quickly(write(tmp_path, "attack.txt", "a\n" * 100_000))
    assert [len(s.text.split()) for s in doc.segments] == [100_000]


def test_a_5_mb_text_of_wrapped_lines_loads_in_seconds(tmp_path):
    # 2.4 million physical lines near the 5,000,000-character limit: one pass each, not one per line joined so far.
    doc = loads_quickly(write(tmp_path, "attack.txt", "a\n" * 2_400_000), bound=10.0)
    assert [len(s.text) for s in doc.segments] == [4_799_999]


def test_wrapped_text_reads_as_before(tmp_path):
    doc = loads_quickly(write(tmp_path, "a.txt", "The pilot runs\nuntil the end of June.\nNext point:\n(a) robots\n"))
    assert [s.text for s in doc.segments] == ["The pilot runs until the end of June.", "Next point:", "(a) robots"]


@pytest.mark.parametrize("body", ['"\n' * 32_768, ',"a' * 21_845, "'\n" * 32_768])
def test_a_csv_full_of_quotes_loads_quickly(tmp_path, body):
    loads_quickly(write(tmp_path, "attack.csv", "Name,Note\n" + body))


def test_csv_dialect_is_sniffed_as_before(tmp_path):
    doc = loads_quickly(write(tmp_path, "a.csv", 'Name;City\nAda;"Oslo; Norway"\nBob;Rome\n'))
    assert [s.text for s in doc.segments] == ["Name: Ada; City: Oslo; Norway", "Name: Bob; City: Rome"]


# --- e-mail -------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    "Content-Type: text/plain; " + "a*0*=x; " * 8_000,  # RFC 2231 parameters: 15 s before
    'Content-Type: text/plain; ' + 'a="' * 8_000,
    "To: " + "<@a,@a,@a:" * 8_000,
    "Cc: " + '"a' * 8_000,
    "From: " + "=?utf-8?q?a?= " * 8_000,
])
def test_huge_crafted_headers_load_quickly(tmp_path, header):
    doc = loads_quickly(write(tmp_path, "attack.eml", f"Subject: Launch\nMIME-Version: 1.0\n{header}\n\n"
                                                      "The launch moves to Friday.\n"))
    assert doc is None or doc.title == "Launch"


def test_deeply_nested_header_comments_are_skipped_not_a_crash(tmp_path):
    # The header parser recurses into each "(": 5,000 of them raised RecursionError out of the loader.
    doc = loads_quickly(write(tmp_path, "attack.eml", "From: " + "(" * 5_000 + "\nSubject: Launch\n\n"
                                                      "The launch moves to Friday.\n"))
    assert doc.title == "Launch" and "From:" not in doc.segments[0].text
    assert doc.segments[-1].text == "The launch moves to Friday."


def test_email_headers_read_as_before_and_a_long_recipient_list_is_cut(tmp_path):
    many = ", ".join(f"person{i}@example.com" for i in range(300))
    doc = loads_quickly(write(tmp_path, "a.eml", f"From: Ada Lovelace <ada@example.com>\nTo: {many}\n"
                                                 "Subject: Launch moved\nContent-Type: text/plain; charset=utf-8\n\n"
                                                 "Hi all,\n\nThe launch moves to Friday.\n"))
    header = doc.segments[0].text.splitlines()
    assert header[0] == "Subject: Launch moved" and header[1] == "From: Ada Lovelace <ada@example.com>"
    assert header[2].startswith("To: person0@example.com, person1@example.com") and len(header[2]) < 2_100
    assert [s.text for s in doc.segments[1:]] == ["Hi all,", "The launch moves to Friday."]


# --- minutes: rules, due dates, transcripts, LLM replies ------------------------------------------


def meeting(reply: str) -> Meeting:
    return Meeting(turns=[Turn(1, "Ada", "Ben, can you send the report by Friday?"), Turn(2, "Ben", reply)],
                   date="2026-03-02")


@pytest.mark.parametrize("reply", [
    "a'" * 25_000,  # repeated-word rule retried at every apostrophe
    "x" + "-" * 50_000 + "x.",  # a broken-off dash at the end, retried at every dash
    "<" * 100_000,  # an unclosed tag
])
def test_a_long_crafted_turn_is_read_quickly(reply):
    with quick():
        find_actions(meeting(reply))
        find_decisions(meeting(reply))
        find_open_questions(meeting(reply))


def test_extractive_minutes_of_a_turn_of_unclosed_brackets_are_quick(embedder):
    turns = [Turn(1, "Ada", "[" * 100_000), Turn(2, "Ben", "Decision: we keep the pilot running until June.")]
    with quick():
        minutes = ExtractiveMinutes(embedder).draft(Meeting(turns=turns))
    assert [d.text for d in minutes.decisions] == ["We keep the pilot running until June."]


def test_a_reply_of_thousands_of_okays_is_an_acceptance_not_a_crash():
    # Each "Okay." was one level of recursion: 2,000 of them raised RecursionError.
    with quick():
        [item] = find_actions(meeting("Okay. " * 5_000))
    assert (item.owner, item.task, item.due_text) == ("Ben", "Send the report", "by Friday")


def test_rules_read_ordinary_turns_as_before():
    assert clean("Um, so, uh, we we decided <laugh/> to use the {disfmarker} new cells -.") == \
        "We decided to use the new cells."
    [item] = find_actions(meeting("Okay, okay, sure."))
    assert (item.owner, item.task, item.due) == ("Ben", "Send the report", "2026-03-06")
    assert find_actions(meeting("Okay, thanks everyone.")) == []


@pytest.mark.parametrize("text", ["by " * 20_000, "before the end of " * 5_000, "in " * 20_000 + "two",
                                  "March " * 20_000, "next " * 20_000 + "Friday"])
def test_due_dates_in_long_text_are_found_quickly(text):
    with quick():
        find_due(text, "2026-03-02")
    assert find_due("I will send it by the end of June.", "2026-03-02") == ("by the end of June", "2026-06-30")


def test_a_transcript_with_huge_lines_is_read_quickly():
    text = "(" + "x" * 1_000_000 + "\n" + "a" * 1_000_000 + ":\n" + "Dana: " + "word " * 200_000 + "\n"
    with quick():
        m = meeting_from_text(text)
    assert [t.speaker for t in m.turns] == [None, None, "Dana"]


@pytest.mark.parametrize("reply", ["```" + " " * 100_000 + "x", "```json" + "\n" * 100_000 + "{"])
def test_an_unclosed_fence_in_an_llm_reply_is_refused_quickly(reply):
    with quick(), pytest.raises(BadReply):
        parse_reply(reply)
    with quick():
        clean_summary(reply)
    assert parse_reply('```json\n{"summary": "Fine."}\n```').summary == "Fine."


# --- answers: citation validation -------------------------------------------------------------------


def _hit(text: str) -> Hit:
    return Hit(Chunk("c1", "d1", "v1", 0, "handbook.md", "default", text), 1.0, 1, 0.9)


@pytest.mark.parametrize("draft", ["The hotel limit" + " " * 100_000 + "is 180 EUR.", "[1" * 50_000,
                                   "]" + " " * 100_000 + "x", ". " * 50_000])
def test_a_crafted_model_draft_is_validated_quickly(draft):
    hit = _hit("Hotels are reimbursed up to 180 EUR per night.")
    with quick():
        validate(draft, [hit])
    with quick():  # a source text as long and as crafted
        validate("Hotels are reimbursed up to 180 EUR per night [1].", [hit], [draft])


def test_citations_validate_as_before():
    hit = _hit("Hotels are reimbursed up to 180 EUR per night.")
    checked = validate("Hotels are reimbursed up to 180 EUR per night [1, 3]. Parking is free [2].", [hit])
    assert checked.text == "Hotels are reimbursed up to 180 EUR per night [1]."
    assert checked.cited == [hit] and not checked.abstained

