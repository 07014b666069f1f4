"""Prompts for LLM minutes, the JSON reply they ask for, and reading that reply back.

A window of the transcript is shown as numbered lines, ``[12] Priya: ...``, so the
model can name the turn each item comes from and copy a quote from it. The reply
schema is the pydantic model ``WindowReply``; a reply that does not parse or validate
gets a repair request that states the error and the schema again. A due date the
model quoted ("by Friday", "March 6, 2026") is resolved to an ISO date only when it
is explicit, or a weekday and the meeting's date is known.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from core.minutes.dates import find_due
from core.models import Message, Turn


SYSTEM = (
    "You write meeting minutes from a part of a meeting transcript. Each transcript line is "
    "[turn number] speaker: words. Reply with one JSON object only: no prose, no code fences. "
    "Record only decisions that were actually made, tasks someone agreed to do, and questions left "
    "unanswered; use empty lists when there are none. Every item names the turn it comes from and a "
    "quote: a few words copied exactly, character for character, from that turn. Use null for an owner "
    "or a due date that was not said."
)

SCHEMA = (
    '{"summary": "2-4 sentences on what this part of the meeting covered", '
    '"topics": [{"title": "a short title", "first_turn": 1, "last_turn": 9}], '
    '"decisions": [{"text": "what was decided", "turn": 4, "quote": "exact words from turn 4"}], '
    '"action_items": [{"task": "what is to be done", "owner": "who, or null", '
    '"due_text": "when, as it was said, or null", "turn": 6, "quote": "exact words from turn 6"}], '
    '"open_questions": [{"text": "the question left open", "turn": 8, "quote": "exact words from turn 8"}]}'
)

MERGE = (
    "You merge summaries of consecutive parts of one meeting into a single summary of the whole "
    "meeting, 4 to 8 sentences, in the order things were discussed. Use only what the part summaries "
    "say. Reply with the summary only."
)

# Room kept for the error text of a repair request (characters); longer errors are cut.
MAX_ERROR_CHARS = 300


def turn_line(turn: Turn, text: str, part: int = 0) -> str:
    """One transcript line; a long turn split across lines marks its later parts."""
    who = turn.speaker or "unknown"
    return f"[{turn.index}] {who}{' (cont.)' if part else ''}: {text}"


def _header(title: str | None, first: int, last: int) -> str:
    name = f"Meeting: {title}\n" if title else ""
    return f"{name}Transcript, turns {first} to {last}:\n\n"


def window_messages(title: str | None, first: int, last: int, lines: list[str],
                    error: str | None = None) -> list[Message]:
    """The request for one window; with ``error``, the repair request for it."""
    ask = "Reply with only a JSON object of this form:"
    if error is not None:
        ask = (f"Your previous reply could not be used: {error[:MAX_ERROR_CHARS]}\n"
               "Reply again, with only a JSON object of this form:")
    body = _header(title, first, last) + "\n".join(lines) + f"\n\n{ask}\n{SCHEMA}"
    return [Message("system", SYSTEM), Message("user", body)]


def merge_messages(title: str | None, summaries: list[str]) -> list[Message]:
    parts = "\n\n".join(f"Part {i}: {s}" for i, s in enumerate(summaries, 1))
    name = f"Meeting: {title}\n\n" if title else ""
    return [Message("system", MERGE), Message("user", f"{name}{parts}\n\nSummary of the whole meeting:")]


def _turn_number(v: object) -> object:
    # Models write "12", "[12]" or "turn 12" as often as 12.
    if isinstance(v, str):
        m = re.search(r"\d+", v)
        return int(m.group(0)) if m else None
    return v


TurnNo = Annotated[int | None, BeforeValidator(_turn_number)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    turn: TurnNo = None
    quote: str


class TopicReply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str
    first_turn: TurnNo = None
    last_turn: TurnNo = None


class DecisionReply(_Item):
    text: str


class ActionReply(_Item):
    task: str
    owner: str | None = None
    due_text: str | None = None


class QuestionReply(_Item):
    text: str


class WindowReply(BaseModel):
    """What the model returns for one window of the transcript."""

    model_config = ConfigDict(extra="ignore")
    summary: str = ""
    topics: list[TopicReply] = []
    decisions: list[DecisionReply] = []
    action_items: list[ActionReply] = []
    open_questions: list[QuestionReply] = []

    @field_validator("summary", "topics", "decisions", "action_items", "open_questions", mode="before")
    @classmethod
    def _null_is_empty(cls, v: object, info) -> object:  # small models write null for "none"
        return v if v is not None else ("" if info.field_name == "summary" else [])


# \s*+ is possessive: an unclosed fence followed by a long run of spaces is one pass, not one per space.
_FENCE = re.compile(r"```(?:json|JSON)?\s*+(.*?)```", re.S)


class BadReply(ValueError):
    """The model's reply is not a JSON object of the schema; the message says why, for a repair request."""


def parse_reply(reply: str) -> WindowReply:
    """The JSON object in a reply (code fences and text around it are ignored), validated."""
    text = reply.strip()
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    start = text.find("{")
    if start < 0:
        raise BadReply("the reply holds no JSON object")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise BadReply(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    if not isinstance(obj, dict):
        raise BadReply("the reply is not a JSON object")
    try:
        return WindowReply.model_validate(obj)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:4])
        raise BadReply(f"the JSON does not match the form ({problems})") from e


def clean_summary(reply: str) -> str:
    """A plain-text summary reply, or "" when it is empty or is not prose."""
    text = _FENCE.sub(lambda m: m.group(1), reply).strip()
    if not text or text[0] in "{[" or text.upper().startswith("NOT FOUND"):
        return ""
    return re.sub(r"\s+", " ", text)


# -- due dates, as the model quoted them -----------------------------------------------------------


def resolve_due(due_text: str | None, meeting_date: str | None) -> str | None:
    """The ISO date of the model's ``due_text``, read by the same rules as extractive minutes.

    A model often writes the date alone ("Friday", "March 6, 2026"), where speech says "by …".
    """
    if not due_text:
        return None
    found = find_due(due_text, meeting_date) or find_due(f"by {due_text}", meeting_date)
    return found[1] if found else None
