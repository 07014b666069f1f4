"""`/ask` and its "Share in channel" button, driven through the running app against the fake Slack.

A user asks privately and gets an ephemeral answer with sources (posted to the
command's response_url, never in the channel); the button puts that answer in the
channel, linked for 👍/👎, unless it drew on a place the channel cannot see.
"""

from __future__ import annotations

import json

import pytest

from bot.slack.blocks import SHARE_ACTION
from bot.slack.commands import ASK_WORKING
from tests.fakes import slack_payloads as sp
from tests.integration.slack.conftest import blocks_text, wait_until

HOTEL = "What is the hotel allowance per night in Europe?"


def _blocks(args: dict) -> list[dict]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def _share_button(args: dict) -> dict:
    buttons = [e for b in _blocks(args) if b.get("type") == "actions" for e in b["elements"]]
    assert len(buttons) == 1, f"expected one button, got {buttons}"
    return buttons[0]


def _private_answer(rig, name: str = "cmd", timeout: float = 60.0) -> dict:
    """The JSON body IMP posted to the response_url ``name``."""
    return rig.slack.wait_for(f"response_url:{name}", timeout=timeout)[-1].args


def _quiesce(rig) -> None:
    """Let every lazy listener and the follow-up worker finish, so 'nothing was posted' is final."""
    rig.bot.close()


def _channel_posts(rig, channel: str) -> list[dict]:
    return [c.args for c in rig.slack.calls_to("chat.postMessage") if c.args.get("channel") == channel]


@pytest.fixture
def secret_handbook(engine, samples):
    """The travel policy only in the private #secret (Alice is a member; Bob is not)."""
    engine.ingest([samples / "handbook.md"], scope="G0SECRET")


# ----- /ask ------------------------------------------------------------------------------------

def test_ask_answers_privately_with_sources_and_a_share_button(rig, indexed):
    resp = rig.command("/ask", HOTEL)
    assert resp.status_code == 200
    assert resp.text == ASK_WORKING  # only the asker sees it; the answer follows on the response_url

    body = _private_answer(rig)
    assert body["response_type"] == "ephemeral"
    shown = blocks_text(body)
    assert "180" in shown and "EUR" in shown
    assert "Sources" in shown and "handbook.md" in shown
    button = _share_button(body)
    assert button["action_id"] == SHARE_ACTION
    assert button["text"]["text"] == "Share in channel"
    answer = rig.engine.answer(button["value"])  # the button carries the stored answer's id
    assert answer.question == HOTEL and not answer.abstained

    _quiesce(rig)
    assert _channel_posts(rig, "C0GENERAL") == []  # private: nothing in the channel itself
    assert rig.slack.calls_to("chat.postEphemeral") == []


def test_ask_without_a_question_shows_usage(rig, indexed):
    resp = rig.command("/ask", "   ")
    assert resp.status_code == 200
    assert "Usage: `/ask QUESTION`" in resp.text

    _quiesce(rig)
    assert rig.slack.calls_to("response_url:cmd") == []
    assert _channel_posts(rig, "C0GENERAL") == []


def test_ask_that_fails_gets_a_reason_not_silence(rig, indexed):
    # Slack caps a command's text far below this; IMP must still say why rather than nothing.
    resp = rig.command("/ask", "why " * 1200)
    assert resp.status_code == 200

    body = _private_answer(rig)
    assert body["response_type"] == "ephemeral"
    assert ":warning: I could not answer that" in body["text"]
    assert "longer than 4000 characters" in body["text"]


def test_ask_in_a_dm_answers_from_the_channels_the_user_is_in(rig, secret_handbook):
    # Alice is in #secret: her DM question is answered from it.
    rig.command("/ask", HOTEL, channel="D0ALICE", channel_name="directmessage",
                response_url=rig.slack.response_url("alice"))
    alice = _private_answer(rig, "alice")
    assert alice["response_type"] == "ephemeral"
    assert "180" in blocks_text(alice) and "handbook.md" in blocks_text(alice)

    # Bob is not: the same question from his DM gets nothing from #secret.
    rig.command("/ask", HOTEL, user="U0BOB", channel="D0BOB", channel_name="directmessage",
                response_url=rig.slack.response_url("bob"))
    bob = _private_answer(rig, "bob")
    assert bob["response_type"] == "ephemeral"
    assert "180" not in blocks_text(bob) and "handbook" not in blocks_text(bob)
    answer = rig.engine.answer(_share_button(bob)["value"])
    assert answer.abstained and not answer.citations
    assert "G0SECRET" not in answer.scopes


