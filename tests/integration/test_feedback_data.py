"""👍/👎 given in Slack become training data, without the people who gave them.

IMP answers real questions in #general of the fake Slack; Alice and Bob react to
its answers with signed reaction events, as Slack sends them. ``engine.rated_answers``
then feeds ``feedback_pairs`` and ``load_training_data``: rated-up passages are
positives, rated-down ones negatives, and once a cited document is deleted its
passages are no longer training data.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import InvalidRequest
from core.store.feedback import FeedbackStore
from tests.fakes import slack_payloads as sp
from tests.fakes.slack_server import FakeSlack
from tests.integration.slack.conftest import SlackRig, make_rig, wait_until
from training.data import feedback_pairs, load_training_data
from training.feedback import feedback_negatives

HOTEL = "How much are hotel costs reimbursed per night in Europe?"
SECRETS = "How often do service credentials rotate?"
LEAVE = "How many weeks of parental leave do parents receive?"
PEOPLE = ("U0ALICE", "U0BOB", "alice", "bob", "Alice Jones", "Bob Smith", "C0GENERAL")


@pytest.fixture
def rig(engine, fake_slack):
    bot, http = make_rig(engine, fake_slack)
    with http:
        yield SlackRig(http, fake_slack, bot, engine)


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        fake.add_user("U0ALICE", "alice", real_name="Alice Jones")
        fake.add_user("U0BOB", "bob", real_name="Bob Smith")
        fake.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", "UIMPBOT"])
        yield fake


def ask(rig: SlackRig, question: str, expect: str) -> tuple[str, str]:
    """Mention IMP with ``question`` in #general; (answer message ts, answer id)."""
    text = f"<@UIMPBOT> {question}"
    # The message exists in Slack (with a ts from the fake's clock), then its app_mention event arrives.
    inner = sp.app_mention(text, user="U0ALICE", channel="C0GENERAL",
                           ts=rig.slack.add_message("C0GENERAL", text, user="U0ALICE"))
    assert rig.event(inner) == 200
    rig.slack.wait_for("chat.postMessage", timeout=60,
                       where=lambda c: c.args.get("thread_ts") == inner["ts"] and c.args.get("blocks"))
    [posted] = [m for m in rig.slack.messages("C0GENERAL")
                if m.get("user") == "UIMPBOT" and m.get("blocks") and m.get("thread_ts") == inner["ts"]]
    assert expect in posted["text"], posted["text"]
    answer_id = wait_until(lambda: rig.bot.deps.state.answer_at("C0GENERAL", posted["ts"]), timeout=10,
                           what="the answer to be linked to its message")
    return posted["ts"], answer_id


def react(rig: SlackRig, name: str, ts: str, user: str) -> None:
    assert rig.event(sp.reaction(name, user=user, channel="C0GENERAL", ts=ts)) == 200


def test_reactions_in_slack_become_pairs_without_user_ids_and_deleted_documents_drop_out(rig, samples, embedder):
    engine = rig.engine
    [handbook] = engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    engine.ingest([samples / "security-policy.html"], scope="C0GENERAL")

    hotel_ts, hotel_id = ask(rig, HOTEL, "180 EUR")
    secrets_ts, secrets_id = ask(rig, SECRETS, "90 days")
    leave_ts, leave_id = ask(rig, LEAVE, "20 weeks")
    react(rig, "+1", hotel_ts, "U0ALICE")
    react(rig, "thumbsup", hotel_ts, "U0BOB")
    react(rig, "-1", secrets_ts, "U0BOB")
    react(rig, "+1", leave_ts, "U0ALICE")  # Alice and Bob disagree: a tie teaches nothing
    react(rig, "-1::skin-tone-2", leave_ts, "U0BOB")
    wait_until(lambda: len(engine.feedback()) == 5, timeout=20, what="the five ratings to be stored")

    rated = {r.answer_id: r for r in engine.rated_answers()}
    assert set(rated) == {hotel_id, secrets_id, leave_id}
    assert (rated[hotel_id].ups, rated[hotel_id].downs) == (2, 0)
    assert (rated[secrets_id].ups, rated[secrets_id].downs) == (0, 1)
    assert (rated[leave_id].ups, rated[leave_id].downs) == (1, 1)
    assert rated[hotel_id].question == HOTEL
    assert [c.chunk.text for c in engine.answer(hotel_id).citations] == list(rated[hotel_id].passages)

    pairs = feedback_pairs(list(rated.values()))
    assert pairs and {p.query for p in pairs} == {HOTEL}
    assert [p.positive for p in pairs] == list(rated[hotel_id].passages)
    assert any("180 EUR" in p.positive for p in pairs)
    assert all(p.negatives == () for p in pairs)  # no 👎 answer to the hotel question
    [down] = feedback_negatives(list(rated.values()))
    assert down.question == SECRETS and any("90 days" in text for text in down.passages)

    dataset = load_training_data(None, embedder.tokenizer(), 128, feedback=list(rated.values()))
    assert dataset.pairs == tuple(pairs)
    assert dataset.stats["feedback_negative_only_questions"] == 1
    everything = repr(dataset) + repr(list(rated.values())) + dataset.digest
    for who in PEOPLE:
        assert who not in everything

    engine.delete(handbook.doc_id)  # the hotel and leave answers cited the handbook only
    assert {r.answer_id for r in FeedbackStore(engine.database).rated_answers()} == set(rated)  # the log keeps them
    after = engine.rated_answers()
    assert [r.answer_id for r in after] == [secrets_id]
    assert not any("180 EUR" in text or "20 weeks" in text for r in after for text in r.passages)
    assert feedback_pairs(after) == []
    with pytest.raises(InvalidRequest, match="no training data"):
        load_training_data(None, embedder.tokenizer(), 128, feedback=[r for r in after if r.ups > r.downs])


def test_only_ratings_since_a_time_are_read_back(rig, samples):
    engine = rig.engine
    engine.ingest([samples / "handbook.md"], scope="C0GENERAL")
    hotel_ts, hotel_id = ask(rig, HOTEL, "180 EUR")
    react(rig, "+1", hotel_ts, "U0ALICE")
    wait_until(lambda: engine.feedback(), timeout=20, what="the rating to be stored")
    [given] = engine.feedback()
    assert [r.answer_id for r in engine.rated_answers(since=given.created_at)] == [hotel_id]
    assert engine.rated_answers(since=given.created_at + timedelta(seconds=1)) == []
