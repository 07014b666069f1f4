"""Slack's HTTP endpoints only act on requests Slack signed, and act on each event once.

Requests are posted to the running FastAPI app the way Slack posts them (or the
way an attacker would: unsigned, signed with the wrong secret, replayed late, or
malformed). IMP's side effects are read back from the fake Slack: what a person
in the workspace would see. Where a test asserts that nothing was posted, the
app is shut down first, which waits for every lazy listener to finish, so
"nothing" means nothing rather than "nothing yet".
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import pytest

from tests.fakes import slack_payloads as sp
from tests.integration.slack.conftest import SlackRig, make_rig

PATHS = ("/slack/events", "/slack/commands", "/slack/interactions")


@contextmanager
def running(engine, fake, **options):
    """A rig whose exit waits for all of IMP's background work (bolt's lazy listeners)."""
    bot, http = make_rig(engine, fake, **options)
    with http:
        yield SlackRig(http, fake, bot, engine)


def ingest_handbook(engine, samples, scope="C0GENERAL"):
    engine.ingest([samples / "handbook.md"], scope=scope)


def signed_requests(fake):
    """One genuine request per endpoint: an @mention, an /ask, and a share click."""
    mention = sp.app_mention("<@UIMPBOT> What is the hotel limit per night in Europe?")
    return {
        "/slack/events": sp.event_request(mention),
        "/slack/commands": sp.command_request("/ask", "What is the hotel limit per night in Europe?",
                                              response_url=fake.response_url("cmd")),
        "/slack/interactions": sp.interaction_request(
            sp.block_action("imp_share_answer", "0" * 32, response_url=fake.response_url("click"))),
    }


def forgeries(body: bytes, headers: dict[str, str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The ways a request that Slack did not send (or sent long ago) can arrive."""
    ctype = {"Content-Type": headers["Content-Type"]}
    stale = int(time.time()) - 6 * 60
    return {
        "unsigned": (body, ctype),
        "wrong secret": (body, {**ctype, **sp.sign(body, "not-the-signing-secret")}),
        "stale timestamp": (body, {**ctype, **sp.sign(body, timestamp=stale)}),
        "future timestamp": (body, {**ctype, **sp.sign(body, timestamp=int(time.time()) + 6 * 60)}),
        "body changed after signing": (body.replace(b"U0ALICE", b"U0BOB"), headers),
        "signature of another body": (body, {**ctype, **sp.sign(b"{}")}),
        "timestamp not a number": (body, {**headers, "X-Slack-Request-Timestamp": "yesterday"}),
        "garbage body": (b"\xff\xfe{not json", ctype),
        "malformed JSON, unsigned": (b"{\"type\": ", {"Content-Type": "application/json"}),
        "JSON that is not an object": (b"[1, 2]", {"Content-Type": "application/json"}),
        "payload that is not an object": (b"payload=null", {"Content-Type": "application/x-www-form-urlencoded"}),
        "payload list, signed": (b"payload=%5B%5D", {"Content-Type": "application/x-www-form-urlencoded",
                                                       **sp.sign(b"payload=%5B%5D")}),
    }


def test_forged_unsigned_and_stale_requests_get_401_and_do_nothing(engine, fake_slack, samples):
    ingest_handbook(engine, samples)
    with running(engine, fake_slack) as rig:
        for path, (body, headers) in signed_requests(fake_slack).items():
            for name, (fake_body, fake_headers) in forgeries(body, headers).items():
                resp = rig.http.post(path, content=fake_body, headers=fake_headers)
                assert resp.status_code == 401, f"{path}, {name}: {resp.status_code} {resp.text}"
                assert "hotel" not in resp.text.lower()
    # Not one call reached Slack: nothing posted, no reaction, not even auth.test.
    assert [c.method for c in fake_slack.calls] == []
    assert fake_slack.messages("C0GENERAL") == []


def test_signed_request_is_accepted_where_a_forged_twin_was_refused(rig, samples):
    """The control for the test above: the very same event, correctly signed, is answered."""
    ingest_handbook(rig.engine, samples)
    mention = sp.app_mention("<@UIMPBOT> What is the hotel limit per night in Europe?")
    body, headers = sp.event_request(mention)
    forged = {**headers, **sp.sign(body, "not-the-signing-secret")}
    assert rig.http.post("/slack/events", content=body, headers=forged).status_code == 401
    assert rig.http.post("/slack/events", content=body, headers=headers).status_code == 200
    (answer,) = rig.posted("C0GENERAL")
    assert answer["thread_ts"] == mention["ts"]
    assert "180 EUR" in answer["text"]


CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"


