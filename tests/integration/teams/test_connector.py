"""The bot's outbound Teams calls (bot.teams.token, bot.teams.connector) against a fake Bot Connector
and token endpoint over real HTTP: tokens, replies in threads, progress updates, throttling, members."""

from __future__ import annotations

import logging
import threading

import pytest
from microsoft_agents.activity import Activity

from bot.teams.connector import (
    MAX_TEXT_BYTES,
    ActivityTooLarge,
    ConnectorClient,
    ConnectorError,
    ConnectorRejected,
    ServiceUrlRefused,
    check_service_url,
    split_text,
)
from bot.teams.token import BotTokenProvider, TeamsTokenError
from core.errors import InvalidRequest
from tests.fakes.bot_connector import SCOPE, FakeBotConnector
from tests.fakes.net import free_port

CHANNEL = "19:general0123@thread.tacv2;messageid=1699999999000"  # a channel thread, as Teams names it
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}


def message(text: str) -> Activity:
    return Activity(type="message", text=text, text_format="markdown")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake():
    with FakeBotConnector() as f:
        f.add_conversation(CHANNEL, [{"id": "29:ann", "name": "Ann", "aadObjectId": "aad-ann"}])
        yield f


@pytest.fixture
def tokens(fake):
    provider = BotTokenProvider(fake.app_id, fake.app_secret, token_url=fake.token_url)
    yield provider
    provider.close()


@pytest.fixture
def connector(tokens):
    client = ConnectorClient(tokens, allowed_hosts=("127.0.0.1",), **FAST)
    yield client
    client.close()


def test_token_is_fetched_once_with_the_client_credentials_grant_and_reused(fake, connector):
    for i in range(3):
        connector.send(fake.service_url, CHANNEL, message(f"note {i}"))
    [grant] = fake.calls_to("token")
    assert grant.body == {"grant_type": "client_credentials", "client_id": fake.app_id,
                          "client_secret": fake.app_secret, "scope": SCOPE}
    assert [c.headers["authorization"] for c in fake.calls_to("send")] == [f"Bearer {fake.issued[0]}"] * 3
    assert [a["text"] for a in fake.activities(CHANNEL)] == ["note 0", "note 1", "note 2"]


def test_token_is_refreshed_shortly_before_it_expires(fake):
    clock = Clock()
    provider = BotTokenProvider(fake.app_id, fake.app_secret, token_url=fake.token_url, clock=clock)
    first = provider.token()
    clock.now += 3600 - 301  # still more than the 300 s margin left
    assert provider.token() == first and provider.fetches == 1
    clock.now += 2  # inside the margin: a new token before the old one lapses
    second = provider.token()
    assert second != first and second == fake.issued[1] and len(fake.calls_to("token")) == 2


def test_concurrent_callers_share_one_token_fetch(fake, tokens):
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(tokens.token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.calls_to("token")) == 1 and set(got) == {fake.issued[0]}


def test_a_401_refreshes_the_token_once_and_the_call_succeeds(fake, connector):
    connector.send(fake.service_url, CHANNEL, message("before"))
    fake.revoke_tokens()  # the connector stops accepting the cached token
    connector.send(fake.service_url, CHANNEL, message("after"))
    sends = fake.calls_to("send")
    assert [c.status for c in sends] == [201, 401, 201]
    assert sends[2].headers["authorization"] == f"Bearer {fake.issued[1]}"
    assert [a["text"] for a in fake.activities(CHANNEL)] == ["before", "after"]


def test_a_second_401_is_a_typed_error_not_a_loop(fake, connector):
    fake.fail_next(5, 401)
    with pytest.raises(ConnectorRejected) as err:
        connector.send(fake.service_url, CHANNEL, message("x"))
    assert err.value.status == 401
    assert len(fake.calls_to("send")) == 2 and len(fake.calls_to("token")) == 2
    assert fake.activities(CHANNEL) == []


def test_a_reply_lands_in_the_thread_with_reply_to_id(fake, connector):
    new_id = connector.reply(fake.service_url, CHANNEL, "1699999999000", message("**Answer** with [1]"))
    [call] = fake.calls_to("reply")
    assert call.conversation_id == CHANNEL and call.activity_id == "1699999999000"
    assert "%3B" in call.path and ";" not in call.path  # the conversation id travels percent-encoded
    [stored] = fake.activities(CHANNEL)
    assert stored["id"] == new_id and stored["replyToId"] == "1699999999000"
    assert stored["text"] == "**Answer** with [1]" and stored["textFormat"] == "markdown"


def test_progress_updates_edit_the_same_activity_and_delete_removes_it(fake, connector):
    progress = connector.send(fake.service_url, CHANNEL, message("Transcribing… 0%"))
    for pct in (40, 100):
        connector.update(fake.service_url, CHANNEL, progress, message(f"Transcribing… {pct}%"))
    [shown] = fake.activities(CHANNEL)
    assert shown["id"] == progress and shown["text"] == "Transcribing… 100%" and shown["edited"]
    assert [c.activity_id for c in fake.calls_to("update")] == [progress, progress]
    connector.delete(fake.service_url, CHANNEL, progress)
    assert fake.activities(CHANNEL) == []