# ----- the share button ------------------------------------------------------------------------

def test_share_posts_the_answer_in_the_channel_linked_for_feedback(rig, indexed):
    rig.command("/ask", HOTEL, user="U0BOB")
    answer_id = _share_button(_private_answer(rig))["value"]

    click = sp.block_action(SHARE_ACTION, answer_id, user="U0BOB", channel="C0GENERAL",
                            response_url=rig.slack.response_url("share"), container_ephemeral=True)
    assert rig.click(click).status_code == 200

    [post] = rig.posted("C0GENERAL")
    shown = blocks_text(post)
    assert "Shared by <@U0BOB>" in shown
    assert "180" in shown and "handbook.md" in shown
    assert "React with :+1: or :-1:" in shown
    assert SHARE_ACTION not in shown  # no second share button in the channel
    assert post.get("thread_ts") is None  # a message of its own in the channel

    # The posted message is the answer's: a 👍 on it rates this answer.
    [posted_ts] = wait_until(lambda: [m["ts"] for m in rig.slack.messages("C0GENERAL")
                                      if m.get("user") == "UIMPBOT"], timeout=10, what="the shared answer")
    wait_until(lambda: rig.bot.deps.state.answer_at("C0GENERAL", posted_ts) == answer_id, timeout=10,
               what="the shared message to be linked to its answer")

    # The private copy goes away once it is in the channel.
    cleanup = rig.slack.wait_for("response_url:share")[-1].args
    assert cleanup.get("delete_original") is True


def test_share_is_refused_for_an_answer_drawn_from_a_private_channel(rig, secret_handbook):
    rig.command("/ask", HOTEL, channel="D0ALICE", channel_name="directmessage")
    body = _private_answer(rig)
    assert "180" in blocks_text(body)  # it did draw on #secret
    answer_id = _share_button(body)["value"]

    # The click claims #general (a forged or replayed payload): #general's members are not all in #secret.
    click = sp.block_action(SHARE_ACTION, answer_id, user="U0ALICE", channel="C0GENERAL",
                            response_url=rig.slack.response_url("share"), container_ephemeral=True)
    assert rig.click(click).status_code == 200

    refusal = rig.slack.wait_for("response_url:share")[-1].args
    assert refusal["response_type"] == "ephemeral"
    assert refusal.get("replace_original") is False  # the private answer stays with its owner
    assert "stays private" in refusal["text"]
    assert not refusal.get("delete_original")

    # In her own DM with IMP, where only she reads it, the same answer may be shared.
    mine = sp.block_action(SHARE_ACTION, answer_id, user="U0ALICE", channel="D0ALICE",
                           response_url=rig.slack.response_url("dm"), container_ephemeral=True)
    assert rig.click(mine).status_code == 200
    assert "180" in blocks_text(rig.posted("D0ALICE")[0])
    assert rig.slack.wait_for("response_url:dm")[-1].args.get("delete_original") is True

    _quiesce(rig)
    assert _channel_posts(rig, "C0GENERAL") == []
    assert all("180" not in (m.get("text") or "") for m in rig.slack.messages("C0GENERAL"))
    assert len(rig.slack.calls_to("response_url:share")) == 1


def test_share_of_an_unknown_answer_says_so(rig, indexed):
    click = sp.block_action(SHARE_ACTION, "0" * 32, user="U0ALICE", channel="C0GENERAL",
                            response_url=rig.slack.response_url("share"), container_ephemeral=True)
    assert rig.click(click).status_code == 200

    reply = rig.slack.wait_for("response_url:share")[-1].args
    assert reply["response_type"] == "ephemeral"
    assert ":warning: I could not share it" in reply["text"]
    _quiesce(rig)
    assert _channel_posts(rig, "C0GENERAL") == []


def test_an_ask_that_waited_too_long_for_a_worker_is_told_to_ask_again(engine, fake_slack, indexed):
    from tests.integration.slack.conftest import SlackRig, make_rig

    bot, http = make_rig(engine, fake_slack, max_wait_s=1e-6)
    with http:
        rig = SlackRig(http, fake_slack, bot, engine)
        assert rig.command("/ask", HOTEL).status_code == 200
        body = _private_answer(rig)
    assert body["response_type"] == "ephemeral" and "ask again in a minute" in body["text"]
    assert "180" not in json.dumps(body)
