"""What the Teams adapter posts, as Bot Framework activities: text, cards, typing; and where it goes.

A ``Where`` is one conversation (its service URL, its id, and the message to reply to, when replies go
in a channel thread); ``say``, ``show`` and ``typing`` post into it through the connector. Text is
neutralised like card text (bot/teams/cards.py): nothing a document, a model or a person wrote can
form a mention or a link IMP did not write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from microsoft_agents.activity import Activity

from bot.teams.cards import Card, attachment, neutral
from bot.teams.connector import ConnectorClient, split_text


@dataclass(frozen=True)
class Where:
    service_url: str
    conversation_id: str  # as Teams sent it (a channel thread's carries ";messageid=")
    reply_to: str | None = None  # the message replies answer (a channel thread's root); None: top level

    def as_data(self) -> dict[str, Any]:
        return {"service_url": self.service_url, "conversation": self.conversation_id, "reply_to": self.reply_to}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Where:
        return cls(str(data["service_url"]), str(data["conversation"]), data.get("reply_to") or None)


def text_activity(text: str) -> Activity:
    return Activity(type="message", text=text, text_format="markdown")


def card_activity(card: Card, fallback: str = "") -> Activity:
    return Activity.model_validate({"type": "message", "text": fallback or None, "attachments": [attachment(card)]})


def post(connector: ConnectorClient, where: Where, activity: Activity) -> str | None:
    """Send ``activity`` into ``where`` (as a reply when it names a message); the new message's id."""
    if where.reply_to:
        return connector.reply(where.service_url, where.conversation_id, where.reply_to, activity)
    return connector.send(where.service_url, where.conversation_id, activity)


def say(connector: ConnectorClient, where: Where, text: str) -> list[str]:
    """Post plain text (over several messages if Teams' size limit needs it); the ids of the messages."""
    ids = []
    for part in split_text(neutral(text)):
        message_id = post(connector, where, text_activity(part))
        if message_id:
            ids.append(message_id)
    return ids


def typing(connector: ConnectorClient, where: Where) -> None:
    connector.send(where.service_url, where.conversation_id, Activity(type="typing"))
