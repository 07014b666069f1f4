"""Slack's size limits on answers: long text is split at boundaries, never inside a word.

Pure functions of bot.slack.blocks over constructed answers; what is checked is
what Slack would accept (section text at most 3,000 characters, at most 50
blocks a message) and what a reader would see (every word whole, nothing lost,
sources numbered, the 👍/👎 invitation last).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from bot.slack.blocks import (
    FEEDBACK_HINT,
    MESSAGE_BLOCKS,
    SECTION_LIMIT,
    SHARE_ACTION,
    TEXT_LIMIT,
    answer_blocks,
    answer_text,
    batches,
    minutes_blocks,
    minutes_text,
    split_text,
)
from core.models import ActionItem, Answer, Chunk, Citation, Decision, Evidence, Minutes

WORDS = ("reimbursed", "travel", "desk", "Europe", "hotel", "night", "receipts", "economy", "premium",
         "départ", "Übernachtung", "180", "EUR", "a", "of", "the")


def prose(n_words: int, *, sentence_every: int = 0, paragraph_every: int = 0, seed: int = 7) -> str:
    out = []
    for i in range(n_words):
        out.append(WORDS[(i * seed + i // 3) % len(WORDS)])
        if sentence_every and i % sentence_every == sentence_every - 1:
            out[-1] += "."
        if paragraph_every and i % paragraph_every == paragraph_every - 1:
            out[-1] += "\n\n"
    return " ".join(out).replace("\n\n ", "\n\n")


def words(text: str) -> list[str]:
    return text.split()


def chunk(n: int, *, page: int | None = None, start: float | None = None, speakers=(),
          text: str = "Hotel costs are reimbursed up to 180 EUR per night in Europe.") -> Chunk:
    return Chunk(chunk_id=f"c{n}", doc_id=f"d{n}", version="v1", ordinal=n,
                 source="upload:standup.m4a" if start is not None else "/docs/handbook.pdf", scope="C0GENERAL",
                 text=text, page_start=page, page_end=page, start=start, end=None if start is None else start + 9,
                 speakers=tuple(speakers))


def answer(text: str, citations: list[Citation] | None = None) -> Answer:
    return Answer(answer_id="a" * 32, question="What is the hotel limit?", text=text, abstained=False,
                  citations=citations or [], scopes=["C0GENERAL"], model="extractive", timings_ms={},
                  created_at=datetime(2026, 1, 5, 9, 0))


def section_texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


# ----- split_text -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit"), [
    (prose(2000), SECTION_LIMIT),  # words only
    (prose(2000, sentence_every=11), SECTION_LIMIT),  # sentences
    (prose(2000, sentence_every=9, paragraph_every=40), SECTION_LIMIT),  # paragraphs
    (prose(400, sentence_every=5), 100),
    ("\n".join(f"• item {i}: {prose(12, seed=i % 5 + 2)}" for i in range(300)), SECTION_LIMIT),  # a list
])
def test_split_keeps_every_word_whole_and_in_order(text, limit):
    pieces = split_text(text, limit)
    assert len(pieces) > 1
    assert all(0 < len(p) <= limit for p in pieces)
    assert [w for p in pieces for w in words(p)] == words(text)
    assert all(p == p.strip() for p in pieces)


def test_split_prefers_paragraphs_then_sentences_to_bare_spaces():
    para = prose(200, sentence_every=8)  # about 1,400 characters, several sentences
    text = "\n\n".join([para, para, para])
    assert 1000 < len(para) < SECTION_LIMIT // 2
    assert split_text(text, SECTION_LIMIT) == [f"{para}\n\n{para}", para]
    sentences = prose(800, sentence_every=10)
    assert all(p.endswith(".") for p in split_text(sentences, 1000)[:-1])


def test_short_text_is_one_piece_and_blank_text_none():
    assert split_text("  Hotel: 180 EUR.  ") == ["Hotel: 180 EUR."]
    assert split_text("x" * SECTION_LIMIT) == ["x" * SECTION_LIMIT]
    assert split_text("   \n ") == []


def test_a_single_word_longer_than_the_limit_is_the_only_thing_cut():
    url = "https://intranet.example.com/" + "a" * 7000
    pieces = split_text(f"See {url} for details.", SECTION_LIMIT)
    assert all(len(p) <= SECTION_LIMIT for p in pieces)
    assert "".join(pieces).replace(" ", "") == f"See{url}fordetails."
    assert pieces[0] == "See"


# ----- answer_blocks and batches ----------------------------------------------------------------


def test_answer_longer_than_a_section_becomes_several_sections_without_cut_words():
    text = prose(1500, sentence_every=12) + " [1]"
    blocks = answer_blocks(answer(text, [Citation(1, chunk(1, page=4))]))
    texts = section_texts(blocks)
    assert len(texts) >= 4
    assert all(len(t) <= SECTION_LIMIT for t in texts)
    body = [w for t in texts[:-1] for w in words(t)]
    assert body == words(text)
    assert "*[1]* handbook.pdf, p. 4" in texts[-1]
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": FEEDBACK_HINT}]}
    assert len(answer_text(answer(text))) <= TEXT_LIMIT
    assert words(text)[:20] == words(answer_text(answer(text)))[:20]


def test_escaping_never_pushes_a_section_over_the_limit():
    text = " ".join(["R&D <costs> & more"] * 400)  # every & < > grows when escaped
    texts = section_texts(answer_blocks(answer(text)))
    assert all(len(t) <= SECTION_LIMIT for t in texts)
    assert "<" not in "".join(texts) and "&lt;costs&gt;" in texts[0]
    assert re.search(r"&(?!amp;|lt;|gt;)", "".join(texts)) is None


def test_a_very_long_answer_is_spread_over_messages_of_at_most_50_blocks():
    text = prose(60000, sentence_every=10, paragraph_every=30)  # far beyond one message
    blocks = answer_blocks(answer(text, [Citation(1, chunk(1, page=2))]), share=True)
    parts = batches(blocks)
    assert len(parts) >= 2
    assert all(0 < len(p) <= MESSAGE_BLOCKS for p in parts)
    assert [b for p in parts for b in p] == blocks
    assert parts[-1][-1]["type"] == "actions"  # the share button is on the last message, once
    assert sum(b["type"] == "actions" for b in blocks) == 1
    assert [w for t in section_texts(blocks)[:-1] for w in words(t)] == words(text)
    assert batches([]) == [[]]
    assert len(json.dumps(parts[0])) < 200_000


def test_sources_are_numbered_with_page_or_time_and_speaker():
    cites = [Citation(1, chunk(1, page=3)),
             Citation(2, chunk(2, start=75.0, speakers=("Maria",),
                               text="Maria: I will send the pilot report to Rotterdam by Friday."))]
    blocks = answer_blocks(answer("Hotels: 180 EUR a night [1]. Maria sends the report by Friday [2].", cites))
    sources = section_texts(blocks)[-1].splitlines()
    assert sources[0].startswith("*[1]* handbook.pdf, p. 3 — ")
    assert sources[1].startswith("*[2]* standup.m4a [01:15–01:24] Maria — ")
    assert "pilot report" in sources[1]
    assert {"type": "context", "elements": [{"type": "mrkdwn", "text": "*Sources*"}]} in blocks


def test_share_button_carries_the_answer_id_and_shared_answers_credit_the_sharer():
    a = answer("Hotels: 180 EUR a night.")
    (button,) = answer_blocks(a, share=True)[-1]["elements"]
    assert (button["action_id"], button["value"]) == (SHARE_ACTION, a.answer_id)
    footer = answer_blocks(a, shared_by="U0ALICE")[-1]["elements"][0]["text"]
    assert footer.startswith("Shared by <@U0ALICE> · asked: “What is the hotel limit?”")
    assert footer.endswith(FEEDBACK_HINT)
    assert all(b["type"] != "actions" for b in answer_blocks(a))


def test_document_text_cannot_ping_people_or_forge_links():
    text = "Ask <!channel> or <@U0BOB> via <https://evil.example|the portal> & more."
    shown = json.dumps(answer_blocks(answer(text)))
    assert "<!channel>" not in shown and "<@U0BOB>" not in shown and "<https://" not in shown


def test_the_fallback_text_is_escaped_like_the_blocks():
    """``text`` is what notifications show, and Slack reads it as markup just as it reads the blocks."""
    shown = answer_text(answer("Ask <!channel> or <@U0BOB> via <https://evil.example|the portal> & more [1]."))
    assert shown == ("Ask &lt;!channel&gt; or &lt;@U0BOB&gt; via &lt;https://evil.example|the portal&gt; "
                     "&amp; more [1].")


def test_document_text_in_sections_is_verbatim_so_slack_adds_no_links_or_mentions():
    blocks = answer_blocks(answer("Ping @channel at https://evil.example [1].", [Citation(1, chunk(1, page=2))]))
    assert all(b["text"]["verbatim"] is True for b in blocks if b["type"] == "section")


def test_minutes_from_a_hostile_transcript_carry_no_live_markup():
    said = Evidence("<!channel> we ship", 2, None, None, "<@U0EVIL>")
    minutes = Minutes(title="<!here> sync & review", date="2026-01-05", attendees=["<@U0EVIL>", "R&D"],
                      summary="We met <!channel> & agreed on <https://evil.example|the portal>.", topics=[],
                      decisions=[Decision("Ship <!everyone> now.", (said,))],
                      action_items=[ActionItem("Tell <#C0EVIL>", "<!subteam^S1>", None, "by <!date^1|Friday>",
                                               (said,))],
                      open_questions=[], timed=False)
    blocks = minutes_blocks(minutes, source="<!everyone> R&D.vtt")
    text = minutes_text(minutes, "<!everyone> R&D.vtt")
    assert "<" not in json.dumps(blocks) + text
    assert re.search(r"&(?!amp;|lt;|gt;)", json.dumps([b for b in blocks if b["type"] != "header"]) + text) is None
    assert blocks[0]["text"] == {"type": "plain_text", "text": "Minutes: \u2039!here\u203a sync & review"}
