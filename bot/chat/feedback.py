"""Reactions as feedback: 👍/👎 on a message that carries an answer rate that answer; removing it retracts."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.chat.state import ChatState
from core.engine import Engine
from core.errors import NotFound
from core.models import Feedback

log = logging.getLogger(__name__)


def react_to_answer(engine: Engine, state: ChatState, channel: str, message_id: str, user: str, rating: int, *,
                    added: bool, when: datetime, source: str) -> bool:
    """Record (or, ``added`` False, retract) ``user``'s rating of the answer ``message_id`` carries.

    False when the message carries no answer, or the answer is no longer stored.
    """
    answer_id = state.answer_at(channel, message_id)
    if answer_id is None:
        return False  # a reaction to some other message
    try:
        if added:
            engine.record_feedback(Feedback(answer_id, user, channel, rating, when, source=source))
        else:
            engine.retract_feedback(answer_id, user, rating, source)
    except NotFound:
        log.warning("feedback on answer %s, which is no longer stored", answer_id)
        return False
    return True
