"""Questions in Slack: @mentions in channels, messages in DMs and assistant threads.

The ack goes back at once; the answer is worked out in a lazy listener, by the chat layer
(bot.chat.questions.answer_question) with Slack's pieces: an hourglass reaction shows IMP
is on it, the thread's earlier messages (in a DM without threads, its last few minutes)
make a follow-up understandable, and the answer (or the reason there is none) is posted
in the thread with its numbered sources. Slack's markup (links, channel names, &amp;) is
read as the person typed it.

IMP's own earlier answers in that history are read back from the answer log, not from
Slack's copy of the message: an answer whose sources were deleted or unshared since
is redacted there, so a follow-up never replays the removed text into the model.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from itertools import islice
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.chat.questions import HISTORY_MESSAGES, Asked, Recall, Said, answer_question, recall_answers, turns
from bot.slack.blocks import TEXT_LIMIT
from bot.slack.deps import BUSY, SlackDeps, bot_identity, post_error, react, send_answer, strip_mentions
from bot.slack.people import People
from bot.slack.scopes import is_dm
from core.models import Answer, Message

log = logging.getLogger(__name__)

WORKING = "hourglass_flowing_sand"
MAX_PAGES = 20
DM_FOLLOW_UP_S = 10 * 60  # a DM message this soon after the last one may follow up on it
USAGE = ("Ask me a question about this channel's documents and recordings, for example "
         "“@IMP what did we decide about the launch date?”")
GREETING = ("Hi! Ask me about the documents and recordings shared in your channels. I answer with numbered "
            "sources — the page, or the minute and second of a recording.")


def _ack(ack: Ack) -> None:
    ack()


_MARKUP = re.compile(r"<([^<>]*)>")


def _markup(m: re.Match) -> str:
    inner = m.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("#"):  # <#C123|general>
        return f"#{label}" if label else target
    if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^...|fallback>
        return label or "@" + target[1:].split("^")[0]
    return label or target.removeprefix("mailto:")  # <https://...|label>


_PERSON = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^<>]*))?>")  # "[^<>]": linear, as deps._MENTION


def name_people(people: People, text: str, me: str | None) -> str:
    """Other people's mentions as their names ("what did <@U0BOB> say" asks about Bob); IMP's stays a mention."""

    def name(m: re.Match[str]) -> str:
        user_id, label = m.group(1), m.group(2)
        if user_id == me:
            return m.group(0)
        return label or people.name(user_id)

    return _PERSON.sub(name, text)


def plain_text(text: str) -> str:
    """What a person typed, from Slack's markup: mentions dropped, links and channels as read, &amp; as &."""
    text = _MARKUP.sub(_markup, strip_mentions(text))
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _said(messages: list[dict], before_ts: str, me: tuple[str | None, str | None]) -> list[Said]:
    """Slack's messages before ``before_ts`` that are part of the conversation, as the chat layer reads them."""
    said = []
    for m in messages:
        if float(m.get("ts", "0")) >= float(before_ts):
            continue
        mine = (me[0] is not None and m.get("user") == me[0]) or (me[1] is not None and m.get("bot_id") == me[1])
        if not mine and (m.get("bot_id") or m.get("subtype") not in (None, "thread_broadcast")):
            continue  # other bots' chatter, joins and edits are not part of the conversation
        said.append(Said(m.get("ts", ""), plain_text(m.get("text") or ""), mine))
    return said


def _turns(messages: list[dict], before_ts: str, me: tuple[str | None, str | None],
           recall: Recall | None = None) -> list[Message]:
    return turns(_said(messages, before_ts, me), recall, HISTORY_MESSAGES)


def thread_history(client: WebClient, channel: str, thread_ts: str | None, before_ts: str,
                   me: tuple[str | None, str | None], recall: Recall | None = None) -> list[Message]:
    """The thread's latest earlier messages as a conversation: IMP's own are the assistant's turns.

    Slack lists a thread oldest first, so a long thread is read to its end. A
    thread Slack will not show (a missing history scope, a deleted parent) is no
    reason to leave the question unanswered: it is answered on its own words.
    """
    if not thread_ts:
        return []
    recent: deque[dict] = deque(maxlen=4 * HISTORY_MESSAGES)  # room for the messages _turns drops
    try:
        pages = client.conversations_replies(channel=channel, ts=thread_ts, latest=before_ts, inclusive=False,
                                             limit=200)
        for page in islice(pages, MAX_PAGES):  # slack_sdk follows the cursor
            recent.extend(page.get("messages") or [])
    except SlackApiError as e:
        log.warning("could not read thread %s in %s (%s); answering without it",
                    thread_ts, channel, e.response.get("error"))
        return []
    return _turns(list(recent), before_ts, me, recall)


