"""The fake Slack behaves like Slack, as seen through the real slack_sdk WebClient."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.fakes import slack_payloads as sp
from tests.fakes.slack_server import FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        slack.add_user("U0ALICE", "alice", real_name="Alice A", display_name="ali")
        slack.add_user("U0BOB", "bob")
        slack.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", slack.bot_user_id])
        slack.add_channel("G0SECRET", "secret", members=["U0ALICE", slack.bot_user_id], is_private=True)
        slack.add_channel("C0OTHER", "other", members=["U0BOB"])
        slack.add_channel("D0ALICE", is_im=True, user="U0ALICE")
        yield slack


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=fake.token, base_url=fake.api_url)


def test_auth_test_and_bad_token(fake: FakeSlack, client: WebClient) -> None:
    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UIMPBOT", "BIMPBOT", "T0TEST")
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=fake.api_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
    assert [c.method for c in fake.calls] == ["auth.test", "auth.test"]
    assert fake.calls[0].headers["Authorization"] == f"Bearer {fake.token}"


def test_post_then_history_and_replies(fake: FakeSlack, client: WebClient) -> None:
    parent = fake.add_message("C0GENERAL", "what is our refund policy?", user="U0ALICE")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*30 days*"}}]
    reply = client.chat_postMessage(channel="C0GENERAL", text="30 days", blocks=blocks, thread_ts=parent)
    top = client.chat_postMessage(channel="C0GENERAL", text="hello all")
    assert float(parent) < float(reply["ts"]) < float(top["ts"])
    assert fake.calls_to("chat.postMessage")[0].args["blocks"] == blocks  # a JSON body: lists stay lists

    history = client.conversations_history(channel="C0GENERAL")["messages"]
    assert [m["text"] for m in history] == ["hello all", "what is our refund policy?"]  # newest first, no replies
    assert history[1]["reply_count"] == 1
    replies = client.conversations_replies(channel="C0GENERAL", ts=parent)["messages"]
    assert [m["text"] for m in replies] == ["what is our refund policy?", "30 days"]
    assert replies[1]["blocks"] == blocks and replies[1]["bot_id"] == "BIMPBOT"

    client.chat_update(channel="C0GENERAL", ts=top["ts"], text="hello everyone")
    client.reactions_add(channel="C0GENERAL", timestamp=parent, name="eyes")
    with pytest.raises(SlackApiError, match="already_reacted"):
        client.reactions_add(channel="C0GENERAL", timestamp=parent, name="eyes")
    client.chat_delete(channel="C0GENERAL", ts=reply["ts"])
    texts = [(m["text"], m.get("reactions")) for m in fake.messages("C0GENERAL")]
    assert texts == [("what is our refund policy?", [{"name": "eyes", "users": ["UIMPBOT"], "count": 1}]),
                     ("hello everyone", None)]

    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel="C0OTHER", text="hi")
    dm = client.chat_postMessage(channel="U0ALICE", text="hi alice")  # a user id opens their DM
    assert dm["channel"] == "D0ALICE"
    assert client.chat_postEphemeral(channel="C0GENERAL", user="U0BOB", text="psst")["message_ts"]
    assert len(fake.messages("C0GENERAL")) == 2
    fake.wait_for("chat.postEphemeral", timeout=1)
    with pytest.raises(AssertionError, match="chat.postEphemeral"):
        fake.wait_for("chat.postEphemeral", count=2, timeout=0.1)


def test_users_info_marks_guests_and_people_of_other_organisations(fake: FakeSlack, client: WebClient) -> None:
    fake.add_user("U0GUEST", "gus", guest="multi")
    fake.add_user("U0SOLO", "sol", guest="single")
    fake.add_user("U0EXT", "erin", team_id="T0OTHER")
    member, guest, solo, ext = (client.users_info(user=u)["user"] for u in ("U0ALICE", "U0GUEST", "U0SOLO", "U0EXT"))
    assert (member["team_id"], member["is_restricted"], member["is_ultra_restricted"]) == ("T0TEST", False, False)
    assert "is_stranger" not in member
    assert (guest["is_restricted"], guest["is_ultra_restricted"]) == (True, False)
    assert (solo["is_restricted"], solo["is_ultra_restricted"]) == (True, True)
    assert (ext["team_id"], ext["is_stranger"]) == ("T0OTHER", True)
    fake.add_channel("C0SHARED", "partners", members=["U0ALICE", "U0EXT"], is_ext_shared=True)
    assert client.conversations_info(channel="C0SHARED")["channel"]["is_ext_shared"] is True
    assert client.conversations_info(channel="C0GENERAL")["channel"]["is_ext_shared"] is False


def test_rate_limit_then_retry_and_scripted_failure(fake: FakeSlack, client: WebClient) -> None:
    fake.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0GENERAL", text="x")
    assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "7"

    fake.rate_limit("chat.postMessage", retry_after=0)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    assert client.chat_postMessage(channel="C0GENERAL", text="x")["ok"]
    assert len(fake.calls_to("chat.postMessage")) == 3

    fake.fail("users.info", "fatal_error", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError, match="fatal_error"):
            client.users_info(user="U0ALICE")
    user = client.users_info(user="U0ALICE")["user"]
    assert (user["real_name"], user["profile"]["display_name"]) == ("Alice A", "ali")
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="U0NOBODY")
    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("emoji.list")


def test_files_upload_v2_and_download(fake: FakeSlack, client: WebClient) -> None:
    parent = fake.add_message("C0GENERAL", "minutes please", user="U0ALICE")
    done = client.files_upload_v2(channel="C0GENERAL", thread_ts=parent, content=b"# Minutes\n",
                                  filename="minutes.md", title="Minutes", initial_comment="here you go")
    file = done["file"]
    assert fake.uploads[file["id"]] == b"# Minutes\n"
    assert (file["title"], file["size"], file["channels"]) == ("Minutes", 10, ["C0GENERAL"])
    thread = client.conversations_replies(channel="C0GENERAL", ts=parent)["messages"]
    assert thread[1]["text"] == "here you go" and thread[1]["files"][0]["id"] == file["id"]
    assert client.files_info(file=file["id"])["file"]["name"] == "minutes.md"

    shared = fake.add_file("F0DOC", "plan.pdf", b"%PDF-1.4 plan", mimetype="application/pdf", filetype="pdf",
                           channels=["C0GENERAL", "G0SECRET", "D0ALICE"])
    assert (shared["channels"], shared["groups"], shared["ims"]) == (["C0GENERAL"], ["G0SECRET"], ["D0ALICE"])
    assert "/files/U0ALICE/F0DOC/" in shared["permalink"]
    ok = httpx.get(shared["url_private_download"], headers={"Authorization": f"Bearer {fake.token}"})
    assert ok.status_code == 200 and ok.content == b"%PDF-1.4 plan"
    anonymous = httpx.get(shared["url_private_download"], follow_redirects=True)
    assert anonymous.status_code == 200 and b"<html" in anonymous.content
    assert anonymous.history[0].status_code == 302
    assert len(fake.calls_to("download:F0DOC")) == 2

    fake.delete_file("F0DOC")
    with pytest.raises(SlackApiError, match="file_not_found"):
        client.files_info(file="F0DOC")
    gone = httpx.get(shared["url_private_download"], headers={"Authorization": f"Bearer {fake.token}"})
    assert gone.status_code == 404


def test_pagination_with_limit_one(fake: FakeSlack, client: WebClient) -> None:
    members = [m for page in client.conversations_members(channel="C0GENERAL", limit=1) for m in page["members"]]
    assert members == ["U0ALICE", "U0BOB", "UIMPBOT"]
    assert len(fake.calls_to("conversations.members")) == 3

    pages = client.users_conversations(user="U0ALICE", types="public_channel,private_channel,mpim,im", limit=1)
    ids = [c["id"] for page in pages for c in page["channels"]]
    assert ids == ["C0GENERAL", "G0SECRET", "D0ALICE"]
    public = client.users_conversations(user="U0BOB", types="public_channel")["channels"]
    assert [(c["id"], c["is_member"]) for c in public] == [("C0GENERAL", True), ("C0OTHER", False)]

    for i in range(5):
        fake.add_message("C0GENERAL", f"m{i}", user="U0BOB")
    history = [m["text"] for page in client.conversations_history(channel="C0GENERAL", limit=2)
               for m in page["messages"]]
    assert history == ["m4", "m3", "m2", "m1", "m0"]


def test_response_url_and_socket_mode_token(fake: FakeSlack) -> None:
    url = fake.response_url("click")
    assert httpx.post(url, json={"text": "done", "replace_original": True}).json() == {"ok": True}
    assert fake.wait_for("response_url:click")[0].args["text"] == "done"

    app_client = WebClient(token="xapp-test-token", base_url=fake.api_url)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        app_client.apps_connections_open(app_token="xapp-test-token")
    fake.socket_url = "ws://127.0.0.1:1/socket"
    assert app_client.apps_connections_open(app_token="xapp-test-token")["url"] == fake.socket_url
    with pytest.raises(SlackApiError, match="invalid_auth"):
        app_client.auth_test()


def test_signed_payloads_verify() -> None:
    verifier = SignatureVerifier(sp.SECRET)
    other = SignatureVerifier("another-secret")
    body, headers = sp.event_request(sp.app_mention("<@UIMPBOT> hi"), retry_num=1)
    assert verifier.is_valid_request(body, headers) and not other.is_valid_request(body, headers)
    envelope = json.loads(body)
    assert envelope["type"] == "event_callback" and envelope["event"]["type"] == "app_mention"
    assert headers["X-Slack-Retry-Num"] == "1"

    body, headers = sp.command_request("/imp", "ask what?", response_url="http://x/r")
    assert verifier.is_valid_request(body, headers) and not other.is_valid_request(body, headers)
    click = sp.block_action("feedback", "up", response_url="http://x/r")
    body, headers = sp.interaction_request(click)
    assert verifier.is_valid_request(body, headers) and not other.is_valid_request(body, headers)

    stale_body, stale = sp.event_request(sp.message("hi"), timestamp=1_600_000_000)
    assert not verifier.is_valid_request(stale_body, stale)
    first, second = sp.message("a")["ts"], sp.message("b")["ts"]
    assert float(first) < float(second)
