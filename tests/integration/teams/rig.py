"""What a Teams flow test drives: IMP's app with its Teams front door, over fakes of every Microsoft service.

The fake Bot Framework identity (tests/fakes/bot_identity.py) publishes signing keys made in the test; the
fake Bot Connector and token endpoint (tests/fakes/bot_connector.py) take IMP's replies, cards and member
lookups; the fake SharePoint (tests/fakes/sharepoint.py) serves dropped files, and the fake Microsoft Graph
(tests/fakes/graph.py) finds the files posted in channels and group chats there. Activities reach IMP's
FastAPI app at POST /api/messages with a real RS256 token, as Bot Framework sends them.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from bot.teams.bot import TeamsBot
from core.engine import Engine
from tests.fakes.bot_connector import FakeBotConnector
from tests.fakes.bot_identity import FakeBotIdentity
from tests.fakes.graph import FakeGraph
from tests.fakes.sharepoint import FakeFileHost

APP_ID = "9c2a3b4d-1e5f-4a6b-8c7d-0e1f2a3b4c5d"
TENANT = "5b1f3c0e-2d4a-4e6b-9f8c-1a2b3c4d5e6f"
SECRET = "imp-client-secret-value"
TEAM = "19:Xq2bR7tN8vL1kP0sJ3mW5yZ6aC4dE9fG@thread.tacv2"  # the team (its General channel's id)
TEAM_GROUP = "3f6e2a1b-9c8d-4e7f-a0b1-c2d3e4f5a6b7"  # the team's Microsoft 365 group (its files' drive in Graph)
PLANNING = "19:4a1b2c3d5e6f40718293a4b5c6d7e8f9@thread.tacv2"  # a standard channel of the team
PRIVATE = "19:7e8f9a0b1c2d43e5f6a7b8c9d0e1f2a3@thread.tacv2"  # a private channel: Megan only
MEGAN = "29:1GcS4EJYs0dZ5nWq2u7y3kLmN8pQrT6vX9zA1bC2dE3fG4hJ5kL6mN7pQ8rS9tU0vW1xY2zA3bC4dE5fG6hJ7k"
ADELE = "29:1Tb8fE2gH3jK4lM5nP6qR7sT8uV9wX0yZ1aB2cD3eF4gH5jK6lM7nP8qR9sT0uV1wX2yZ3aB4cD5eF6gH7jK8l"
GUEST = "29:1Zz9yY8xX7wW6vV5uU4tT3sS2rR1qQ0pP9oO8nN7mM6lL5kK4jJ3iI2hH1gG0fF9eE8dD7cC6bB5aA4zZ3yY2x"
PEOPLE = {MEGAN: ("Megan Bowen", "user"), ADELE: ("Adele Vance", "user"), GUEST: ("Gus Guest", "guest")}
_ids = itertools.count(1712345678901)


def aad(user: str) -> str:
    """The person's Entra object id, as Teams gives it beside their Teams id."""
    return f"aad-{user[-8:]}"


def member(user: str) -> dict[str, Any]:
    name, role = PEOPLE[user]
    return {"id": user, "name": name, "aadObjectId": aad(user), "userRole": role, "tenantId": TENANT}


def personal(user: str) -> str:
    return f"a:1{user[3:20]}"