def test_a_429_is_waited_out_for_its_retry_after_and_then_succeeds(fake, connector):
    fake.fail_next(1, 429, retry_after="1")
    new_id = connector.reply(fake.service_url, CHANNEL, "1699999999000", message("throttled once"))
    first, second = fake.calls_to("reply")
    assert (first.status, second.status) == (429, 201)
    assert second.at - first.at >= 0.9  # Retry-After: 1 was honoured
    assert [a["id"] for a in fake.activities(CHANNEL)] == [new_id]


def test_a_long_retry_after_is_capped_and_412_throttling_is_retried(fake, tokens):
    client = ConnectorClient(tokens, allowed_hosts=("127.0.0.1",), max_retry_after_s=0.2, **FAST)
    fake.fail_next(1, 429, retry_after="3600")
    fake.fail_next(1, 412)
    client.send(fake.service_url, CHANNEL, message("eventually"))
    calls = fake.calls_to("send")
    assert [c.status for c in calls] == [429, 412, 201]
    assert calls[1].at - calls[0].at < 30  # not the hour the server asked for
    client.close()


def test_persistent_5xx_gives_up_after_the_bound_with_a_clear_error(fake, connector):
    fake.fail_next(10, 503)
    with pytest.raises(ConnectorError) as err:
        connector.send(fake.service_url, CHANNEL, message("never"))
    assert err.value.status == 503 and err.value.attempts == 4
    assert "kept failing" in err.value.detail and "4 attempt" in err.value.detail
    assert len(fake.calls_to("send")) == 4 and fake.activities(CHANNEL) == []


def test_a_transient_5xx_is_retried(fake, connector):
    fake.fail_next(2, 502)
    connector.send(fake.service_url, CHANNEL, message("third time"))
    assert [c.status for c in fake.calls_to("send")] == [502, 502, 201]


def test_an_unreachable_connector_is_retried_then_reported(fake, connector):
    closed = f"http://127.0.0.1:{free_port()}/teams/"
    with pytest.raises(ConnectorError, match="unreachable") as err:
        connector.send(closed, CHANNEL, message("x"))
    assert err.value.attempts == 4 and err.value.status is None


def test_other_4xx_raise_at_once_with_the_connector_code(fake, connector, tokens):
    with pytest.raises(ConnectorRejected) as err:
        connector.send(fake.service_url, "19:gone@thread.tacv2", message("x"))
    assert err.value.status == 404 and "ConversationNotFound" in err.value.detail
    assert len(fake.calls_to("send")) == 1
    lax = ConnectorClient(tokens, allowed_hosts=("127.0.0.1",), max_activity_bytes=10**6, **FAST)
    with pytest.raises(ConnectorRejected) as err:  # the fake refuses over 28 KB, as Teams does
        lax.send(fake.service_url, CHANNEL, message("x" * 40_000))
    assert err.value.status == 413 and "MessageSizeTooBig" in err.value.detail
    lax.close()


