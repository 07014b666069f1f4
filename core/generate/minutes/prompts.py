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
import logging
import re
from datetime import date, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from core.models import Message, Turn

log = logging.getLogger(__name__)

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


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


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

_MONTHS = {m: i for i, name in enumerate(("january february march april may june july august september "
                                          "october november december").split(), 1)
           for m in (name, name[:3], "sept" if i == 9 else name)}
_DAYS = {name: i for i, name in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())}
_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_MONTH_DAY = re.compile(r"\b([a-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(\d{4})\b)?")
_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]{3,9})\b\.?(?:,?\s+(\d{4})\b)?")


def resolve_due(due_text: str | None, meeting_date: str | None) -> str | None:
    """An ISO date for an explicit date in ``due_text``; weekdays, "today" and "tomorrow" only
    when the meeting's date is known. Anything vaguer stays None."""
    if not due_text:
        return None
    text = due_text.casefold()
    base = _date(meeting_date)
    if m := _ISO.search(text):
        return _iso(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    for m in _MONTH_DAY.finditer(text):
        if m.group(1) in _MONTHS:
            return _in_year(base, m.group(3), _MONTHS[m.group(1)], int(m.group(2)))
    for m in _DAY_MONTH.finditer(text):
        if m.group(2) in _MONTHS:
            return _in_year(base, m.group(3), _MONTHS[m.group(2)], int(m.group(1)))
    if re.search(r"\b(19|20)\d\d\b", text) and (found := _dateparser(due_text)):
        return found
    if base is None:
        return None
    words = set(re.findall(r"\w+", text))
    if "today" in words or "tonight" in words:
        return base.isoformat()
    if "tomorrow" in words:
        return (base + timedelta(days=1)).isoformat()
    for name, day in _DAYS.items():
        if name in words:
            if "next" in words and "week" in words:  # "Friday next week": that weekday in the following week
                return (base + timedelta(days=7 - base.weekday() + day)).isoformat()
            return (base + timedelta(days=(day - base.weekday()) % 7)).isoformat()
    return None


def _date(iso: str | None) -> date | None:
    try:
        return date.fromisoformat(iso[:10]) if iso else None
    except ValueError:
        return None


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _in_year(base: date | None, year: str | None, month: int, day: int) -> str | None:
    if year:
        return _iso(int(year), month, day)
    if base is None:  # "March 6" without a year and no meeting date: not resolvable
        return None
    found = _iso(base.year, month, day)
    if found is None or found >= base.isoformat():
        return found
    # Well past in the meeting's year: the next year's ("January 10" said in December); a few weeks
    # past is more likely a missed deadline than a year ahead, so it stays unresolved.
    return _iso(base.year + 1, month, day) if (base - date.fromisoformat(found)).days > 60 else None


def _dateparser(text: str) -> str | None:
    """Other absolute forms ("06.03.2026"), when dateparser is installed; it is optional."""
    try:
        from dateparser.search import search_dates
    except ImportError:
        return None
    try:
        found = search_dates(text, settings={"REQUIRE_PARTS": ["day", "month", "year"]})
    except Exception:  # dateparser's own parsing errors; an unresolved date stays None
        log.debug("dateparser could not read %r", text, exc_info=True)
        return None
    return found[0][1].date().isoformat() if found else None
