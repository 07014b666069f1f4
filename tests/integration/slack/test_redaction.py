"""In Slack, an answer whose source was deleted or unshared since is neither shared nor replayed.

The button of a private /ask answer is clicked after the cited document left the
channel (deleted in IMP, or the Slack file taken out of the channel): IMP refuses to
post it, and the channel gets nothing. A follow-up question in the thread of an
answer whose document was deleted does not put the deleted text into the model's
prompt: IMP reads its own earlier answer back from the answer log, redacted, not from
Slack's copy of the message. The model is the fake OpenAI-compatible server, which
records every prompt it is sent.
"""

from __future__ import annotations

import json

import pytest

from app import build_engine
from bot.slack.commands import REMOVED_SINCE
from core.config import LLMSettings, Settings
from tests.fakes import slack_payloads as sp
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.slack.conftest import SlackRig, make_rig, wait_until
from tests.integration.slack.test_files import HANDBOOK, drop, outcome

HOTEL = "What is the hotel allowance per night in Europe?"
FALCON_DOC = ("# Project Falcon\n\nProject Falcon is the planned acquisition of Contoso Instruments for "
              "12.5 million EUR. The board will sign the deal on 3 March.\n")


def _private_answer(rig: SlackRig) -> str:
    """Ask privately; the id the answer's Share button carries."""
    assert rig.command("/ask", HOTEL).status_code == 200
    body = rig.slack.wait_for("response_url:cmd", timeout=60, where=lambda c: c.args.get("blocks"))[-1].args
    assert "180" in json.dumps(body)
    return next(e["value"] for b in body["blocks"] if b["type"] == "actions" for e in b["elements"])


def _click_share(rig: SlackRig, answer_id: str) -> str:
    """Click Share; what IMP tells the clicker."""
    assert rig.click(sp.block_action("imp_share_answer", answer_id, response_url=rig.slack.response_url("click"))
                     ).status_code == 200
    return rig.slack.wait_for("response_url:click", timeout=60)[-1].args.get("text", "")


def _channel_posts(rig: SlackRig) -> list[dict]:
    rig.bot.close()  # waits for every listener: nothing posted means nothing
    return [c.args for c in rig.slack.calls_to("chat.postMessage") if c.args.get("channel") == "C0GENERAL"]


def test_share_refuses_an_answer_whose_document_was_deleted_since(rig, samples):
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    answer_id = _private_answer(rig)
    rig.engine.delete(next(d.doc_id for d in rig.engine.documents() if d.source.endswith("handbook.md")))
    assert _click_share(rig, answer_id) == REMOVED_SINCE
    assert _channel_posts(rig) == []


def test_share_refuses_an_answer_from_a_file_taken_out_of_the_channel(rig, fake_slack):
    shared = drop(rig, "F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes())
    assert outcome(rig, "C0GENERAL", shared).startswith(":white_check_mark:")
    answer_id = _private_answer(rig)

    fake_slack.add_file("F0HANDBK", HANDBOOK.name, HANDBOOK.read_bytes(), mimetype="text/markdown",
                        filetype="markdown", channels=[])  # Alice takes it out of #general
    assert rig.event({"type": "file_unshared", "file_id": "F0HANDBK", "channel_id": "C0GENERAL",
                      "user_id": "U0ALICE", "event_ts": sp.new_ts()}) == 200
    wait_until(lambda: rig.engine.documents_from("slack:F0HANDBK/") == [], timeout=30, what="the file to leave")
    assert "180" not in rig.engine.answer(answer_id).text
    assert _click_share(rig, answer_id) == REMOVED_SINCE
    assert [p for p in _channel_posts(rig) if p.get("thread_ts") is None] == []


@pytest.fixture
def fake_llm():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def test_a_follow_up_never_replays_a_deleted_documents_text_into_the_model(tmp_path, embedder, fake_llm,
                                                                             fake_slack):
    settings = Settings(data_dir=tmp_path / "data", llm=LLMSettings(
        backend="openai", base_url=fake_llm.base_url, model="fake-7b", api_key="sk-test-key-123456"))
    engine = build_engine(settings, embedder=embedder)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "falcon.md").write_text(FALCON_DOC)
    engine.ingest([folder], scope="C0GENERAL")
    bot, http = make_rig(engine, fake_slack)
    with http:
        rig = SlackRig(http, fake_slack, bot, engine)

        def ask_in_thread(text: str, thread_ts: str | None = None) -> dict:
            # The message gets its ts from Slack (the fake): later than IMP's replies before it, as in Slack.
            ts = fake_slack.add_message("C0GENERAL", f"<@UIMPBOT> {text}", user="U0ALICE", thread_ts=thread_ts)
            inner = sp.app_mention(f"<@UIMPBOT> {text}", ts=ts, thread_ts=thread_ts)
            assert rig.event(inner) == 200
            return inner

        def prompts_for(text: str, thread_ts: str, count: int) -> str:
            """Everything the model was sent while IMP answered this follow-up."""
            seen = len(fake_llm.requests)
            ask_in_thread(text, thread_ts)
            rig.slack.wait_for("chat.postMessage", count, timeout=60,
                               where=lambda c: c.args.get("thread_ts") == thread_ts)
            return json.dumps(fake_llm.requests[seen:])

        first = ask_in_thread("What is Project Falcon and who is the acquisition target?")
        (answer,) = rig.posted("C0GENERAL")
        assert "Contoso Instruments" in answer["text"]
        # While the document exists, the thread's answer is the conversation the follow-up builds on.
        assert "Contoso Instruments" in prompts_for("and who signs it?", first["ts"], 2)

        engine.delete(engine.documents()[0].doc_id)
        later = prompts_for("and when will the board sign it?", first["ts"], 3)
        assert "Contoso" not in later and "12.5 million" not in later
        assert "What is Project Falcon" in later  # the asker's own words are still the conversation
