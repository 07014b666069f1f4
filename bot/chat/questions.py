"""Questions in chat, on every platform: answered in their conversation, from what the asker may see,
with the conversation's recent history; and a private answer shared into a channel.

The adapter reads its platform's event into an ``Asked`` (the question as the person typed it, where,
and how to get the scopes and the history, both read only once the question is worked on) and gives a
``Replier`` for that conversation. ``answer_question`` does the rest, never silently: every question
gets an answer or a reason.

IMP's own earlier answers in a history are read back from the answer log (``recall_answers``), not
from the platform's copy of the message: an answer whose sources were deleted or unshared since is
redacted there, so a follow-up never replays the removed text into the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from bot.chat.state import ChatState
from core.engine import Engine
from core.errors import InvalidRequest, NotFound
from core.models import Answer, Message

log = logging.getLogger(__name__)

HISTORY_MESSAGES = 10
RECALL_CHARS = 3000  # an answer read back into a history is cut here, as a posted one would be


@dataclass(frozen=True)
class Said:
    """One earlier message of a conversation, as the platform shows it (``text`` already plain)."""

    message_id: str
    text: str
    mine: bool  # IMP's own message


# What IMP said at a message, as IMP holds it now: the answer's text, "" for an answer no longer kept,
# None for a message that carries no answer (a greeting, a status).
Recall = Callable[[str], "str | None"]


def recall_answers(engine: Engine, state: ChatState, channel: str, limit: int = RECALL_CHARS) -> Recall:
    def recall(message_id: str) -> str | None:
        answer_id = state.answer_at(channel, message_id)
        if answer_id is None:
            return None
        try:
            return engine.answer(answer_id).text[:limit]
        except NotFound:
            return ""

    return recall


def turns(said: Iterable[Said], recall: Recall | None = None, limit: int = HISTORY_MESSAGES) -> list[Message]:
    """A conversation's messages (oldest first) as turns: IMP's are the assistant's, read back from the log."""
    history: list[Message] = []
    for m in said:
        stored = recall(m.message_id) if m.mine and recall is not None else None
        if stored is not None:
            # An answer no longer kept is nothing to replay; one long answer posted as several messages, once.
            if stored and not (history and history[-1] == Message("assistant", stored)):
                history.append(Message("assistant", stored))
            continue
        if m.text:
            history.append(Message("assistant" if m.mine else "user", m.text))
    return history[-limit:]


@dataclass(frozen=True)
class Asked:
    question: str  # as the person typed it, mentions of IMP taken out
    channel: str
    user: str
    scopes: Callable[[], list[str]]  # read when the question is worked on: membership may change meanwhile
    history: Callable[[], list[Message]] = list
    waited_too_long: bool = False


class Replier(Protocol):
    """Where the answer to one question goes, on one platform."""

    def usage(self) -> None: ...  # the question was empty: say how to ask

    def busy(self) -> None: ...  # the question waited too long for a worker: ask again

    def working(self, on: bool) -> None: ...  # show (or clear) that IMP is on it

    def post_answer(self, answer: Answer) -> list[str]: ...  # the ids of the messages that carry it

    def failed(self, what: str, e: Exception) -> None: ...


def answer_question(engine: Engine, state: ChatState, asked: Asked, replier: Replier) -> Answer | None:
    """Answer ``asked`` in its conversation and remember which messages carry the answer."""
    if not asked.question:
        replier.usage()
        return None
    if asked.waited_too_long:
        # Questions arrive faster than they are answered: a short reply now beats an answer minutes late.
        replier.busy()
        return None
    replier.working(True)
    try:
        answer = engine.ask(asked.question, asked.scopes(), asked.history())
        posted = replier.post_answer(answer)
        for message_id in posted:
            state.link_answer(asked.channel, message_id, answer.answer_id)
        return answer
    except Exception as e:  # never silent: every question gets an answer or a reason
        replier.failed("I could not answer that", e)
        return None
    finally:
        replier.working(False)


class NotShareable(InvalidRequest):
    """A private answer that may not go into the channel; ``detail`` says why."""


REMOVED_SINCE = ("A source of that answer was deleted, unshared or replaced since it was given, so I will not "
                 "share it. Ask again for an answer from what is available now.")
NOT_VISIBLE = "That answer draws on sources this channel cannot see, so it stays private."


def shareable(engine: Engine, answer_id: str, visible: list[str] | Callable[[], list[str]]) -> Answer:
    """The answer to post in a channel whose readers may see ``visible``, or ``NotShareable``.

    Every scope it was answered from must be visible there (not only the cited ones: it may draw on every
    passage it was written from), and none of its sources removed since: sharing only what remains would
    put in the channel an answer its asker never saw; asking again gives a whole one. ``visible`` may be
    a function: it is called only for an answer whose sources are all still there (what a channel sees
    costs the platform calls, and an error reading it must not hide that the answer is out of date).
    """
    answer = engine.answer(answer_id)
    if answer.removed_sources:
        raise NotShareable(REMOVED_SINCE)
    if not set(answer.scopes) <= set(visible() if callable(visible) else visible):
        raise NotShareable(NOT_VISIBLE)
    return answer
