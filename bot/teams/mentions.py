"""What a person wrote in Teams, as plain text: IMP's own @mention taken out, other mentions as names.

Used by the Teams adapter's inbound side (bot/teams/activity.py) on every message activity, so the
chat layer gets the question as the person meant it ("<at>IMP</at> what did <at>Ana</at> decide?"
becomes "what did Ana decide?") and knows whether IMP was addressed.

Teams writes a mention into ``text`` as ``<at>Name</at>`` and describes it in a ``mention`` entity
(``mentioned.id``, ``mentioned.name``, ``text``); a long name may be split over several ``<at>`` tags,
each with its own entity. Only an ``<at>…</at>`` tag that occurs in the text and that an entity
describes word for word counts as a mention: an entity whose text is not in the message, or is not an
``<at>`` tag, is ignored (so an entity can never delete ordinary words), and an ``<at>`` tag no entity
backs is read as the plain name it shows. Text is cleaned of control and bidirectional-override
characters, HTML entities are read once, and it is bounded in length.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEXT_CHARS = 32_000  # Teams' own limit on a message is about 28 KB
MAX_NAME_CHARS = 256
MAX_MENTIONS = 100

# An <at> tag as Teams writes it (an optional attribute list, tolerated); bounded, so matching is linear.
_AT_TAG = re.compile(r"<at(?:\s[^<>]{0,200})?>([^<>]{0,256})</at>", re.IGNORECASE)
# C0 and C1 controls (tab and newline kept), zero-width and bidirectional formatting characters.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class Mentioned:
    """A person (or bot) a message mentions: their Teams id and the name the message shows."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ReadText:
    """A message's text after mentions are resolved: ``text`` plain, ``bot_mentioned`` whether IMP was."""

    text: str
    bot_mentioned: bool
    others: tuple[Mentioned, ...]


def clean(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` without control, zero-width or direction-override characters, spaces folded, at most ``limit``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()[:limit]


def clean_name(name: object) -> str:
    """A display name fit to show: a string, cleaned, one line, bounded; "" for anything else."""
    if not isinstance(name, str):
        return ""
    return clean(name.replace("\n", " "), MAX_NAME_CHARS)


def _mention_entities(entities: Iterable[Any]) -> dict[str, Mentioned]:
    """The mention entities that could describe an <at> tag, by their exact ``text``."""
    found: dict[str, Mentioned] = {}
    for entity in entities:
        if not isinstance(entity, Mapping) or entity.get("type") != "mention":
            continue
        text, mentioned = entity.get("text"), entity.get("mentioned")
        if not isinstance(text, str) or not isinstance(mentioned, Mapping) or not _AT_TAG.fullmatch(text):
            continue  # not an <at> tag: never used to cut words out of the message
        who = mentioned.get("id")
        if not isinstance(who, str) or not who or len(who) > 1024:
            continue
        found.setdefault(text, Mentioned(who, clean_name(mentioned.get("name"))))
        if len(found) >= MAX_MENTIONS:
            break
    return found


def read_text(text: str, entities: Iterable[Any], bot_ids: Iterable[str]) -> ReadText:
    """``text`` with IMP's mentions removed and other mentions turned into the names they show.

    ``bot_ids``: the ids that are IMP (``28:<app id>``, compared without regard to case). An ``<at>``
    tag counts only if an entity describes it exactly and names someone; others read as their name.
    """
    mine = {b.lower() for b in bot_ids}
    described = _mention_entities(entities)
    mentioned_bot = False
    others: dict[str, Mentioned] = {}

    def resolve(match: re.Match[str]) -> str:
        nonlocal mentioned_bot
        shown = match.group(1)
        who = described.get(match.group(0))
        if who is not None and who.id.lower() in mine:
            mentioned_bot = True
            return " "
        if who is not None:
            others.setdefault(who.id, Mentioned(who.id, who.name or clean_name(html.unescape(shown))))
        return shown

    resolved = _AT_TAG.sub(resolve, text[: MAX_TEXT_CHARS * 2])
    plain = clean(html.unescape(resolved))
    return ReadText(plain, mentioned_bot, tuple(others.values()))
