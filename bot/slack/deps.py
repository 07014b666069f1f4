"""What every Slack listener is given, and the replies they share (answers, errors)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.chat import replies
from bot.chat.state import ChatState
from bot.chat.tasks import FollowUps
from bot.slack.blocks import answer_blocks, answer_text, batches, escape
from bot.chat.recent import RecentEvents
from bot.slack.scopes import ScopeResolver
from core.engine import Engine
from core.models import Answer

log = logging.getLogger(__name__)

# What a question that waited too long for a worker gets (SlackOptions.max_wait_s).
BUSY = (":hourglass: I have more questions than I can answer right now, so I did not get to this one in time. "
        "Please ask again in a minute.")

# A label never holds "<" (Slack escapes it), so a scan stops at the next "<": linear in the text, where
# "[^>]*" rescanned to the end from every "<@U1|" of a hostile 40,000-character message (quadratic).
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^<>]*)?>")


@dataclass
class SlackDeps:
    engine: Engine
    state: ChatState
    client: WebClient
    scopes: ScopeResolver
    max_file_bytes: int
    followups: FollowUps  # long tasks (indexing a drop, writing minutes), over bot.slack.followups' host
    received: RecentEvents = field(default_factory=RecentEvents)
    max_wait_s: float = 120.0

    def waited_too_long(self, key: str | None) -> bool:
        """Whether the request ``key`` (an event id) was received longer ago than a question may wait."""
        age = self.received.age(key) if key else None
        return age is not None and age > self.max_wait_s


def strip_mentions(text: str) -> str:
    return " ".join(_MENTION.sub(" ", text or "").split())


def slack_reason(e: Exception) -> str | None:
    """What a Slack error means to the person who asked (None: not one Slack's words cover)."""
    if isinstance(e, SlackApiError):
        error = e.response.get("error") if e.response is not None else None
        if error in ("not_in_channel", "channel_not_found"):
            return "I am not a member of this channel; invite me with /invite @IMP and try again."
        if error == "ratelimited":
            return "Slack is rate-limiting me right now; please try again in a minute."
        if error == "missing_scope":
            return "the Slack app lacks a permission it needs; an admin should reinstall it from the manifest."
    return None


def reason(e: Exception) -> str:
    """A short reason a person can act on; internals stay in the log under a reference."""
    return replies.reason(e, slack_reason, where="Slack")


def send_answer(client: WebClient, channel: str, thread_ts: str | None, answer: Answer, *,
                shared_by: str | None = None) -> Iterator[Any]:
    """Post an answer (over several messages if Slack's limits need it); Slack's response to each, as it goes."""
    for blocks in batches(answer_blocks(answer, shared_by=shared_by)):
        yield client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=answer_text(answer),
                                      blocks=blocks, unfurl_links=False, unfurl_media=False)


def post_answer(deps: SlackDeps, channel: str, thread_ts: str | None, answer: Answer, *,
                shared_by: str | None = None) -> list[str]:
    """Post an answer and remember where each of its messages went (a reaction to one rates it)."""
    posted = []
    for resp in send_answer(deps.client, channel, thread_ts, answer, shared_by=shared_by):
        deps.state.link_answer(resp.get("channel") or channel, resp["ts"], answer.answer_id)
        posted.append(resp["ts"])
    return posted


def post_error(client: WebClient, channel: str, thread_ts: str | None, what: str, e: Exception,
               user: str | None = None) -> None:
    """Never silent: the failure becomes a short reply where the request was made."""
    text = f":warning: {what}: {escape(reason(e))}"
    try:
        if user:
            client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        else:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
    except SlackApiError:
        log.exception("could not tell the user in %s that %s", channel, what)


def react(client: WebClient, channel: str, ts: str, name: str, *, add: bool = True) -> None:
    """Show (or clear) progress on a message; a missing permission must not stop the real work."""
    try:
        if add:
            client.reactions_add(channel=channel, timestamp=ts, name=name)
        else:
            client.reactions_remove(channel=channel, timestamp=ts, name=name)
    except SlackApiError as e:
        log.info("reaction %s on %s/%s: %s", name, channel, ts, e.response.get("error"))


def bot_identity(context: Any) -> tuple[str | None, str | None]:
    """IMP's own user and bot ids, from bolt's authorization of the request."""
    return context.get("bot_user_id"), context.get("bot_id")
