"""The two ways IMP serves Slack, as real processes: `imp slack` (Socket Mode) and `imp serve` (HTTP).

Slack's side is ours and real: FakeSlack answers the Web API over HTTP, FakeSocketMode
is the WebSocket that `apps.connections.open` points the bot at, and HTTP events are
signed with the signing secret and POSTed to the running server. The handbook is
indexed once with `imp ingest --scope C0GENERAL`; each server gets its own copy of
that data folder. Three servers (Socket Mode, HTTP with Slack, HTTP without) start
together and each is shared by the checks on it; refused configurations exit at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes import slack_payloads as sp
from tests.fakes.net import free_port
from tests.fakes.slack_server import Call, FakeSlack
from tests.fakes.socket_mode_server import FakeSocketMode
from tests.integration.slack.conftest import blocks_text, wait_until

ROOT = Path(__file__).resolve().parents[3]
IMP = Path(sys.executable).with_name("imp")
HANDBOOK = ROOT / "samples" / "handbook.md"
APP_TOKEN = "xapp-test-token"
API_TOKEN = "rest-api-token-for-the-serving-tests"
QUESTION = "How much are hotel costs reimbursed per night in Europe?"
HOTEL = "180 EUR"
START_S = 180.0  # a cold start on 2 busy cores: imports and models


def _env(data: Path, **settings: str) -> dict[str, str]:
    """A clean environment: no IMP_* or proxy settings from the shell, then ours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMP_") and "proxy" not in k.lower()}
    return {**env, "IMP_DATA_DIR": str(data), **settings}


def _imp(data: Path, *args: str, timeout: float = 300, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(IMP), *args], cwd=ROOT, env=_env(data, **settings), capture_output=True,
                          text=True, timeout=timeout)


def _workspace(fake: FakeSlack) -> FakeSlack:
    fake.add_user("U0ALICE", "alice", real_name="Alice Jones")
    fake.add_user("U0BOB", "bob", real_name="Bob Smith")
    fake.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", "UIMPBOT"])
    fake.add_channel("D0ALICE", is_im=True, user="U0ALICE")
    return fake


def _mention(fake: FakeSlack, question: str = QUESTION, user: str = "U0ALICE") -> dict:
    """Alice's @IMP message in #general: in the channel's history, as Slack has it before the event."""
    inner = sp.app_mention(f"<@UIMPBOT> {question}", user=user, channel="C0GENERAL")
    fake.add_message("C0GENERAL", inner["text"], user=user, ts=inner["ts"])
    return inner


def _in_thread(channel: str, ts: str):
    return lambda c: c.args.get("channel") == channel and str(c.args.get("thread_ts")) == ts


def _on_message(channel: str, ts: str):
    return lambda c: c.args.get("channel") == channel and str(c.args.get("timestamp")) == ts


