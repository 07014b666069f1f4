"""👍/👎 on IMP's answers in Slack become feedback rows; REST (`GET /v1/feedback`) and the CLI list them.

IMP answers a real question in #general; people then react to the message it
posted, and the signed reaction events reach the running app as Slack sends them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.api import create_app
from core.config import Settings
from core.errors import InvalidRequest, NotFound
from core.models import Feedback
from core.store.feedback import FeedbackStore
from tests.fakes import slack_payloads as sp
from tests.integration.slack.conftest import SlackRig, make_rig, wait_until

ROOT = Path(__file__).resolve().parents[3]
IMP = Path(sys.executable).with_name("imp")
HOTEL_Q = "How much are hotel costs reimbursed per night in Europe?"
FIELDS = {"answer_id", "user", "channel", "rating", "created_at"}


@dataclass
class Answered:
    question_ts: str  # the person's mention
    ts: str  # IMP's answer message
    answer_id: str


def answer(rig: SlackRig, *, channel: str = "C0GENERAL", user: str = "U0ALICE") -> Answered:
    """Ask IMP in ``channel`` (a mention, or a message in a DM) and return where its answer was posted."""
    if channel.startswith("D"):
        inner, thread = sp.message(HOTEL_Q, user=user, channel=channel), None
    else:
        inner = sp.app_mention(f"<@UIMPBOT> {HOTEL_Q}", user=user, channel=channel)
        thread = inner["ts"]
    assert rig.event(inner) == 200
    rig.slack.wait_for("chat.postMessage", timeout=60,
                       where=lambda c: c.args.get("channel") == channel and c.args.get("thread_ts") == thread)
    [posted] = [m for m in rig.slack.messages(channel) if m.get("user") == "UIMPBOT" and m.get("blocks")
                and m.get("thread_ts") == thread]
    assert "180 EUR" in posted["text"]
    answer_id = wait_until(lambda: rig.bot.deps.state.answer_at(channel, posted["ts"]), timeout=10,
                           what="the answer to be linked to its message")
    return Answered(inner["ts"], posted["ts"], answer_id)


def react(rig: SlackRig, name: str, ts: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
          added: bool = True, **kw) -> dict:
    inner = sp.reaction(name, added=added, user=user, channel=channel, ts=ts)
    assert rig.event(inner, **kw) == 200
    return inner


def listed(http: TestClient, **params) -> list[dict]:
    resp = http.get("/v1/feedback", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["feedback"]


def settle(rig: SlackRig, expected: list[tuple[str, str, int]]) -> list[dict]:
    """Wait until the listed ratings are exactly ``expected`` (user, channel, rating); return the rows."""
    def seen() -> list[tuple[str, str, int]]:
        return sorted((r["user"], r["channel"], r["rating"]) for r in listed(rig.http))

    wait_until(lambda: seen() == sorted(expected), timeout=20, what=f"feedback {expected}, have {seen()}")
    return listed(rig.http)


@pytest.fixture
def answered(rig, samples) -> Answered:
    rig.engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    return answer(rig)


def test_a_thumbs_up_is_listed_with_the_answer_who_where_and_when(rig, answered):
    given = react(rig, "+1", answered.ts)
    [row] = settle(rig, [("U0ALICE", "C0GENERAL", 1)])
    assert set(row) == FIELDS and row["answer_id"] == answered.answer_id
    assert rig.engine.answer(row["answer_id"]).question == HOTEL_Q
    assert row["created_at"].endswith("Z")
    when = datetime.fromisoformat(row["created_at"].removesuffix("Z")).replace(tzinfo=UTC)
    assert abs(when.timestamp() - float(given["event_ts"])) < 1  # when the person reacted, per Slack
    assert listed(rig.http, answer_id=answered.answer_id) == [row]
    assert listed(rig.http, answer_id="some-other-answer") == []

    in_dm = answer(rig, channel="D0BOB", user="U0BOB")  # a rating given in a DM names the DM
    react(rig, "thumbsup", in_dm.ts, user="U0BOB", channel="D0BOB")
    rows = settle(rig, [("U0ALICE", "C0GENERAL", 1), ("U0BOB", "D0BOB", 1)])
    assert [r["answer_id"] for r in rows if r["user"] == "U0BOB"] == [in_dm.answer_id] != [answered.answer_id]


def test_thumbs_down_in_any_form_is_minus_one_and_removing_a_reaction_takes_it_back(rig, answered):
    react(rig, "thumbsdown", answered.ts, user="U0BOB")
    react(rig, "-1::skin-tone-2", answered.ts)
    react(rig, "-1", answered.ts)  # a second 👎 variant from Alice is still one rating
    rows = settle(rig, [("U0ALICE", "C0GENERAL", -1), ("U0BOB", "C0GENERAL", -1)])
    assert {r["answer_id"] for r in rows} == {answered.answer_id}

    react(rig, "-1::skin-tone-2", answered.ts, added=False)
    settle(rig, [("U0BOB", "C0GENERAL", -1)])
    react(rig, "+1", answered.ts, user="U0BOB")  # Bob changes his mind: 👍 added, then 👎 removed
    react(rig, "thumbsdown", answered.ts, user="U0BOB", added=False)
    [row] = settle(rig, [("U0BOB", "C0GENERAL", 1)])
    assert row["answer_id"] == answered.answer_id


def test_reactions_that_do_not_rate_an_answer_leave_no_row(rig, answered, fake_slack):
    chatter = fake_slack.add_message("C0GENERAL", "lunch at noon?", user="U0BOB")
    react(rig, "+1", chatter)  # a message that is no answer of IMP's
    react(rig, "+1", answered.question_ts, user="U0BOB")  # the question, not the answer
    react(rig, "heart", answered.ts)  # another emoji on the answer
    react(rig, "hourglass_flowing_sand", answered.question_ts, user="UIMPBOT")  # IMP's own progress sign
    react(rig, "+1", answered.ts, user="UIMPBOT")  # IMP rating itself
    file_reaction = sp.reaction("+1", ts=answered.ts)
    file_reaction["item"] = {"type": "file", "file": "F0SOMETHING"}
    assert rig.event(file_reaction) == 200

    react(rig, "-1", answered.ts, user="U0BOB")  # the one real rating, sent last
    [row] = settle(rig, [("U0BOB", "C0GENERAL", -1)])
    assert row["answer_id"] == answered.answer_id


def test_a_retried_reaction_counts_once_even_after_it_was_taken_back(rig, answered):
    added = sp.reaction("+1", ts=answered.ts)
    assert rig.event(added, event_id="Ev0THUMB") == 200
    settle(rig, [("U0ALICE", "C0GENERAL", 1)])
    assert rig.event(added, event_id="Ev0THUMB", retry_num=1) == 200
    react(rig, "+1", answered.ts, added=False)
    settle(rig, [])
    # Slack retries the first delivery late: it must not bring back the rating Alice removed.
    assert rig.event(added, event_id="Ev0THUMB", retry_num=2, retry_reason="http_error") == 200
    react(rig, "-1", answered.ts, user="U0BOB")
    settle(rig, [("U0BOB", "C0GENERAL", -1)])


def test_the_cli_lists_the_same_feedback_as_the_api(rig, answered, settings):
    react(rig, "+1", answered.ts)
    react(rig, "thumbsdown", answered.ts, user="U0BOB")
    api = settle(rig, [("U0ALICE", "C0GENERAL", 1), ("U0BOB", "C0GENERAL", -1)])

    env = {k: v for k, v in os.environ.items() if not k.startswith("IMP_")}
    env["IMP_DATA_DIR"] = str(settings.data_dir)

    def imp(*args: str) -> str:
        proc = subprocess.run([str(IMP), "feedback", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert json.loads(imp("--json")) == {"feedback": api}
    assert "1 👍, 1 👎" in imp()


def test_the_feedback_api_needs_the_bearer_token_when_one_is_set(engine, settings, fake_slack, samples,
                                                                 monkeypatch):
    token = "feedback-test-token-0123456789"
    monkeypatch.setenv("IMP_API__TOKEN", token)
    configured = Settings(data_dir=settings.data_dir)  # as `imp serve` reads it
    bot, _ = make_rig(engine, fake_slack)
    with TestClient(create_app(engine, api_token=configured.api.token, slack=bot)) as http:
        rig = SlackRig(http, fake_slack, bot, engine)
        engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
        answered = answer(rig)  # Slack's endpoints take Slack's signature, not the token
        react(rig, "+1", answered.ts)
        wait_until(lambda: engine.feedback(), timeout=20, what="the rating to be stored")

        assert http.get("/v1/feedback").status_code == 401
        assert http.get("/v1/feedback", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        resp = http.get("/v1/feedback", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200
        assert [(r["user"], r["rating"]) for r in resp.json()["feedback"]] == [("U0ALICE", 1)]


@pytest.mark.parametrize("rating", [0, 2, -2])
def test_a_rating_is_only_ever_plus_or_minus_one(engine, rating):
    store = FeedbackStore(engine.database)
    with pytest.raises(InvalidRequest):
        store.record(Feedback("a1", "U0ALICE", "C0GENERAL", rating, datetime(2025, 1, 1)))
    assert store.list(include_retracted=True) == []


def test_feedback_on_an_answer_imp_never_gave_is_refused(engine):
    with pytest.raises(NotFound):
        engine.record_feedback(Feedback("no-such-answer", "U0ALICE", "C0GENERAL", 1, datetime(2025, 1, 1)))
    assert engine.feedback() == []