@dataclass
class TeamsRig:
    http: TestClient
    bot: TeamsBot
    engine: Engine
    identity: FakeBotIdentity
    connector: FakeBotConnector
    files: FakeFileHost
    graph: FakeGraph | None = None
    sent: list[dict] = field(default_factory=list)

    # -- what Teams sends -------------------------------------------------------------------

    def token(self, **knobs: Any) -> str:
        return self.identity.token(APP_ID, self.connector.service_url, **knobs)

    def post(self, activity: dict[str, Any], *, authorization: str | None | object = ...) -> int:
        if authorization is ...:
            authorization = f"Bearer {self.token()}"
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = str(authorization)
        self.sent.append(activity)
        return self.http.post("/api/messages", content=json.dumps(activity), headers=headers).status_code

    def conversation(self, kind: str, channel: str | None = None, user: str = MEGAN,
                     channel_type: str | None = None) -> tuple[dict, dict]:
        """(conversation, channelData) of an activity in ``kind`` ("channel", "personal", "groupChat")."""
        if kind == "personal":
            return ({"conversationType": "personal", "tenantId": TENANT, "id": personal(user)},
                    {"tenant": {"id": TENANT}})
        if kind == "groupChat":
            return ({"conversationType": "groupChat", "isGroup": True, "tenantId": TENANT, "id": channel},
                    {"tenant": {"id": TENANT}})
        data = {"teamsChannelId": channel, "teamsTeamId": TEAM, "channel": {"id": channel},
                "team": {"id": TEAM, "name": "Launch", "aadGroupId": TEAM_GROUP}, "tenant": {"id": TENANT}}
        if channel_type:
            data["channel"]["type"] = channel_type
        return ({"conversationType": "channel", "isGroup": True, "tenantId": TENANT, "id": channel}, data)

    def message(self, text: str, *, kind: str = "channel", channel: str | None = PLANNING, user: str = MEGAN,
                mention: bool = True, attachments: list[dict] | None = None, channel_type: str | None = None,
                activity_id: str | None = None) -> dict[str, Any]:
        conversation, data = self.conversation(kind, channel, user, channel_type)
        activity_id = activity_id or str(next(_ids))
        entities = []
        if mention:
            text = f"<at>IMP</at> {text}"
            entities.append({"type": "mention", "text": "<at>IMP</at>",
                             "mentioned": {"id": f"28:{APP_ID}", "name": "IMP"}})
        if kind == "channel":
            conversation = dict(conversation, id=f"{channel};messageid={activity_id}")
        return {"type": "message", "id": activity_id, "timestamp": "2026-12-02T10:14:38.901Z",
                "serviceUrl": self.connector.service_url, "channelId": "msteams",
                "from": {"id": user, "name": PEOPLE[user][0], "aadObjectId": aad(user)},
                "conversation": conversation, "recipient": {"id": f"28:{APP_ID}", "name": "IMP"},
                "channelData": data, "textFormat": "plain", "text": text, "entities": entities,
                "attachments": attachments or []}

    def file(self, name: str, content: bytes, file_type: str) -> dict[str, Any]:
        url = self.files.add_file(name, content)
        unique = url.split("UniqueId=")[1].split("&")[0].replace("%7B", "").replace("%7D", "").replace("-", "")
        return {"contentType": "application/vnd.microsoft.teams.file.download.info", "name": name,
                "content": {"downloadUrl": url, "uniqueId": unique[:32], "fileType": file_type}}

    def shared(self, name: str, content: bytes, *, folder: str = "Planning", site: str = "sites/Launch",
               drive: str | None = None, **sharepoint: Any) -> dict[str, Any]:
        """A file posted in a channel or group chat, as Teams refers to it (a ``reference`` attachment to its
        place in SharePoint, by default in the team's site and on its drive; the path holds spaces as Teams
        writes it), known to the fake Graph. ``drive``: the drive that holds it (another team's, a OneDrive)."""
        assert self.graph is not None, "this rig has no fake Graph"
        url = f"https://contoso.sharepoint.com/{site}/Shared Documents/{folder}/{name}"
        self.graph.add_file(url, name, content, drive_id=drive, **sharepoint)
        return {"contentType": "reference", "contentUrl": url, "name": name, "id": str(uuid.uuid4()).upper()}

    def reaction(self, message_id: str, reaction: str, *, added: bool = True, user: str = MEGAN,
                 kind: str = "channel", channel: str | None = PLANNING) -> dict[str, Any]:
        conversation, data = self.conversation(kind, channel, user)
        key = "reactionsAdded" if added else "reactionsRemoved"
        return {"type": "messageReaction", "id": str(next(_ids)), "timestamp": "2026-12-02T10:15:00.000Z",
                "serviceUrl": self.connector.service_url, "channelId": "msteams",
                "from": {"id": user, "name": PEOPLE[user][0]}, "conversation": conversation,
                "recipient": {"id": f"28:{APP_ID}", "name": "IMP"}, "channelData": data,
                "replyToId": message_id, key: [{"type": reaction}]}

    def bot_added(self, channel: str = PLANNING) -> dict[str, Any]:
        conversation, data = self.conversation("channel", channel)
        data = dict(data, eventType="teamMemberAdded")
        return {"type": "conversationUpdate", "id": str(next(_ids)), "serviceUrl": self.connector.service_url,
                "channelId": "msteams", "from": {"id": MEGAN, "name": "Megan Bowen"}, "conversation": conversation,
                "recipient": {"id": f"28:{APP_ID}", "name": "IMP"}, "channelData": data,
                "membersAdded": [{"id": f"28:{APP_ID}"}]}

    # -- what IMP did ---------------------------------------------------------------------

    def messages(self, conversation: str) -> list[dict[str, Any]]:
        return [a for a in self.connector.activities(conversation) if a.get("type") == "message"]

    def wait_messages(self, conversation: str, count: int = 1, timeout: float = 60.0,
                      where: Any = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [a for a in self.messages(conversation) if where is None or where(a)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} message(s) in {conversation}: {found}")
            time.sleep(0.05)


def shown(activity: dict[str, Any]) -> str:
    """Everything a person reads in an activity: its text and its cards."""
    return (activity.get("text") or "") + "\n" + json.dumps(activity.get("attachments") or [], ensure_ascii=False)


def wait_until(check, timeout: float = 120.0, what: str = "condition"):
    """``check()``'s first truthy value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def answer_cards(rig: TeamsRig, conversation: str, count: int = 1, timeout: float = 120.0) -> list[dict]:
    """IMP's answer cards in ``conversation`` (an answer, or its reason for not answering)."""
    return rig.wait_messages(conversation, count, timeout,
                             where=lambda a: "Sources" in shown(a) or "no answer" in shown(a).lower()
                             or "React with" in shown(a))
