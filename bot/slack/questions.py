"""Questions: @mentions in channels, messages in DMs and assistant threads.

The ack goes back at once; the answer is worked out in a lazy listener: an
hourglass reaction shows IMP is on it, the thread's earlier messages make a
follow-up understandable, and the answer (or the reason there is none) is posted
in the thread with its numbered sources.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.slack.deps import SlackDeps, bot_identity, post_answer, post_error, react, strip_mentions
from bot.slack.scopes import is_dm
from core.models import Message

log = logging.getLogger(__name__)

WORKING = "hourglass_flowing_sand"
HISTORY_MESSAGES = 10
USAGE = ("Ask me a question about this channel's documents and recordings, for example "
         "“@IMP what did we decide about the launch date?”")
GREETING = ("Hi! Ask me about the documents and recordings shared in your channels. I answer with numbered "
            "sources — the page, or the minute and second of a recording.")


def _ack(ack: Ack) -> None:
    ack()


def thread_history(client: WebClient, channel: str, thread_ts: str | None, before_ts: str,
                   me: tuple[str | None, str | None]) -> list[Message]:
    """The thread's earlier messages as a conversation: IMP's own are the assistant's turns."""
    if not thread_ts:
        return []
    resp = client.conversations_replies(channel=channel, ts=thread_ts, limit=100)
    history = []
    for m in resp.get("messages") or []:
        if float(m.get("ts", "0")) >= float(before_ts):
            continue
        mine = (me[0] is not None and m.get("user") == me[0]) or (me[1] is not None and m.get("bot_id") == me[1])
        if not mine and m.get("bot_id"):
            continue  # other bots' chatter is not part of the conversation
        text = strip_mentions(m.get("text") or "")
        if text:
            history.append(Message("assistant" if mine else "user", text))
    return history[-HISTORY_MESSAGES:]


def answer_event(deps: SlackDeps, event: dict[str, Any], context: Any) -> None:
    """Answer a question asked in a message, in its thread, from what the asker may see."""
    if event.get("bot_id") or not event.get("user"):
        return  # IMP's own messages and other bots' are never questions
    client = deps.client
    channel, user, ts = event["channel"], event["user"], event["ts"]
    dm = is_dm(channel, event.get("channel_type"))
    reply_ts = event.get("thread_ts") or (None if dm else ts)
    question = strip_mentions(event.get("text") or "")
    if not question:
        client.chat_postMessage(channel=channel, thread_ts=reply_ts, text=USAGE)
        return
    react(client, channel, ts, WORKING)
    try:
        scopes = deps.scopes.for_message(channel, user, event.get("channel_type"))
        history = thread_history(client, channel, event.get("thread_ts"), ts, bot_identity(context))
        answer = deps.engine.ask(question, scopes, history)
        post_answer(deps, channel, reply_ts, answer)
    except Exception as e:  # never silent: every question gets an answer or a reason
        post_error(client, channel, reply_ts, "I could not answer that", e)
    finally:
        react(client, channel, ts, WORKING, add=False)


def register(app: App, deps: SlackDeps) -> None:
    def on_mention(event: dict, context: Any) -> None:
        answer_event(deps, event, context)

    def on_message(event: dict, context: Any) -> None:
        if is_dm(event.get("channel", ""), event.get("channel_type")):
            answer_event(deps, event, context)
        # in channels IMP speaks when mentioned (app_mention), not on every message

    def on_thread_started(event: dict) -> None:
        thread = event.get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            deps.client.chat_postMessage(channel=thread["channel_id"], thread_ts=thread["thread_ts"], text=GREETING)

    app.event("app_mention")(ack=_ack, lazy=[on_mention])
    app.event({"type": "message", "subtype": (None, "thread_broadcast")})(ack=_ack, lazy=[on_message])
    app.event("assistant_thread_started")(ack=_ack, lazy=[on_thread_started])
    app.event("assistant_thread_context_changed")(_ack)