@dataclass
class Served:
    """A running `imp` process and the fakes it talks to."""

    proc: subprocess.Popen
    slack: FakeSlack
    log: Path
    socket: FakeSocketMode | None = None
    base: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def wait_for(self, method: str, where, count: int = 1, timeout: float = 120.0) -> list[Call]:
        """FakeSlack.wait_for, failing with the server's log."""
        try:
            return self.slack.wait_for(method, count, timeout=timeout, where=where)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- imp log ---\n{self.log_tail()}") from None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def _start(args: list[str], data: Path, log: Path, **settings: str) -> subprocess.Popen:
    with open(log, "wb") as out:  # a file, not a pipe: a chatty log never blocks the server
        return subprocess.Popen([str(IMP), *args], cwd=ROOT, env=_env(data, IMP_LOG_LEVEL="INFO", **settings),
                                stdout=out, stderr=subprocess.STDOUT)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def _ingest(data: Path) -> None:
    """The handbook indexed in #general's scope, by `imp ingest`."""
    proc = _imp(data, "ingest", str(HANDBOOK), "--scope", "C0GENERAL", "--json")
    assert proc.returncode == 0, proc.stderr
    [doc] = json.loads(proc.stdout)["documents"]
    assert doc["status"] == "indexed" and doc["chunks"] > 0


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, Served]]:
    """The three servers, started together so their imports and model loads overlap:
    `imp serve` without Slack settings ("plain"), and once the handbook is indexed,
    `imp slack` ("socket") and `imp serve` with Slack ("http") on copies of that data."""
    base = tmp_path_factory.mktemp("serving")
    started: list[Served] = []
    with FakeSlack() as socket_slack, FakeSocketMode() as sock, FakeSlack() as http_slack, FakeSlack() as not_used:
        try:
            port = free_port()
            plain = Served(_start(["serve", "--port", str(port)], base / "plain", base / "plain.log"), not_used,
                           base / "plain.log", base=f"http://127.0.0.1:{port}")
            started.append(plain)
            _ingest(base / "indexed")
            for name in ("socket", "http"):
                shutil.copytree(base / "indexed", base / name)

            _workspace(socket_slack).socket_url = sock.url
            socket = Served(_start(["slack"], base / "socket", base / "socket.log",
                                   IMP_SLACK__BOT_TOKEN=socket_slack.token, IMP_SLACK__APP_TOKEN=APP_TOKEN,
                                   IMP_SLACK__API_URL=socket_slack.api_url, IMP_SLACK__POLL_S="0.2"),
                            socket_slack, base / "socket.log", socket=sock)
            started.append(socket)

            _workspace(http_slack)
            port = free_port()
            # Serving Slack needs a token on the REST API: Slack's endpoints make the server reachable.
            http = Served(_start(["serve", "--port", str(port)], base / "http", base / "http.log",
                                 IMP_API__TOKEN=API_TOKEN,
                                 IMP_SLACK__BOT_TOKEN=http_slack.token, IMP_SLACK__SIGNING_SECRET=sp.SECRET,
                                 IMP_SLACK__API_URL=http_slack.api_url, IMP_SLACK__POLL_S="0.2"),
                          http_slack, base / "http.log", base=f"http://127.0.0.1:{port}")
            started.append(http)
            yield {"plain": plain, "socket": socket, "http": http}
        finally:
            for served in started:
                _kill(served.proc)


@pytest.fixture(scope="module")
def socket_bot(servers) -> Served:
    """`imp slack`, connected to the fake Socket Mode endpoint."""
    served = servers["socket"]
    assert served.socket is not None
    try:
        served.socket.wait_connected(START_S, alive=served.alive)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- imp log ---\n{served.log_tail()}") from None
    return served


@pytest.fixture(scope="module")
def http_bot(servers) -> Served:
    """`imp serve` with the Slack endpoints mounted, answering on its port."""
    _wait_up(servers["http"])
    return servers["http"]


def _wait_up(served: Served) -> None:
    deadline = time.monotonic() + START_S
    while True:
        if not served.alive():
            raise AssertionError(f"imp serve exited with {served.proc.returncode}:\n{served.log_tail()}")
        try:
            if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"imp serve did not come up in {START_S:.0f} s:\n{served.log_tail()}")
        time.sleep(0.2)


# ----- Socket Mode (`imp slack`) ------------------------------------------------------------------
def test_socket_mode_mention_is_acked_then_answered_once_in_its_thread(socket_bot):
    bot, sock = socket_bot, socket_bot.socket
    assert sock is not None
    mention = _mention(bot.slack)
    first = sock.event(mention, event_id="Ev0SOCKET0001")
    ack = sock.wait_ack(first)
    assert ack.payload is None  # an event's ack carries nothing back
    # Slack redelivers the same event when it thinks the ack was lost: acked again, answered once.
    retry = sock.event(mention, event_id="Ev0SOCKET0001", retry_attempt=1, retry_reason="timeout")
    sock.wait_ack(retry)

    [answer] = bot.wait_for("chat.postMessage", _in_thread("C0GENERAL", mention["ts"]))
    assert HOTEL in blocks_text(answer.args)
    assert "👍" in blocks_text(answer.args) or ":+1:" in blocks_text(answer.args)
    assert ack.at < answer.at  # acked before the answer was ready, not after the work
    # An hourglass on Alice's message while IMP works, gone once the answer is there.
    [working] = [c for c in bot.slack.calls_to("reactions.add") if _on_message("C0GENERAL", mention["ts"])(c)]
    assert working.args["name"] == "hourglass_flowing_sand" and working.at < answer.at
    bot.wait_for("reactions.remove", _on_message("C0GENERAL", mention["ts"]))
    [asked] = [m for m in bot.slack.messages("C0GENERAL") if m["ts"] == mention["ts"]]
    assert not asked.get("reactions")

    # A later, distinct question is answered too; by then a duplicate of the first would have shown.
    later = _mention(bot.slack, "What is the hotel limit per night in Europe?")
    sock.event(later)
    bot.wait_for("chat.postMessage", _in_thread("C0GENERAL", later["ts"]))
    assert len([c for c in bot.slack.calls_to("chat.postMessage") if _in_thread("C0GENERAL", mention["ts"])(c)]) == 1
    assert len([c for c in bot.slack.calls_to("reactions.add") if _on_message("C0GENERAL", mention["ts"])(c)]) == 1
    assert len(sock.acks_of(first)) == len(sock.acks_of(retry)) == 1


