"""👍/👎 on IMP's answers in Slack become feedback rows; removing the reaction takes the rating back.

Slack's part is reading the reaction (which emoji, on which message, by whom, when); recording it is
the chat layer's (bot.chat.feedback).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App

from bot.chat.feedback import react_to_answer
from bot.slack.deps import SlackDeps, bot_identity

RATINGS = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}


def rating_of(reaction: str) -> int | None:
    """+1 for 👍 and -1 for 👎, whatever the skin tone ("+1::skin-tone-3"); None for any other emoji."""
    return RATINGS.get((reaction or "").split("::", 1)[0])


def _when(event: dict[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(float(event.get("event_ts") or 0), UTC).replace(tzinfo=None)
    except (TypeError, ValueError):
        return datetime.now(UTC).replace(tzinfo=None)


def register(app: App, deps: SlackDeps) -> None:
    def ack(ack: Ack) -> None:
        ack()

    def on_reaction(event: dict, context: Any) -> None:
        rating = rating_of(event.get("reaction", ""))
        item = event.get("item") or {}
        user = event.get("user")
        if rating is None or item.get("type") != "message" or not user or user == bot_identity(context)[0]:
            return
        react_to_answer(deps.engine, deps.state, item.get("channel", ""), item.get("ts", ""), user, rating,
                        added=event.get("type") == "reaction_added", when=_when(event), source="slack")

    app.event("reaction_added")(ack=ack, lazy=[on_reaction])
    app.event("reaction_removed")(ack=ack, lazy=[on_reaction])