def dm_history(client: WebClient, channel: str, before_ts: str,
               me: tuple[str | None, str | None], recall: Recall | None = None) -> list[Message]:
    """A DM's last few minutes, for a follow-up asked at the top level of the DM rather than in a thread."""
    oldest = f"{float(before_ts) - DM_FOLLOW_UP_S:.6f}"
    try:
        page = client.conversations_history(channel=channel, latest=before_ts, oldest=oldest, inclusive=False,
                                            limit=HISTORY_MESSAGES)
    except SlackApiError as e:
        log.warning("could not read the DM %s (%s); answering without it", channel, e.response.get("error"))
        return []
    return _turns(list(reversed(page.get("messages") or [])), before_ts, me, recall)  # Slack lists newest first


class SlackReply:
    """Where the answer to one Slack question goes (bot.chat.questions.Replier): its thread, or the DM."""

    def __init__(self, deps: SlackDeps, channel: str, thread_ts: str | None, asked_ts: str):
        self._client = deps.client
        self._channel = channel
        self._thread = thread_ts
        self._asked = asked_ts

    def usage(self) -> None:
        self._client.chat_postMessage(channel=self._channel, thread_ts=self._thread, text=USAGE)

    def busy(self) -> None:
        self._client.chat_postMessage(channel=self._channel, thread_ts=self._thread, text=BUSY)

    def working(self, on: bool) -> None:
        react(self._client, self._channel, self._asked, WORKING, add=on)

    def post_answer(self, answer: Answer) -> list[str]:
        return [resp["ts"] for resp in send_answer(self._client, self._channel, self._thread, answer)]

    def failed(self, what: str, e: Exception) -> None:
        post_error(self._client, self._channel, self._thread, what, e)


def answer_event(deps: SlackDeps, event: dict[str, Any], context: Any, body: dict[str, Any] | None = None) -> None:
    """Answer a question asked in a message, in its thread, from what the asker may see."""
    if event.get("bot_id") or not event.get("user"):
        return  # IMP's own messages and other bots' are never questions
    channel, user, ts = event["channel"], event["user"], event["ts"]
    dm = is_dm(channel, event.get("channel_type"))
    reply_ts = event.get("thread_ts") or (None if dm else ts)
    me = bot_identity(context)
    question = plain_text(event.get("text") or "")
    if question and "<@" in (event.get("text") or ""):
        question = plain_text(name_people(deps.scopes.people, event["text"], me[0]))

    def scopes() -> list[str]:
        return deps.scopes.for_message(channel, user, event.get("channel_type"), team_hint=event.get("user_team"),
                                       shared_outside=bool((body or {}).get("is_ext_shared_channel")))

    def history() -> list[Message]:
        recall = recall_answers(deps.engine, deps.state, channel, limit=TEXT_LIMIT)
        if event.get("thread_ts") or not dm:
            return thread_history(deps.client, channel, event.get("thread_ts"), ts, me, recall)
        return dm_history(deps.client, channel, ts, me, recall)

    # Questions may arrive faster than they are answered: one that waited too long gets a short reply now.
    asked = Asked(question, channel, user, scopes, history,
                  waited_too_long=deps.waited_too_long((body or {}).get("event_id")))
    answer_question(deps.engine, deps.state, asked, SlackReply(deps, channel, reply_ts, ts))


def register(app: App, deps: SlackDeps) -> None:
    def on_mention(event: dict, context: Any, body: dict) -> None:
        answer_event(deps, event, context, body)

    def on_message(event: dict, context: Any, body: dict) -> None:
        if is_dm(event.get("channel", ""), event.get("channel_type")):
            answer_event(deps, event, context, body)
        # in channels IMP speaks when mentioned (app_mention), not on every message

    def on_thread_started(event: dict) -> None:
        thread = event.get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            deps.client.chat_postMessage(channel=thread["channel_id"], thread_ts=thread["thread_ts"], text=GREETING)

    app.event("app_mention")(ack=_ack, lazy=[on_mention])
    app.event({"type": "message", "subtype": (None, "thread_broadcast")})(ack=_ack, lazy=[on_message])
    app.event("assistant_thread_started")(ack=_ack, lazy=[on_thread_started])
    app.event("assistant_thread_context_changed")(_ack)