def test_url_verification_challenge_is_answered_only_when_signed(rig):
    body = json.dumps({"token": sp.VERIFICATION_TOKEN, "challenge": CHALLENGE, "type": "url_verification"}).encode()
    headers = {"Content-Type": "application/json", **sp.sign(body)}
    resp = rig.http.post("/slack/events", content=body, headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"challenge": CHALLENGE}

    forged = {"Content-Type": "application/json", **sp.sign(body, "not-the-signing-secret")}
    resp = rig.http.post("/slack/events", content=body, headers=forged)
    assert resp.status_code == 401
    assert CHALLENGE not in resp.text


def test_a_retried_event_is_answered_once(engine, fake_slack, samples):
    ingest_handbook(engine, samples)
    mention = sp.app_mention("<@UIMPBOT> What is the hotel limit per night in Europe?")
    fake_slack.add_message("C0GENERAL", mention["text"], user="U0ALICE", ts=mention["ts"])
    with running(engine, fake_slack) as rig:
        assert rig.event(mention, event_id="Ev0RETRIED") == 200
        # Slack did not see the ack in time and delivers the same event again, twice.
        assert rig.event(mention, event_id="Ev0RETRIED", retry_num=1) == 200
        assert rig.event(mention, event_id="Ev0RETRIED", retry_num=2, retry_reason="http_error") == 200
        rig.posted("C0GENERAL")
    answers = [c.args for c in fake_slack.calls_to("chat.postMessage")]
    assert len(answers) == 1
    assert "180 EUR" in answers[0]["text"]
    assert len(fake_slack.calls_to("reactions.add")) == 1
    replies = [m for m in fake_slack.messages("C0GENERAL") if m.get("thread_ts") == mention["ts"]
               and m["ts"] != mention["ts"]]
    assert len(replies) == 1


def test_a_forged_event_cannot_use_up_a_real_events_id(rig, samples):
    """Deduplication runs after the signature check: a forger replaying an event id suppresses nothing."""
    ingest_handbook(rig.engine, samples)
    mention = sp.app_mention("<@UIMPBOT> What is the hotel limit per night in Europe?")
    body, headers = sp.event_request(mention, event_id="Ev0TARGET")
    forged = {**headers, **sp.sign(body, "not-the-signing-secret")}
    assert rig.http.post("/slack/events", content=body, headers=forged).status_code == 401
    assert rig.event(mention, event_id="Ev0TARGET") == 200
    (answer,) = rig.posted("C0GENERAL")
    assert "180 EUR" in answer["text"]

def test_a_new_event_with_the_same_text_is_not_mistaken_for_a_retry(rig, samples):
    """Deduplication is by event id: asking the same thing again is a new question."""
    ingest_handbook(rig.engine, samples)
    first = sp.app_mention("<@UIMPBOT> What is the hotel limit per night in Europe?")
    again = sp.app_mention(first["text"])
    assert rig.event(first) == 200
    rig.posted("C0GENERAL")
    assert rig.event(again) == 200
    answers = rig.posted("C0GENERAL", count=2)
    assert [a["thread_ts"] for a in answers] == [first["ts"], again["ts"]]


def test_rate_limited_answer_waits_for_retry_after_and_is_posted_once(engine, fake_slack, samples):
    ingest_handbook(engine, samples)
    mention = sp.app_mention("<@UIMPBOT> What is the hotel limit per night in Europe?")
    fake_slack.add_message("C0GENERAL", mention["text"], user="U0ALICE", ts=mention["ts"])
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    with running(engine, fake_slack) as rig:
        assert rig.event(mention) == 200
        rig.posted("C0GENERAL", count=2)
    first, second = fake_slack.calls_to("chat.postMessage")
    assert first.args == second.args  # the same answer, tried again
    assert second.at - first.at >= 1.0, "the retry came before Retry-After had passed"
    replies = [m for m in fake_slack.messages("C0GENERAL") if m.get("thread_ts") == mention["ts"]
               and m["ts"] != mention["ts"]]
    assert len(replies) == 1
    assert "180 EUR" in replies[0]["text"]
    # The hourglass came off once the answer was out.
    (parent,) = [m for m in fake_slack.messages("C0GENERAL") if m["ts"] == mention["ts"]]
    assert "reactions" not in parent


def test_an_oversized_body_is_refused_unread(engine, fake_slack):
    mention = sp.app_mention("<@UIMPBOT> " + "padding " * 400_000)  # over 3 MB, far beyond any Slack event
    body, headers = sp.event_request(mention)
    with running(engine, fake_slack) as rig:
        assert rig.http.post("/slack/events", content=body, headers=headers).status_code == 413
        chunked = rig.http.post("/slack/events", content=iter([body[:1 << 20]] * 4), headers=headers)
        assert chunked.status_code == 413
    assert [c.method for c in fake_slack.calls] == []

@pytest.mark.parametrize("path", PATHS)
def test_get_and_empty_posts_are_refused(rig, path):
    assert rig.http.get(path).status_code == 405
    assert rig.http.post(path, content=b"").status_code == 401
    assert [c.method for c in rig.slack.calls] == []