def test_socket_mode_ask_answers_privately_and_the_share_button_posts_it(socket_bot):
    bot, sock = socket_bot, socket_bot.socket
    assert sock is not None
    before = len(bot.slack.calls_to("chat.postMessage"))
    envelope = sock.command("/ask", QUESTION, response_url=bot.slack.response_url("ask"))
    sock.wait_ack(envelope)
    [reply] = bot.wait_for("response_url:ask", None)
    assert reply.args["response_type"] == "ephemeral"
    assert HOTEL in blocks_text(reply.args)
    buttons = [e for b in reply.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    [share] = [b for b in buttons if b["action_id"] == "imp_share_answer"]
    assert len(bot.slack.calls_to("chat.postMessage")) == before  # nothing public yet

    # Without a question the ack itself tells how to use it, and nothing else happens.
    usage = sock.wait_ack(sock.command("/ask", "  ", response_url=bot.slack.response_url("empty")))
    assert usage.payload is not None and "/ask QUESTION" in usage.payload["text"]

    click = sock.interactive(sp.block_action("imp_share_answer", share["value"], user="U0ALICE",
                                             channel="C0GENERAL", response_url=bot.slack.response_url("share")))
    sock.wait_ack(click)
    [shared] = bot.wait_for("chat.postMessage", lambda c: c.args.get("channel") == "C0GENERAL"
                            and not c.args.get("thread_ts"), count=1)
    assert HOTEL in blocks_text(shared.args) and "U0ALICE" in blocks_text(shared.args)
    bot.wait_for("response_url:share", lambda c: c.args.get("delete_original") is True)
    assert not bot.slack.calls_to("response_url:empty")


def test_socket_mode_moves_to_a_new_connection_when_slack_asks_and_keeps_answering(socket_bot):
    bot, sock = socket_bot, socket_bot.socket
    assert sock is not None
    opened, urls = sock.opened, len(bot.slack.calls_to("apps.connections.open"))
    sock.disconnect("refresh_requested")
    sock.wait_opened(opened + 1)
    wait_until(lambda: sock.live == 1, 30, "the old connection to close")
    assert len(bot.slack.calls_to("apps.connections.open")) == urls + 1  # a fresh URL, with the app token
    assert bot.slack.calls_to("apps.connections.open")[-1].headers.get("Authorization") == f"Bearer {APP_TOKEN}"

    mention = _mention(bot.slack)
    sock.wait_ack(sock.event(mention))
    [answer] = bot.wait_for("chat.postMessage", _in_thread("C0GENERAL", mention["ts"]))
    assert HOTEL in blocks_text(answer.args)


def test_socket_mode_bot_stops_cleanly_on_sigterm(socket_bot):
    sock = socket_bot.socket
    assert sock is not None and socket_bot.alive()
    opened = sock.opened
    rc = socket_bot.stop()
    assert rc == 0, socket_bot.log_tail()
    sock.wait_disconnected()
    assert sock.opened == opened  # it did not reconnect on its way out


# ----- HTTP (`imp serve`) --------------------------------------------------------------------------
def test_http_serve_acks_a_signed_mention_and_answers_in_its_thread(http_bot):
    forged_mention = _mention(http_bot.slack)
    body, headers = sp.event_request(forged_mention, secret="not-the-signing-secret")
    assert httpx.post(f"{http_bot.base}/slack/events", content=body, headers=headers, timeout=30).status_code == 401
    stale_mention = _mention(http_bot.slack)
    body, headers = sp.event_request(stale_mention, timestamp=int(time.time()) - 600)
    assert httpx.post(f"{http_bot.base}/slack/events", content=body, headers=headers, timeout=30).status_code == 401

    mention = _mention(http_bot.slack)
    body, headers = sp.event_request(mention)
    r = httpx.post(f"{http_bot.base}/slack/events", content=body, headers=headers, timeout=30)
    acked_at = time.monotonic()
    assert r.status_code == 200
    [answer] = http_bot.wait_for("chat.postMessage", _in_thread("C0GENERAL", mention["ts"]))
    assert HOTEL in blocks_text(answer.args)
    assert acked_at < answer.at  # the 200 came back before the answer was posted

    # The forged and stale requests did nothing: no reaction, no reply, and only the real answer exists.
    for fake_one in (forged_mention, stale_mention):
        assert not [c for c in http_bot.slack.calls if c.args.get("timestamp") == fake_one["ts"]
                    or str(c.args.get("thread_ts")) == fake_one["ts"]]
    assert len(http_bot.slack.calls_to("chat.postMessage")) == 1


def test_http_serve_stops_on_sigterm(http_bot):
    assert http_bot.alive()
    rc = http_bot.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert rc in (0, -signal.SIGTERM), http_bot.log_tail()


def test_http_serve_without_slack_settings_has_no_slack_endpoints(servers):
    plain = servers["plain"]
    _wait_up(plain)
    body, headers = sp.event_request(sp.app_mention(f"<@UIMPBOT> {QUESTION}"))
    assert httpx.post(f"{plain.base}/slack/events", content=body, headers=headers, timeout=30).status_code == 404
    assert httpx.get(f"{plain.base}/healthz", timeout=30).status_code == 200  # the REST API itself is up


# ----- refusing a configuration that cannot work -------------------------------------------------
SECRETS = ("IMP_SLACK__BOT_TOKEN", "IMP_SLACK__APP_TOKEN", "IMP_SLACK__SIGNING_SECRET")


@pytest.mark.parametrize("command, settings, named, why", [
    ("slack", {"IMP_SLACK__BOT_TOKEN": "xoxb-test-token"}, "IMP_SLACK__APP_TOKEN", "set"),
    ("serve", {"IMP_SLACK__BOT_TOKEN": "xoxb-test-token"}, "IMP_SLACK__SIGNING_SECRET", "set"),
    ("slack", {"IMP_SLACK__BOT_TOKEN": "changeme", "IMP_SLACK__APP_TOKEN": APP_TOKEN}, "IMP_SLACK__BOT_TOKEN",
     "placeholder"),
    # Slack itself refuses: the bot token pasted as the app-level token, a revoked bot token.
    ("slack", {"IMP_SLACK__BOT_TOKEN": "xoxb-test-token", "IMP_SLACK__APP_TOKEN": "xoxb-test-token"},
     "IMP_SLACK__APP_TOKEN", "not_allowed_token_type"),
    ("serve", {"IMP_SLACK__BOT_TOKEN": "xoxb-revoked-token", "IMP_SLACK__SIGNING_SECRET": sp.SECRET},
     "IMP_SLACK__BOT_TOKEN", "invalid_auth"),
], ids=["slack-without-app-token", "serve-without-signing-secret", "placeholder-bot-token",
        "bot-token-as-app-token", "revoked-bot-token"])
def test_a_configuration_that_cannot_work_is_refused_by_name(tmp_path, command, settings, named, why):
    with FakeSlack() as fake:
        # a refused configuration exits at once; one that is not refused would serve until the timeout
        proc = _imp(tmp_path / "data", command, timeout=120, IMP_SLACK__API_URL=fake.api_url, **settings)
    assert proc.returncode == 2, proc.stderr
    stderr = " ".join(proc.stderr.split())  # rich wraps long lines
    assert named in stderr and why in stderr
    assert "Traceback" not in stderr
    assert not [v for k, v in settings.items() if k in SECRETS and v in stderr]  # a reason, never the secret
