"""Questions asked in Slack: @mentions in channels, DMs and assistant threads.

Each test drives the running app over HTTP with signed events and reads back what
IMP did in the fake Slack: where it answered, with which sources, what progress it
showed, and, for the scope tests, that nothing of a channel's content reached a
person who is not in that channel. Tests that assert something was *not* posted
shut the app down first, which waits for all of its background work.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

from bot.slack.blocks import FEEDBACK_HINT
from tests.fakes import slack_payloads as sp
from tests.integration.slack.conftest import SlackRig, blocks_text, make_rig, wait_until

HOTEL = "What is the hotel limit per night in Europe?"
FALCON = "What is Project Falcon and who is the acquisition target?"
FALCON_DOC = ("# Project Falcon\n\nProject Falcon is the planned acquisition of Contoso Instruments for "
              "12.5 million EUR. The board will sign the deal on 3 March.\n")
LUNCH = "When does the cafeteria serve lunch?"
LUNCH_DOC = ("# Cafeteria\n\nThe staff cafeteria serves lunch from 11:30 to 14:00. The vegetarian dish "
             "of the day costs 6.50 EUR.\n")
WORKING = "hourglass_flowing_sand"


@contextmanager
def running(engine, fake, **options):
    """A rig whose exit waits for all of IMP's background work (bolt's lazy listeners)."""
    bot, http = make_rig(engine, fake, **options)
    with http:
        yield SlackRig(http, fake, bot, engine)


def ingest_text(engine, tmp_path: Path, name: str, text: str, scope: str) -> None:
    folder = tmp_path / f"docs-{scope}-{name}"
    folder.mkdir()
    (folder / name).write_text(text)
    engine.ingest([folder], scope=scope)


def mention(rig: SlackRig, question: str, *, user="U0ALICE", channel="C0GENERAL", thread_ts=None) -> dict:
    """@IMP in a channel: the message exists in Slack, then its app_mention event arrives."""
    event = sp.app_mention(f"<@UIMPBOT> {question}", user=user, channel=channel, thread_ts=thread_ts)
    rig.slack.add_message(channel, event["text"], user=user, ts=event["ts"], thread_ts=thread_ts)
    assert rig.event(event) == 200
    return event


def dm(rig: SlackRig, question: str, *, user="U0ALICE", channel="D0ALICE", thread_ts=None) -> dict:
    event = sp.message(question, user=user, channel=channel, thread_ts=thread_ts)
    rig.slack.add_message(channel, question, user=user, ts=event["ts"], thread_ts=thread_ts)
    assert rig.event(event) == 200
    return event


def replies(rig: SlackRig, channel: str, count: int = 1, thread_ts: str | None = None) -> list[dict]:
    calls = rig.slack.wait_for("chat.postMessage", count, timeout=60,
                               where=lambda c: c.args.get("channel") == channel
                               and c.args.get("thread_ts") == thread_ts)
    return [c.args for c in calls]


def everything_sent(fake) -> str:
    """Every argument IMP sent to Slack, as one string: what could possibly reach a person."""
    return "\n".join(json.dumps(c.args, ensure_ascii=False) for c in fake.calls)


def answer_of(rig: SlackRig, channel: str, thread_ts: str | None):
    """The answer IMP linked to the message it posted (what 👍/👎 on it will rate)."""
    posted = [m for m in rig.slack.messages(channel) if m.get("bot_id") == "BIMPBOT"
              and m.get("thread_ts") == thread_ts]
    assert posted, f"IMP posted nothing in {channel} thread {thread_ts}"
    # The link is stored as soon as Slack has answered chat.postMessage, a moment after the post.
    answer_id = wait_until(lambda: rig.bot.deps.state.answer_at(channel, posted[-1]["ts"]), timeout=10,
                           what="the posted answer to be linked to its answer_id")
    return rig.engine.answer(answer_id)


# ----- channels -----------------------------------------------------------------------------


def test_mention_shows_progress_then_answers_in_thread_with_numbered_sources(rig, indexed):
    asked = mention(rig, "What was the revenue growth in 2025?")
    (answer,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    shown = blocks_text(answer)
    assert "31 percent" in answer["text"]
    assert "*[1]* annual-report-2025.pdf, p. 2" in shown or "*[2]* annual-report-2025.pdf, p. 2" in shown
    assert "[1]" in answer["text"]
    assert "*Sources*" in shown
    assert FEEDBACK_HINT in shown
    assert answer["blocks"][-1]["type"] == "context"  # the 👍/👎 invitation closes the answer

    # The hourglass went on before the answer and came off after it.
    rig.slack.wait_for("reactions.remove")
    order = [c.method for c in rig.slack.calls if c.method in ("reactions.add", "chat.postMessage",
                                                              "reactions.remove")]
    assert order == ["reactions.add", "chat.postMessage", "reactions.remove"]
    added = rig.slack.calls_to("reactions.add")[0].args
    assert (added["name"], added["channel"], added["timestamp"]) == (WORKING, "C0GENERAL", asked["ts"])
    (question,) = [m for m in rig.slack.messages("C0GENERAL") if m["ts"] == asked["ts"]]
    assert "reactions" not in question

    # The posted message carries the answer, so a 👍 on it rates this answer.
    given = answer_of(rig, "C0GENERAL", asked["ts"])
    assert given.question == "What was the revenue growth in 2025?"
    assert given.scopes == ["C0GENERAL", "default"]
    assert any(c.chunk.source.endswith("annual-report-2025.pdf") and c.chunk.page_start == 2
               for c in given.citations)


def test_answer_from_a_recording_cites_the_minute_and_the_speaker(rig, sample_corpus):
    rig.engine.ingest([sample_corpus / "rotterdam-pilot-standup.m4a"], scope="C0GENERAL")
    asked = mention(rig, "How many robots did the warehouse pilot start with?")
    (answer,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    assert re.search(r"\b(?:4|four) robots\b", answer["text"], re.I)  # Whisper may write either
    sources = answer["blocks"][answer["blocks"].index(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "*Sources*"}]}) + 1]["text"]["text"]
    assert re.search(r"\*\[1\]\* rotterdam-pilot-standup\.m4a \[\d\d:\d\d–\d\d:\d\d\] Speaker \d", sources), sources

def test_follow_up_in_a_thread_uses_the_conversation(rig, samples):
    rig.engine.ingest([samples / "handbook.md", samples / "annual-report-2025.pdf"], scope="C0GENERAL")
    first = mention(rig, HOTEL)
    (answer,) = replies(rig, "C0GENERAL", thread_ts=first["ts"])
    assert "180 EUR" in answer["text"]

    mention(rig, "and in North America?", thread_ts=first["ts"])
    second = replies(rig, "C0GENERAL", count=2, thread_ts=first["ts"])[1]
    assert "250 USD" in second["text"]
    assert "handbook.md" in blocks_text(second)
    read = rig.slack.calls_to("conversations.replies")
    assert [(c.args["channel"], c.args["ts"]) for c in read] == [("C0GENERAL", first["ts"])]
    assert answer_of(rig, "C0GENERAL", first["ts"]).question == "and in North America?"

    # Without the thread, the same words are not a question IMP can answer.
    alone = mention(rig, "and in North America?")
    (reply,) = replies(rig, "C0GENERAL", thread_ts=alone["ts"])
    assert "250 USD" not in reply["text"]


def test_follow_up_is_still_answered_when_the_thread_cannot_be_read(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    first = mention(rig, HOTEL)
    replies(rig, "C0GENERAL", thread_ts=first["ts"])
    rig.slack.fail("conversations.replies", "missing_scope")
    mention(rig, "What is the hotel limit per night in North America?", thread_ts=first["ts"])
    second = replies(rig, "C0GENERAL", count=2, thread_ts=first["ts"])[1]
    assert "250 USD" in second["text"]


def test_follow_up_at_the_end_of_a_long_thread_uses_its_latest_messages(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    parent = rig.slack.add_message("C0GENERAL", "Offsite planning thread", user="U0BOB")
    for i in range(130):  # more than one page of conversations.replies
        rig.slack.add_message("C0GENERAL", f"+1 sounds good ({i})", user="U0BOB", thread_ts=parent)
    mention(rig, HOTEL, thread_ts=parent)
    replies(rig, "C0GENERAL", thread_ts=parent)
    mention(rig, "and in North America?", thread_ts=parent)
    second = replies(rig, "C0GENERAL", count=2, thread_ts=parent)[1]
    assert "250 USD" in second["text"]


def test_follow_up_in_a_dm_uses_the_recent_conversation(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    # Yesterday's exchange in the DM is not today's conversation.
    rig.slack.add_message("D0ALICE", "What is the hotel limit per night in Asia?", user="U0ALICE",
                          ts="1699913700.000100")
    rig.slack.add_message("D0ALICE", "I could not find an answer to that.", user="UIMPBOT", bot_id="BIMPBOT",
                          ts="1699913701.000100")
    dm(rig, "and in North America?")
    assert "250 USD" not in replies(rig, "D0ALICE")[0]["text"]

    dm(rig, HOTEL)
    assert "180 EUR" in replies(rig, "D0ALICE", count=2)[1]["text"]
    dm(rig, "and in North America?")
    assert "250 USD" in replies(rig, "D0ALICE", count=3)[2]["text"]


def test_slack_markup_in_a_question_is_read_as_plain_text(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    asked = mention(rig, "Per <#C0GENERAL|general> &amp; <https://intranet.example.com/travel|the travel page>: "
                         "what is the hotel limit per night in Europe &lt;180 EUR&gt;?")
    (reply,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    assert "180 EUR" in reply["text"]
    assert answer_of(rig, "C0GENERAL", asked["ts"]).question == (
        "Per #general & the travel page: what is the hotel limit per night in Europe <180 EUR>?")


def test_people_mentioned_in_a_question_are_read_as_their_names(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    asked = mention(rig, "<@UIMPBOT> <@U0BOB> asks: what is the hotel limit per night in Europe?")
    (reply,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    assert "180 EUR" in reply["text"]
    assert answer_of(rig, "C0GENERAL", asked["ts"]).question == (
        "Bob Smith asks: what is the hotel limit per night in Europe?")


def test_private_channel_content_never_reaches_another_channel(rig, indexed, tmp_path):
    ingest_text(rig.engine, tmp_path, "project-falcon.md", FALCON_DOC, "G0SECRET")
    # Bob asks in #general, where he is, about what only #secret knows.
    probe = mention(rig, FALCON, user="U0BOB")
    (reply,) = replies(rig, "C0GENERAL", thread_ts=probe["ts"])
    assert "project-falcon" not in blocks_text(reply)
    sent = everything_sent(rig.slack)
    for secret in ("Contoso", "12.5 million", "3 March"):
        assert secret not in sent
    assert answer_of(rig, "C0GENERAL", probe["ts"]).abstained

    # In #secret itself the same question is answered from it.
    inside = mention(rig, FALCON, channel="G0SECRET")
    (reply,) = replies(rig, "G0SECRET", thread_ts=inside["ts"])
    assert "Contoso Instruments" in reply["text"]
    assert "project-falcon.md" in blocks_text(reply)


# ----- DMs --------------------------------------------------------------------------------


def test_dm_is_answered_from_the_askers_channels_only(rig, samples, tmp_path):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    ingest_text(rig.engine, tmp_path, "project-falcon.md", FALCON_DOC, "G0SECRET")

    dm(rig, FALCON, user="U0ALICE", channel="D0ALICE")  # Alice is in #secret
    (alice,) = replies(rig, "D0ALICE")
    assert "Contoso Instruments" in alice["text"]
    assert "project-falcon.md" in blocks_text(alice)
    assert set(answer_of(rig, "D0ALICE", None).scopes) == {"D0ALICE", "C0GENERAL", "G0SECRET", "default"}

    alice_calls = len(rig.slack.calls)
    dm(rig, FALCON, user="U0BOB", channel="D0BOB")  # Bob is not
    (bob,) = replies(rig, "D0BOB")
    to_bob = "\n".join(json.dumps(c.args, ensure_ascii=False) for c in rig.slack.calls[alice_calls:])
    for secret in ("Contoso", "12.5 million", "3 March", "project-falcon"):
        assert secret not in to_bob
    given = answer_of(rig, "D0BOB", None)
    assert given.abstained and not given.citations
    assert "G0SECRET" not in given.scopes
    assert set(given.scopes) == {"D0BOB", "C0GENERAL", "default"}
    # Bob still gets what his channels know.
    dm(rig, HOTEL, user="U0BOB", channel="D0BOB")
    assert "180 EUR" in replies(rig, "D0BOB", count=2)[1]["text"]


def test_membership_is_checked_on_every_question(rig, tmp_path):
    ingest_text(rig.engine, tmp_path, "project-falcon.md", FALCON_DOC, "G0SECRET")
    dm(rig, FALCON, user="U0BOB", channel="D0BOB")
    assert "Contoso" not in replies(rig, "D0BOB")[0]["text"]
    # Bob is invited to #secret: his next question may use it.
    rig.slack._channels["G0SECRET"]["members"].append("U0BOB")
    dm(rig, FALCON, user="U0BOB", channel="D0BOB")
    assert "Contoso Instruments" in replies(rig, "D0BOB", count=2)[1]["text"]


def test_dm_sees_every_channel_of_a_member_of_hundreds(rig, tmp_path):
    for i in range(450):  # several pages of users.conversations
        rig.slack.add_channel(f"C0TEAM{i:03d}", f"team-{i}", members=["U0ALICE", "UIMPBOT"])
    rig.slack.add_channel("G0LAST", "last", members=["U0ALICE", "UIMPBOT"], is_private=True)
    ingest_text(rig.engine, tmp_path, "project-falcon.md", FALCON_DOC, "G0LAST")
    dm(rig, FALCON)
    assert "Contoso Instruments" in replies(rig, "D0ALICE")[0]["text"]
    assert len(rig.slack.calls_to("users.conversations")) >= 3

def test_company_wide_scope_is_visible_everywhere_unless_configured_away(engine, fake_slack, tmp_path):
    ingest_text(engine, tmp_path, "cafeteria.md", LUNCH_DOC, "default")
    with running(engine, fake_slack) as rig:
        asked = mention(rig, LUNCH, user="U0BOB")
        dm(rig, LUNCH, user="U0BOB", channel="D0BOB")
        for reply in (replies(rig, "C0GENERAL", thread_ts=asked["ts"])[0], replies(rig, "D0BOB")[0]):
            assert "11:30 to 14:00" in reply["text"]
            assert "cafeteria.md" in blocks_text(reply)
    before = len(fake_slack.calls)
    with running(engine, fake_slack, company_scopes=[]) as rig:
        asked = mention(rig, LUNCH, user="U0BOB")
        dm(rig, LUNCH, user="U0BOB", channel="D0BOB")
        replies(rig, "C0GENERAL", thread_ts=asked["ts"])
        replies(rig, "D0BOB", count=2)
    later = "\n".join(json.dumps(c.args, ensure_ascii=False) for c in fake_slack.calls[before:])
    assert "11:30" not in later and "cafeteria.md" not in later


def test_assistant_thread_greets_then_answers_in_the_thread(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    thread = rig.slack.add_message("D0ALICE", "", user="U0ALICE")  # the thread Slack opens
    started = {"type": "assistant_thread_started", "event_ts": sp.new_ts(),
               "assistant_thread": {"user_id": "U0ALICE", "channel_id": "D0ALICE", "thread_ts": thread,
                                    "context": {"channel_id": "C0GENERAL", "team_id": "T0TEST"}}}
    assert rig.event(started) == 200
    (greeting,) = replies(rig, "D0ALICE", thread_ts=thread)
    assert "Ask me" in greeting["text"]

    dm(rig, HOTEL, thread_ts=thread)
    answer = replies(rig, "D0ALICE", count=2, thread_ts=thread)[1]
    assert "180 EUR" in answer["text"]
    assert "handbook.md" in blocks_text(answer)


# ----- what IMP ignores, and what it never leaves unanswered --------------------------------


def test_messages_that_are_not_questions_get_no_reply(engine, fake_slack, samples):
    engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    ignored = [
        sp.message("Here is what I found.", user="UIMPBOT", bot_id="BIMPBOT"),  # IMP's own post in a DM
        sp.message("Deploy finished", user="U0DEPLOY", bot_id="B0DEPLOY"),  # another app in a DM
        sp.message("Deploy finished", bot_id="B0DEPLOY", subtype="bot_message"),
        sp.message(HOTEL, channel="C0GENERAL", channel_type="channel"),  # a channel message, no mention
        sp.message(HOTEL, channel="G0SECRET", channel_type="group"),
        sp.message("", subtype="message_changed"),
        sp.message("", subtype="message_deleted"),
        sp.message("", subtype="channel_join", channel="C0GENERAL", channel_type="channel"),
        sp.app_mention(f"<@UIMPBOT> {HOTEL}", user="UIMPBOT"),
    ]
    ignored[5]["message"] = {"type": "message", "user": "U0ALICE", "text": HOTEL, "ts": ignored[5]["ts"]}
    ignored[-1]["bot_id"] = "BIMPBOT"
    with running(engine, fake_slack) as rig:
        for event in ignored:
            assert rig.event(event) == 200
    acted = [c.method for c in fake_slack.calls if c.method != "auth.test"]
    assert acted == []


def test_empty_mention_gets_usage(rig):
    asked = mention(rig, "")
    (usage,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    assert "Ask me a question" in usage["text"]
    assert rig.slack.calls_to("reactions.add") == []


def test_overlong_question_gets_a_reason_not_silence(rig):
    asked = mention(rig, "why " * 1100)
    (reason,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    assert reason["text"].startswith(":warning:")
    assert "longer than 4000 characters" in reason["text"]
    rig.slack.wait_for("reactions.remove")


def test_failure_while_answering_a_dm_gets_a_reason_not_silence(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    rig.slack.fail("users.conversations", "internal_error")
    asked = dm(rig, HOTEL)
    (reason,) = replies(rig, "D0ALICE")
    assert reason["text"].startswith(":warning: I could not answer that")
    assert "ref " in reason["text"]  # a reference for the log, no internals
    assert "internal_error" not in reason["text"] and "Traceback" not in reason["text"]
    assert "180 EUR" not in everything_sent(rig.slack)
    rig.slack.wait_for("reactions.remove", where=lambda c: c.args["timestamp"] == asked["ts"])
    # The next question works again.
    dm(rig, HOTEL)
    assert "180 EUR" in replies(rig, "D0ALICE", count=2)[1]["text"]


def test_a_question_that_waited_too_long_for_a_worker_is_told_to_ask_again(engine, fake_slack, indexed):
    """A flood of questions: one that waited past IMP_SLACK__MAX_WAIT_S is not answered late, but told so."""
    with running(engine, fake_slack, max_wait_s=1e-6) as rig:
        asked = mention(rig, HOTEL)
        (reply,) = replies(rig, "C0GENERAL", thread_ts=asked["ts"])
    assert "ask again in a minute" in reply["text"]
    assert "180" not in reply["text"] and not reply.get("blocks")
    assert rig.slack.calls_to("reactions.add") == []  # no work was started on it


def test_in_a_flood_every_question_gets_one_reply_an_answer_or_ask_again(engine, fake_slack, indexed):
    with running(engine, fake_slack, workers=1, max_wait_s=1.0) as rig:
        asked = [mention(rig, HOTEL) for _ in range(12)]
    for event in asked:
        (reply,) = [c.args for c in rig.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == event["ts"]]
        assert "180" in reply["text"] or "ask again in a minute" in reply["text"]
