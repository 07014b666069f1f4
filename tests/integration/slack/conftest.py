"""A running IMP (FastAPI app with the Slack front door) wired to a fake Slack on 127.0.0.1.

Slack's side of every flow is real HTTP: IMP's Web API calls go to ``FakeSlack``,
and the tests post signed events, commands and interactions to the app the way
Slack does. The sample documents are indexed in the scopes the tests need.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.api import create_app
from bot.chat.state import ChatState
from bot.slack.app import SlackBot, SlackOptions, create_slack_bot
from core.engine import Engine
from tests.fakes import slack_payloads as sp
from tests.fakes.slack_server import FakeSlack


@dataclass
class SlackRig:
    """What a Slack test drives: the app (through HTTP), the fake Slack, and the engine underneath."""

    http: TestClient
    slack: FakeSlack
    bot: SlackBot
    engine: Engine

    def event(self, inner: dict, **kw) -> int:
        body, headers = sp.event_request(inner, **kw)
        return self.http.post("/slack/events", content=body, headers=headers).status_code

    def command(self, command: str, text: str, **kw):
        kw.setdefault("response_url", self.slack.response_url("cmd"))
        body, headers = sp.command_request(command, text, **kw)
        return self.http.post("/slack/commands", content=body, headers=headers)

    def click(self, payload: dict):
        body, headers = sp.interaction_request(payload)
        return self.http.post("/slack/interactions", content=body, headers=headers)

    def posted(self, channel: str, timeout: float = 60.0, count: int = 1) -> list[dict]:
        """The JSON args of IMP's chat.postMessage calls to ``channel``, waiting for ``count`` of them."""
        calls = self.slack.wait_for("chat.postMessage", count, timeout=timeout,
                                    where=lambda c: c.args.get("channel") == channel)
        return [c.args for c in calls]


def blocks_text(args: dict) -> str:
    """Everything a person would read in a message's blocks (and its fallback text)."""
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return args.get("text", "") + "\n" + json.dumps(blocks, ensure_ascii=False)


def wait_until(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        fake.add_user("U0ALICE", "alice", real_name="Alice Jones")
        fake.add_user("U0BOB", "bob", real_name="Bob Smith")
        fake.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", "UIMPBOT"])
        fake.add_channel("G0SECRET", "secret", members=["U0ALICE", "UIMPBOT"], is_private=True)
        fake.add_channel("D0ALICE", is_im=True, user="U0ALICE")
        fake.add_channel("D0BOB", is_im=True, user="U0BOB")
        yield fake


def make_rig(engine: Engine, fake: FakeSlack, **options) -> tuple[SlackBot, TestClient]:
    opts = SlackOptions(bot_token=fake.token, signing_secret=sp.SECRET, api_url=fake.api_url,
                        company_scopes=options.pop("company_scopes", ["default"]), poll_s=0.2, **options)
    bot = create_slack_bot(engine, ChatState(engine.database), opts)
    return bot, TestClient(create_app(engine, slack=bot))


@pytest.fixture
def rig(engine, fake_slack):
    bot, http = make_rig(engine, fake_slack)
    with http:
        yield SlackRig(http, fake_slack, bot, engine)


@pytest.fixture
def indexed(engine, samples: Path):
    """The sample documents, in #general's scope."""
    engine.ingest([samples], scope="C0GENERAL")
    return samples
