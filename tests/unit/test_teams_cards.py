"""The Adaptive Cards IMP posts in Teams: what a reader sees, what Teams accepts, what hostile text cannot do.

Pure functions of bot.teams.cards over constructed answers and minutes. Each card is checked against the
shape Adaptive Cards 1.5 allows (element types, their properties and enumerations, as in
adaptivecards.io/schemas/1.5.0/adaptive-card.json, plus Teams' ``msteams`` extension) and against Teams'
message size limit; hostile document and user text must come out bounded and inert: no Markdown link,
no reference definition, no ``<at>`` mention or HTML tag that IMP did not write itself.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import pytest

from bot.teams.cards import (
    CARD_BUDGET,
    CONTENT_TYPE,
    FEEDBACK_HINT,
    SHARE_ACTION,
    STEPS,
    Limits,
    Mention,
    answer_card,
    attachment,
    card_size,
    fit,
    minutes_card,
    neutral,
    progress_card,
    text_block,
)
from core.models import ActionItem, Answer, Chunk, Citation, Decision, Evidence, Minutes, OpenQuestion

TEAMS_MESSAGE_LIMIT = 28 * 1024

# Adaptive Cards 1.5: the properties each element IMP uses may carry (the schema sets additionalProperties false).
COMMON = {"type", "fallback", "height", "separator", "spacing", "id", "isVisible", "requires"}
ALLOWED = {
    "TextBlock": COMMON | {"text", "color", "fontType", "horizontalAlignment", "isSubtle", "maxLines", "size",
                           "weight", "wrap", "style"},
    "Container": COMMON | {"items", "selectAction", "style", "verticalContentAlignment", "bleed", "backgroundImage",
                           "minHeight", "rtl"},
    "ColumnSet": COMMON | {"columns", "selectAction", "style", "bleed", "minHeight", "horizontalAlignment"},
    "Column": {"type", "items", "backgroundImage", "bleed", "fallback", "minHeight", "rtl", "separator", "spacing",
               "selectAction", "style", "verticalContentAlignment", "width", "id", "isVisible", "requires"},
    "FactSet": COMMON | {"facts"},
}
ENUMS = {
    "spacing": {"default", "none", "small", "medium", "large", "extralarge", "padding"},
    "weight": {"default", "lighter", "bolder"},
    "size": {"default", "small", "medium", "large", "extralarge"},
    "color": {"default", "dark", "light", "accent", "good", "warning", "attention"},
}
STYLES = {"TextBlock": {"default", "heading"},
          "Container": {"default", "emphasis", "good", "attention", "warning", "accent"}}
STYLES["Column"] = STYLES["ColumnSet"] = STYLES["Container"]
CARD_KEYS = {"type", "$schema", "version", "body", "actions", "fallbackText", "msteams"}


def elements(items: list[dict]) -> list[dict]:
    out = []
    for e in items:
        out.append(e)
        out += elements(e.get("items", []) + e.get("columns", []))
    return out


def texts(card: dict) -> list[str]:
    return [e["text"] for e in elements(card["body"]) if e["type"] == "TextBlock"] + [
        f"{f['title']} {f['value']}" for e in elements(card["body"]) if e["type"] == "FactSet" for f in e["facts"]]


def assert_valid(card: dict) -> None:
    """An Adaptive Card 1.5 Teams accepts: shape, types, enumerations, mentions backed by entities, size."""
    assert set(card) <= CARD_KEYS and {"type", "version", "body"} <= set(card)
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert isinstance(card["fallbackText"], str) and card["fallbackText"]
    assert isinstance(card["body"], list) and card["body"]
    for e in elements(card["body"]):
        assert e["type"] in ALLOWED, e["type"]
        assert set(e) <= ALLOWED[e["type"]], (e["type"], set(e) - ALLOWED[e["type"]])
        for key, allowed in ENUMS.items():
            if key in e:
                assert e[key].lower() in allowed, (key, e[key])
        if "style" in e:
            assert e["style"].lower() in STYLES[e["type"]]
        if e["type"] == "TextBlock":
            assert isinstance(e["text"], str) and e["text"] and e["wrap"] is True
        if e["type"] == "Container":
            assert isinstance(e["items"], list) and e["items"]
        if e["type"] == "ColumnSet":
            assert all(c["type"] == "Column" for c in e["columns"])
        if e["type"] == "Column":
            assert isinstance(e["width"], (int, float)) or e["width"] in ("auto", "stretch")
        if e["type"] == "FactSet":
            assert all(set(f) == {"title", "value"} and all(isinstance(v, str) for v in f.values())
                       for f in e["facts"])
    for a in card.get("actions", []):
        assert a["type"] == "Action.Submit" and a["title"] and isinstance(a["data"], dict)
    entities = card["msteams"].get("entities", [])
    for ent in entities:
        assert ent["type"] == "mention" and re.fullmatch(r"<at>[^<>]+</at>", ent["text"])
        assert ent["mentioned"]["id"] and ent["mentioned"]["name"]
    written = [m for t in texts(card) for m in re.findall(r"<at>[^<>]*</at>", t)]
    assert set(written) == {ent["text"] for ent in entities}  # every mention IMP writes, and only those
    assert card_size(card) <= CARD_BUDGET
    assert len(json.dumps(attachment(card)).encode()) < TEAMS_MESSAGE_LIMIT


def assert_inert(card: dict) -> None:
    """No text in the card can form a link, a reference, a tag or a mention IMP did not write."""
    own = {ent["text"] for ent in card["msteams"].get("entities", [])}
    for t in texts(card) + [card["fallbackText"]]:
        for m in own:
            t = t.replace(m, "")
        assert "<" not in t and ">" not in t
        assert "](" not in t and "]:" not in t
        assert not re.search(r"&(lt|gt|#0*6[02]|#x0*3[ce]);", t, re.I)
        assert "\u202e" not in t and "\x00" not in t


# ----- builders -----------------------------------------------------------------------------


def doc_chunk(n: int, *, page: int = 4, source: str = "/docs/handbook.pdf",
              text: str = "Hotel costs are reimbursed up to 180 EUR per night in Europe. Receipts are needed.") -> Chunk:
    return Chunk(chunk_id=f"c{n}", doc_id=f"d{n}", version="v1", ordinal=n, source=source, scope="19:chan@thread.tacv2",
                 text=text, page_start=page, page_end=page)


def rec_chunk(n: int, start: float, *, speakers=("Alice",), source: str = "upload:standup.m4a",
              text: str = "We agreed the hotel limit stays at 180 EUR. Bob will update the wiki.") -> Chunk:
    return Chunk(chunk_id=f"c{n}", doc_id=f"d{n}", version="v1", ordinal=n, source=source, scope="19:chan@thread.tacv2",
                 text=text, start=start, end=start + 9, speakers=tuple(speakers))


def answer(text: str, citations: list[Citation] | None = None, *, abstained: bool = False,
           question: str = "What is the hotel limit?") -> Answer:
    return Answer(answer_id="a" * 32, question=question, text=text, abstained=abstained, citations=citations or [],
                  scopes=["19:chan@thread.tacv2"], model="extractive", timings_ms={},
                  created_at=datetime(2026, 1, 5, 9, 0))


def ev(start: float, speaker: str | None = "Alice", quote: str = "we decided") -> tuple[Evidence, ...]:
    return (Evidence(quote=quote, turn=3, start=start, end=start + 4, speaker=speaker),)


def minutes(*, decisions=(), actions=(), questions=(), timed: bool = True, title: str = "Weekly planning",
            summary: str = "The team agreed on the release date.") -> Minutes:
    return Minutes(title=title, date="2026-01-05", attendees=["Alice", "Bob"], summary=summary, topics=[],
                   decisions=list(decisions), action_items=list(actions), open_questions=list(questions),
                   timed=timed)


# ----- answers ------------------------------------------------------------------------------


def test_answer_shows_text_with_markers_and_numbered_sources_by_page_and_time():
    cites = [Citation(1, doc_chunk(1, page=4)), Citation(2, rec_chunk(2, 754.0)),
             Citation(3, rec_chunk(3, 3725.0, speakers=("Bob", "Carol"), source="upload:all-hands.mp4"))]
    card = answer_card(answer("The limit is 180 EUR per night [1][2]. Bob updates the wiki [3].", cites))
    assert_valid(card)
    shown = texts(card)
    assert shown[0] == "The limit is 180 EUR per night [1][2]. Bob updates the wiki [3]."
    assert "Sources" in shown
    assert "**[1]** handbook.pdf, p. 4" in shown
    assert "**[2]** standup.m4a [12:34–12:43] Alice" in shown  # mm:ss
    assert "**[3]** all-hands.mp4 [1:02:05–1:02:14] Bob, Carol" in shown  # h:mm:ss past an hour
    # each source quotes the sentence the answer relies on
    assert "“Hotel costs are reimbursed up to 180 EUR per night in Europe.”" in shown
    assert shown[-1] == FEEDBACK_HINT and "👍" in FEEDBACK_HINT and "👎" in FEEDBACK_HINT
    assert "actions" not in card and "entities" not in card["msteams"]
    assert attachment(card) == {"contentType": CONTENT_TYPE, "content": card}
    assert CONTENT_TYPE == "application/vnd.microsoft.card.adaptive"


def test_a_page_range_and_markdown_headings_read_as_a_person_would_write_them():
    chunk = Chunk(chunk_id="c1", doc_id="d1", version="v1", ordinal=1, source="upload:policy.pdf", scope="s",
                  text="Travel must be booked through the desk.", page_start=7, page_end=9)
    card = answer_card(answer("## Booking\n\nBook through the desk [1].", [Citation(1, chunk)]))
    assert_valid(card)
    assert texts(card)[:2] == ["**Booking**", "Book through the desk [1]."]
    assert "**[1]** policy.pdf, pp. 7–9" in texts(card)


def test_an_abstention_is_shown_plainly_without_sources():
    reason = "I could not find an answer to that in the documents available here."
    card = answer_card(answer(reason, abstained=True))
    assert_valid(card)
    assert texts(card) == [reason, FEEDBACK_HINT]
    assert card["fallbackText"] == reason


def test_an_empty_answer_still_says_something():
    card = answer_card(answer("", abstained=True))
    assert_valid(card)
    assert texts(card)[0] == "(no answer)"


def test_share_button_and_shared_by_mention():
    card = answer_card(answer("Up to 180 EUR [1].", [Citation(1, doc_chunk(1))]), share=True,
                       shared_by=Mention("29:1a2b3c", "Dana Scully"))
    assert_valid(card)
    assert card["actions"] == [{"type": "Action.Submit", "title": "Share in this conversation",
                                "data": {"action": SHARE_ACTION, "answer_id": "a" * 32}}]
    footer = texts(card)[-1]
    assert footer.startswith("Shared by <at>Dana Scully</at> · asked: “What is the hotel limit?”")
    assert card["msteams"]["entities"] == [{"type": "mention", "text": "<at>Dana Scully</at>",
                                            "mentioned": {"id": "29:1a2b3c", "name": "Dana Scully"}}]


@pytest.mark.parametrize("bad_id", ["29:x<script>", "29:abc\n", "", "x" * 201])
def test_a_person_whose_id_teams_could_not_have_sent_is_named_not_mentioned(bad_id):
    card = answer_card(answer("Yes [1].", [Citation(1, doc_chunk(1))]), shared_by=Mention(bad_id, "Mallory"))
    assert_valid(card)
    assert "entities" not in card["msteams"]
    assert texts(card)[-1].startswith("Shared by **Mallory**")


def test_a_mention_with_no_readable_name_still_reads():
    card = answer_card(answer("Yes [1].", [Citation(1, doc_chunk(1))]), shared_by=Mention("29:abc", "\x00\u202e "))
    assert_valid(card)
    assert texts(card)[-1].startswith("Shared by <at>someone</at>")


def test_many_sources_are_capped_with_a_count_of_the_rest():
    cites = [Citation(i, doc_chunk(i, page=i)) for i in range(1, 41)]
    card = answer_card(answer(" ".join(f"Fact [{i}]." for i in range(1, 41)), cites))
    assert_valid(card)
    shown = [t for t in texts(card) if t.startswith("**[")]
    assert len(shown) == STEPS[0].items
    assert f"…and {40 - STEPS[0].items} more sources." in texts(card)


# ----- minutes ------------------------------------------------------------------------------


def test_minutes_show_every_part_with_its_moment_and_owners_as_mentions():
    m = minutes(
        decisions=[Decision("Ship the release on Friday", ev(751.0))],
        actions=[ActionItem("Update the wiki", "Bob", "2026-01-09", "by Friday", ev(3725.0, "Bob")),
                 ActionItem("Book the room", None, None, "next week", ev(60.0, None)),
                 ActionItem("Send the notes", "Carol", None, None, ())],
        questions=[OpenQuestion("Who owns the budget?", ev(1500.0, "Carol"))])
    card = minutes_card(m, source="planning.m4a", owners={"Bob": Mention("29:bob", "Bob Builder")},
                        requested_by=Mention("29:alice", "Alice"))
    assert_valid(card)
    shown = texts(card)
    assert shown[0] == "Minutes: Weekly planning"
    assert {"Recording planning.m4a", "Date 2026-01-05", "Attendees Alice, Bob"} <= set(shown)
    assert "Requested by <at>Alice</at>" in shown
    assert shown[shown.index("Summary") + 1] == "The team agreed on the release date."
    assert "• Ship the release on Friday _(Alice, 12:31–12:35)_" in shown
    assert "• <at>Bob Builder</at>: Update the wiki — due 2026-01-09 _(Bob, 1:02:05–1:02:09)_" in shown
    assert "• **Unassigned**: Book the room — next week _(01:00–01:04)_" in shown
    assert "• **Carol**: Send the notes" in shown  # no mention for an owner IMP does not know in Teams
    assert "• Who owns the budget? _(Carol, 25:00–25:04)_" in shown
    ids = {e["mentioned"]["id"] for e in card["msteams"]["entities"]}
    assert ids == {"29:alice", "29:bob"}
    assert shown.index("Decisions") < shown.index("Action items") < shown.index("Open questions")


def test_minutes_of_a_text_transcript_cite_turns():
    m = minutes(decisions=[Decision("Adopt the plan", (Evidence("ok", 40, 40, 44, "Ann"),))], timed=False)
    card = minutes_card(m, source="notes.txt")
    assert_valid(card)
    assert "• Adopt the plan _(Ann, turns 40–44)_" in texts(card)


def test_empty_minutes_say_so_and_leave_out_open_questions():
    card = minutes_card(minutes(summary=""), source="standup.m4a")
    assert_valid(card)
    shown = texts(card)
    assert "_No summary._" in shown and "_No decisions were recorded._" in shown and "_No action items._" in shown
    assert "Open questions" not in shown


def test_long_minutes_are_capped_per_list_and_only_shown_owners_are_mentioned():
    owners = {f"P{i}": Mention(f"29:p{i}", f"Person {i}") for i in range(60)}
    m = minutes(decisions=[Decision(f"Decision {i}", ev(i * 10.0)) for i in range(60)],
                actions=[ActionItem(f"Task {i}", f"P{i}", None, None, ev(i * 10.0)) for i in range(60)])
    card = minutes_card(m, source="offsite.mp4", owners=owners)
    assert_valid(card)
    shown = texts(card)
    k = STEPS[0].items
    assert f"…and {60 - k} more decisions." in shown and f"…and {60 - k} more action items." in shown
    assert len(card["msteams"]["entities"]) == k


# ----- hostile text -------------------------------------------------------------------------

HOSTILE = ("Click [here](https://evil.example/login) or ![x](https://evil.example/p.png) "
           "<at>CEO</at> &lt;at&gt;CFO&lt;/at&gt; &#60;b&#62; <a href='https://evil.example'>x</a> "
           "[1]: https://evil.example/ref [docs][1] [1](https://evil.example) \u202eexe.pdf\x00 ")


def test_neutral_keeps_the_words_and_breaks_every_link_and_tag():
    out = neutral(HOSTILE)
    assert out.startswith("Click here (https://evil.example/login) or x (https://evil.example/p.png) ‹at›CEO‹/at› "
                          "‹at›CFO‹/at› ‹b› ‹a href='https://evil.example'›x‹/a›")
    assert "[1] : https://evil.example/ref" in out and "[docs][1]" in out and "1 (https://evil.example)" in out
    assert "\u202e" not in out and "\x00" not in out
    assert neutral("plain [3] text, 50% off & more") == "plain [3] text, 50% off & more"


@pytest.mark.parametrize("attack", ["[" * 100_000, "[a](" * 25_000, "](" * 50_000, "![" * 50_000 + "](",
                                    "[" + "a" * 100_000 + "](" + "b" * 100_000, "&#x0000003c;" * 10_000,
                                    "# " * 50_000, "\n\n" * 50_000])
def test_text_built_to_make_the_patterns_backtrack_is_read_quickly(attack):
    started = time.perf_counter()
    card = answer_card(answer(attack, [Citation(1, doc_chunk(1, source=attack, text=attack))]))
    neutral(attack, 6000)
    assert time.perf_counter() - started < 2.0  # against catastrophe only: linear work takes milliseconds
    assert_valid(card)
    assert_inert(card)


@pytest.mark.parametrize("unit", [HOSTILE, "😀" * 7 + " ", "ü [x](y) "])
def test_hostile_answers_and_sources_stay_inert_and_within_teams_limit(unit):
    huge = (unit * (100_000 // len(unit) + 1))[:100_000]  # 100 KB of it
    cites = [Citation(i, doc_chunk(i, source=f"/docs/{huge[:300]}.pdf", text=huge)) for i in range(1, 30)]
    card = answer_card(answer(huge + " [1]", cites, question=huge), share=True, shared_by=Mention("29:u", huge))
    assert_valid(card)
    assert_inert(card)
    # what did not fit is said, not dropped silently
    assert any(t.startswith("…and") for t in texts(card))
    assert "The answer was shortened to fit in a Teams message." in texts(card)


@pytest.mark.parametrize("unit", [HOSTILE, "😀" * 7 + " "])
def test_hostile_minutes_stay_inert_and_within_teams_limit(unit):
    huge = (unit * (100_000 // len(unit) + 1))[:100_000]
    items = range(500)
    m = Minutes(title=huge, date=huge, attendees=[huge] * 100, summary=huge, topics=[],
                decisions=[Decision(huge, ev(i, huge, huge)) for i in items],
                action_items=[ActionItem(huge, huge, huge, huge, ev(i, huge)) for i in items],
                open_questions=[OpenQuestion(huge, ev(i, huge)) for i in items], timed=True)
    card = minutes_card(m, source=huge, owners={huge: Mention("29:o", huge)}, requested_by=Mention("29:r", huge))
    assert_valid(card)
    assert_inert(card)
    assert texts(card)[0].startswith("Minutes: ")
    assert any(t.startswith("…and") and t.endswith("more decisions.") for t in texts(card))


def test_a_card_that_cannot_fit_says_so():
    def build(limits: Limits) -> dict[str, Any]:
        return {"type": "AdaptiveCard", "version": "1.5", "body": [text_block("x" * 30_000)], "fallbackText": "x",
                "msteams": {"width": "Full"}}

    card = fit(build, what="answer")
    assert_valid(card)
    assert texts(card) == ["The answer is too large to show in Teams."]


# ----- progress -----------------------------------------------------------------------------


def bar(card: dict) -> list[tuple[Any, str]]:
    sets = [e for e in card["body"] if e["type"] == "ColumnSet"]
    return [(c["width"], c["style"]) for c in sets[0]["columns"]] if sets else []


def test_progress_of_a_transcription_shows_percent_time_and_a_bar():
    card = progress_card("Transcribing", "standup.m4a", "transcribing", 300, 720)
    assert_valid(card)
    assert texts(card) == ["⏳ Transcribing **standup.m4a**", "transcribing — 42%, 05:00 of 12:00"]
    assert bar(card) == [(42, "accent"), (58, "emphasis")]
    assert card["fallbackText"] == "Transcribing standup.m4a — transcribing — 42%, 05:00 of 12:00"


def test_progress_updates_keep_one_shape_so_the_message_is_edited_in_place():
    first = progress_card("Writing minutes of", "all-hands.mp4", "drafting", 1, 4)
    later = progress_card("Writing minutes of", "all-hands.mp4", "drafting", 3, 4)
    assert [e["type"] for e in first["body"]] == [e["type"] for e in later["body"]]
    assert texts(later)[1] == "drafting — 75%"
    assert bar(later) == [(75, "accent"), (25, "emphasis")]


@pytest.mark.parametrize(("done", "total", "expected"), [(0, 10, [(100, "emphasis")]), (15, 10, [(100, "accent")]),
                                                         (-5, 10, [(100, "emphasis")])])
def test_progress_bar_is_clamped(done, total, expected):
    card = progress_card("Indexing", "a.pdf", "embedding", done, total)
    assert_valid(card)
    assert bar(card) == expected


def test_queued_and_started_work_without_a_total():
    queued = progress_card("Indexing", "a.pdf", "queued", 0, None)
    assert texts(queued) == ["⏳ Indexing **a.pdf**", "waiting for earlier work to finish"] and not bar(queued)
    started = progress_card("Indexing", "a.pdf", "started", 0, None)
    assert texts(started) == ["⏳ Indexing **a.pdf**"]
    hostile = progress_card("Indexing", HOSTILE * 1000, "reading <at>x</at>", 1, 2)
    assert_valid(hostile)
    assert_inert(hostile)