def test_an_oversized_activity_is_refused_before_sending_and_split_text_fits(fake, connector):
    with pytest.raises(ActivityTooLarge):
        connector.send(fake.service_url, CHANNEL, message("é" * 20_000))
    assert fake.calls_to("send") == []
    long = "\n\n".join(f"Paragraph {i}: " + "word " * 400 for i in range(30))
    parts = split_text(long)
    assert len(parts) > 1 and all(len(p.encode()) <= MAX_TEXT_BYTES for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(long.split())
    for part in parts:
        connector.send(fake.service_url, CHANNEL, message(part))
    assert [a["text"] for a in fake.activities(CHANNEL)] == parts


HOSTILE = [
    "https://evil.example.com/",
    "https://smba.trafficmanager.net.evil.example/",
    "https://evilsmba.trafficmanager.net/",
    "https://x.botframework.com.evil.example/",
    "http://smba.trafficmanager.net/amer/",
    "https://smba.trafficmanager.net@evil.example/",
    "https://evil.example#@smba.trafficmanager.net/",
    "https://evil.example\\@smba.trafficmanager.net/",
    "https://smba.trafficmanager.net/amer/?next=https://evil.example",
    "https://smba.trafficmanager.net./amer/",
    "ftp://smba.trafficmanager.net/",
    "",
]


@pytest.mark.parametrize("service_url", HOSTILE)
def test_a_service_url_off_the_allow_list_is_refused_before_anything_is_sent(fake, service_url):
    tokens = BotTokenProvider(fake.app_id, fake.app_secret, token_url=fake.token_url)
    client = ConnectorClient(tokens)  # production allow-list
    with pytest.raises(ServiceUrlRefused):
        client.reply(service_url, CHANNEL, "1", message("secret answer"))
    with pytest.raises(ServiceUrlRefused):
        client.members(service_url, CHANNEL)
    assert fake.calls == []  # not even a token was fetched
    tokens.close()


def test_an_unlisted_loopback_service_url_reaches_nothing(fake, tokens):
    with FakeBotConnector() as other:
        client = ConnectorClient(tokens, allowed_hosts=("127.0.0.1",), **FAST)
        with pytest.raises(ServiceUrlRefused):  # "localhost" is loopback but not on the list
            client.send(other.service_url.replace("127.0.0.1", "localhost"), CHANNEL, message("x"))
        assert other.calls == [] and fake.calls == []
        client.close()


def test_teams_service_urls_are_accepted_as_they_come():
    allowed = ("smba.trafficmanager.net", ".botframework.com", ".teams.microsoft.com")
    assert check_service_url("https://smba.trafficmanager.net/amer/", allowed) == \
        "https://smba.trafficmanager.net/amer/"
    assert check_service_url("https://webchat.botframework.com", allowed) == "https://webchat.botframework.com/"
    assert check_service_url("https://smba.infra.gcc.teams.microsoft.com/teams", allowed) == \
        "https://smba.infra.gcc.teams.microsoft.com/teams/"


def test_members_are_listed_page_by_page_and_one_member_is_looked_up(fake, connector):
    people = [{"id": f"29:user{i:03}", "name": f"User {i}", "aadObjectId": f"aad-{i}"} for i in range(120)]
    fake.add_conversation("19:team@thread.tacv2", people)
    members = connector.members(fake.service_url, "19:team@thread.tacv2", page_size=50)
    assert [m.id for m in members] == [p["id"] for p in people]
    assert members[7].aad_object_id == "aad-7"
    pages = fake.calls_to("pagedmembers")
    assert len(pages) == 3 and [c.query.get("pageSize") for c in pages] == ["50"] * 3
    assert "continuationToken" not in pages[0].query and all("continuationToken" in c.query for c in pages[1:])
    assert connector.member(fake.service_url, "19:team@thread.tacv2", "29:user042").name == "User 42"
    assert connector.member(fake.service_url, "19:team@thread.tacv2", "29:stranger") is None
    with pytest.raises(ConnectorError, match="more than 100 members"):
        connector.members(fake.service_url, "19:team@thread.tacv2", page_size=50, max_members=100)


def test_a_personal_conversation_is_created_for_proactive_messages(fake, connector):
    created = connector.create_personal_conversation(
        fake.service_url, bot_id=fake.bot_id, user_id="29:ann", tenant_id=fake.tenant_id,
        activity=message("Your minutes are being written"))
    [call] = fake.calls_to("create")
    assert call.body["bot"] == {"id": fake.bot_id} and call.body["members"] == [{"id": "29:ann"}]
    assert call.body["channelData"] == {"tenant": {"id": fake.tenant_id}} and call.body["isGroup"] is False
    connector.update(fake.service_url, created.id, created.activity_id, message("Minutes are ready"))
    assert [a["text"] for a in fake.activities(created.id)] == ["Minutes are ready"]


def test_token_endpoint_failures_are_typed_and_transient_ones_retried(fake):
    fake.fail_next(1, 503, target="token")
    ok = BotTokenProvider(fake.app_id, fake.app_secret, token_url=fake.token_url)
    assert ok.token() == fake.issued[0] and len(fake.calls_to("token")) == 2
    wrong = BotTokenProvider(fake.app_id, "not-the-secret", token_url=fake.token_url)
    with pytest.raises(TeamsTokenError, match="invalid_client"):
        wrong.token()
    with pytest.raises(InvalidRequest):
        BotTokenProvider(fake.app_id, fake.app_secret, token_url="http://login.example.com/token")


def test_the_secret_and_tokens_never_reach_the_logs(fake, connector, tokens, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[str] = [repr(tokens)]
    connector.send(fake.service_url, CHANNEL, message("one"))
    fake.revoke_tokens()
    fake.fail_next(1, 429, retry_after="0")
    connector.send(fake.service_url, CHANNEL, message("two"))
    fake.fail_next(10, 500)
    with pytest.raises(ConnectorError) as err:
        connector.send(fake.service_url, CHANNEL, message("three"))
    errors.append(str(err.value))
    wrong = BotTokenProvider(fake.app_id, "wrong-secret-zz9", token_url=fake.token_url)
    with pytest.raises(TeamsTokenError) as err:
        wrong.token()  # the fake echoes the wrong secret in its error_description
    errors.append(str(err.value))
    assert len(fake.issued) == 2 and "retrying" in caplog.text and "fetched the bot's" in caplog.text
    for secret in [fake.app_secret, "wrong-secret-zz9", *fake.issued]:
        assert secret not in caplog.text
        assert all(secret not in e for e in errors)
