"""👍/👎 on IMP's answers become feedback rows; removing the reaction takes the rating back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App

from bot.slack.deps import SlackDeps, bot_identity
from core.errors import NotFound
from core.models import Feedback

log = logging.getLogger(__name__)

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
        answer_id = deps.state.answer_at(item.get("channel", ""), item.get("ts", ""))
        if answer_id is None:
            return  # a reaction to some other message
        try:
            if event.get("type") == "reaction_added":
                deps.engine.record_feedback(Feedback(answer_id, user, item["channel"], rating, _when(event)))
            else:
                deps.engine.retract_feedback(answer_id, user, rating)
        except NotFound:
            log.warning("feedback on answer %s, which is no longer stored", answer_id)

    app.event("reaction_added")(ack=ack, lazy=[on_reaction])
    app.event("reaction_removed")(ack=ack, lazy=[on_reaction])
