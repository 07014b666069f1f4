"""Adaptive Cards for IMP's Teams messages: answers with numbered sources, minutes, job progress.

The Teams adapter (bot/teams) renders what the engine returns with these: each function gives an
Adaptive Card 1.5 as a dict, and ``attachment`` wraps it as the ``application/vnd.microsoft.card.adaptive``
attachment a Bot Framework activity carries. The progress card keeps one shape from start to end, so
the adapter updates the same message in place (the connector's update-activity call) as a job moves on.

Two things shape everything here:

- Teams reads a TextBlock's text as a Markdown subset (bold, italics, lists, links) and turns
  ``<at>name</at>`` into a mention when the card names it in ``msteams.entities``. Every piece of text
  that comes from a document, a recording, a person or a model goes through ``neutral`` first, so it can
  form no link, mention or HTML; only the mentions IMP writes itself (``Mention``) are entities.
- A Teams message carries at most about 28 KB. Every text and list is bounded, and a card is rebuilt
  with tighter bounds until its JSON fits ``CARD_BUDGET``; what was left out is said ("…and 3 more").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.formats.citations import snippet
from core.formats.minutes import where
from core.formats.locations import clock, locator
from core.models import Answer, Evidence, Minutes

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
# Teams refuses a message over about 28 KB; the activity around the card needs a little of it.
CARD_BUDGET = 24_000
SHARE_ACTION = "imp_share_answer"
FEEDBACK_HINT = "Was this helpful? React with 👍 or 👎 so IMP learns."
NO_ANSWER = "(no answer)"

Card = dict[str, Any]
Element = dict[str, Any]

# C0 controls (tab and newline stay) and the bidirectional overrides that can make text read backwards.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_LT_ENTITY = re.compile(r"&(?:lt|#0*60|#x0*3c);", re.I)
_GT_ENTITY = re.compile(r"&(?:gt|#0*62|#x0*3e);", re.I)
_LINK = re.compile(r"!?\[([^\[\]\n]{0,1000})\]\(([^()\n]{0,2000})\)")
_HEADING = re.compile(r"^#{1,6}\s*(.+)$", re.M)
_MENTION_ID = re.compile(r"^[A-Za-z0-9:_.@|-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Mention:
    """A Teams user IMP names in a card: their id (``29:…`` or an Entra object id) and display name."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of each part a card may show: list items, characters per item, characters of the body."""

    items: int
    item_chars: int
    body_chars: int


# Tried in order until the card's JSON fits CARD_BUDGET. The last one fits whatever the text:
# even a body and items made of four-byte characters, each written "\\ud83d\\ude00" (12 bytes) in JSON.
STEPS = (Limits(20, 400, 6000), Limits(12, 240, 3500), Limits(8, 160, 2000), Limits(5, 120, 1000),
         Limits(3, 80, 400), Limits(1, 60, 150))


def neutral(text: str, limit: int | None = None) -> str:
    """Text from outside IMP, made inert for a TextBlock: it shows as written but can link, mention or tag nothing.

    Angle brackets (``<at>``, ``<a href>``, ``<https://…>``) become look-alikes, written or as entities;
    ``[label](target)`` becomes ``label (target)`` so the real target shows; and what is left of link and
    reference-definition syntax (``](``, ``]:``) is split so no Markdown reader joins it. ``limit`` shortens
    the result at a word boundary with "…".
    """
    if limit is not None:
        text = text[: 4 * limit + 1000]  # bound the work on a huge input before the expressions run
    text = _CONTROLS.sub("", text)
    text = _GT_ENTITY.sub("›", _LT_ENTITY.sub("‹", text))
    text = text.replace("<", "‹").replace(">", "›")
    text = _LINK.sub(r"\1 (\2)", text)
    # A reference ("[text][ref]", "[ref]") links only through a definition "[ref]: url": breaking "]:" is enough,
    # and keeps citation markers like "[1][2]" as the answer wrote them.
    text = text.replace("](", "] (").replace("]:", "] :")
    return clip(text, limit) if limit is not None else text


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary when one is near, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def card_size(card: Card) -> int:
    """Bytes of the card as JSON with every non-ASCII character escaped: the most any serializer writes."""
    return len(json.dumps(card, ensure_ascii=True))


def attachment(card: Card) -> dict[str, Any]:
    """The card as a Bot Framework attachment."""
    return {"contentType": CONTENT_TYPE, "content": card}


def text_block(text: str, **style: Any) -> Element:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def heading(text: str) -> Element:
    return text_block(text, weight="Bolder", spacing="Medium", style="heading")


def note(text: str) -> Element:
    return text_block(text, isSubtle=True, size="Small", spacing="Small")


def _card(body: list[Element], *, fallback: str, mentions: Sequence[Mention] = (),
          actions: list[Element] | None = None) -> Card:
    card: Card = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": VERSION, "body": body,
                  "fallbackText": fallback, "msteams": {"width": "Full"}}
    if actions:
        card["actions"] = actions
    if mentions:
        card["msteams"]["entities"] = [
            {"type": "mention", "text": mention_text(m), "mentioned": {"id": m.id, "name": _name(m)}}
            for m in dict.fromkeys(mentions)]
    return card


def _name(m: Mention) -> str:
    return neutral(m.name, 60).strip() or "someone"


def mention_text(m: Mention) -> str:
    return f"<at>{_name(m)}</at>"


def _who(m: Mention | None, mentions: list[Mention]) -> str:
    """A person as a mention when their id is one Teams could have given; else their name, inert."""
    if m is None:
        return ""
    if _MENTION_ID.fullmatch(m.id):
        mentions.append(m)
        return mention_text(m)
    return f"**{_name(m)}**"


def fit(build: Callable[[Limits], Card], *, what: str) -> Card:
    """The first card from ``build`` under ``CARD_BUDGET``, trying ever tighter ``STEPS``."""
    for limits in STEPS:
        card = build(limits)
        if card_size(card) <= CARD_BUDGET:
            return card
    # The bounds above keep every card IMP builds under budget (tests/unit/test_teams_cards.py tries the worst);
    # should a future card outgrow them, say so rather than send what Teams refuses.
    return _card([text_block(f"The {what} is too large to show in Teams.")], fallback=f"The {what} is too large.")


def _more(n: int, noun: str) -> Element:
    return note(f"…and {n} more {noun}.")


# -- answers ---------------------------------------------------------------------------


def _paragraphs(text: str, limit: int) -> list[Element]:
    body = _HEADING.sub(r"**\1**", neutral(text, limit))  # Markdown headings become bold, as Teams has none
    parts = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    if len(parts) > 30:  # one block per paragraph, but not hundreds of them
        parts = parts[:29] + ["\n\n".join(parts[29:])]
    return [text_block(p) for p in parts] or [text_block(NO_ANSWER)]


def _source(n: int, answer: Answer, limits: Limits) -> Element:
    chunk = next(c.chunk for c in answer.citations if c.n == n)
    quote = neutral(snippet(chunk.text[:20_000], answer.text[:20_000], n), limits.item_chars)
    return {"type": "Container", "spacing": "Small", "items": [
        text_block(f"**[{n}]** {neutral(locator(chunk), limits.item_chars)}"),
        text_block(f"“{quote}”", isSubtle=True, spacing="None"),
    ]}


def answer_card(answer: Answer, *, shared_by: Mention | None = None, share: bool = False) -> Card:
    """The answer with its ``[n]`` markers, its numbered sources (document and page, or recording and time),
    and the invitation to rate it. An abstention shows the engine's reason and no sources.

    ``share`` adds a button that asks IMP to post a privately given answer in the conversation (an
    ``Action.Submit`` whose data is ``{"action": SHARE_ACTION, "answer_id": …}``); ``shared_by`` names who did.
    """
    def build(limits: Limits) -> Card:
        mentions: list[Mention] = []
        body = _paragraphs(answer.text or NO_ANSWER, limits.body_chars)
        if len(answer.text) > limits.body_chars:
            body.append(note("The answer was shortened to fit in a Teams message."))
        if answer.citations and not answer.abstained:
            body.append(heading("Sources"))
            body += [_source(c.n, answer, limits) for c in answer.citations[:limits.items]]
            if len(answer.citations) > limits.items:
                body.append(_more(len(answer.citations) - limits.items, "sources"))
        footer = FEEDBACK_HINT
        if shared_by is not None:
            asked = neutral(answer.question, min(200, limits.body_chars))
            footer = (f"Shared by {_who(shared_by, mentions)} · asked: “{asked}” · "
                      f"{FEEDBACK_HINT}")
        body.append(note(footer))
        actions = [{"type": "Action.Submit", "title": "Share in this conversation",
                    "data": {"action": SHARE_ACTION, "answer_id": answer.answer_id}}] if share else None
        fallback = neutral(answer.text or NO_ANSWER, min(500, limits.body_chars))
        return _card(body, fallback=fallback, mentions=mentions, actions=actions)

    return fit(build, what="answer")


# -- minutes ---------------------------------------------------------------------------


def moment(evidence: tuple[Evidence, ...], timed: bool) -> str:
    """Where the first supporting quote was said: " _(Alice, 12:31)_", or " _(turn 42)_" for a text transcript."""
    if not evidence:
        return ""
    e = evidence[0]
    at = where(e, timed)
    if not at:
        return ""
    who = f"{neutral(e.speaker, 60)}, " if e.speaker else ""
    return f" _({who}{at})_"


def _listing(title: str, lines: list[str], total: int, *, empty: str, noun: str) -> list[Element]:
    """A heading and one TextBlock per item shown; ``total`` counts every item, shown or not."""
    if not total:
        return [heading(title), text_block(f"_{empty}_", isSubtle=True)] if empty else []
    out = [heading(title)] + [text_block(line, spacing="Small") for line in lines]
    if total > len(lines):
        out.append(_more(total - len(lines), noun))
    return out


def minutes_card(minutes: Minutes, *, source: str, owners: Mapping[str, Mention] | None = None,
                 requested_by: Mention | None = None) -> Card:
    """Summary, decisions, action items (owner, due date) and open questions, each with its moment in
    the recording. ``owners`` maps an owner's name as the minutes give it to the person to mention."""
    owners = owners or {}

    def build(limits: Limits) -> Card:
        mentions: list[Mention] = []
        n, short = limits.item_chars, min(200, limits.body_chars)
        facts = [{"title": "Recording", "value": neutral(source, short)}]
        if minutes.date:
            facts.append({"title": "Date", "value": neutral(minutes.date, 40)})
        if minutes.attendees:
            facts.append({"title": "Attendees", "value": neutral(", ".join(minutes.attendees[:50]), 2 * short)})
        body: list[Element] = [
            text_block(f"Minutes: {neutral(minutes.title, short)}", size="Large", weight="Bolder", style="heading"),
            {"type": "FactSet", "facts": facts},
        ]
        if requested_by is not None:
            body.append(note(f"Requested by {_who(requested_by, mentions)}"))
        body.append(heading("Summary"))
        body.append(text_block(neutral(minutes.summary, limits.body_chars) or "_No summary._"))
        k = limits.items  # only the items shown are rendered, so only the owners shown are mentioned
        body += _listing("Decisions", [f"• {neutral(d.text, n)}{moment(d.evidence, minutes.timed)}"
                                       for d in minutes.decisions[:k]], len(minutes.decisions),
                         empty="No decisions were recorded.", noun="decisions")
        actions = []
        for a in minutes.action_items[:k]:
            owner = (_who(owners[a.owner], mentions) if a.owner and a.owner in owners
                     else f"**{neutral(a.owner or 'Unassigned', 60)}**")
            due = (f" — due {neutral(a.due, 40)}" if a.due
                   else f" — {neutral(a.due_text, 60)}" if a.due_text else "")
            actions.append(f"• {owner}: {neutral(a.task, n)}{due}{moment(a.evidence, minutes.timed)}")
        body += _listing("Action items", actions, len(minutes.action_items), empty="No action items.",
                         noun="action items")
        body += _listing("Open questions", [f"• {neutral(q.text, n)}{moment(q.evidence, minutes.timed)}"
                                            for q in minutes.open_questions[:k]], len(minutes.open_questions),
                         empty="", noun="open questions")
        body.append(note("Each item shows who said it and when, in the recording or transcript."))
        fallback = neutral(f"Minutes of {source[:200]}: {minutes.summary}", min(500, limits.body_chars))
        return _card(body, fallback=fallback, mentions=mentions)

    return fit(build, what="minutes")


# -- progress --------------------------------------------------------------------------


def progress_card(verb: str, name: str, stage: str, done: float, total: float | None) -> Card:
    """Long work under way ("Transcribing standup.m4a — 42%, 05:00 of 12:00") with a bar when the total is known.

    Sent once, then sent again with new figures to update the same message in place.
    """
    title = f"⏳ {neutral(verb, 40)} **{neutral(name, 200)}**"
    stage = neutral(stage, 80)
    detail = ""
    body: list[Element] = [text_block(title)]
    if total:
        pct = max(0, min(100, round(100 * done / total)))
        # seconds of audio while transcribing; other stages count steps, shown as a percentage only
        detail = f"{pct}%, {clock(done)} of {clock(total)}" if "transcrib" in stage else f"{pct}%"
        if stage and stage not in ("queued", "started"):
            detail = f"{stage} — {detail}"
        body.append(note(detail))
        bar = [{"type": "Column", "width": w, "style": s, "minHeight": "6px", "items": []}
               for w, s in ((pct, "accent"), (100 - pct, "emphasis")) if w > 0]
        body.append({"type": "ColumnSet", "columns": bar, "spacing": "Small"})
    elif stage == "queued":
        detail = "waiting for earlier work to finish"
        body.append(note(detail))
    elif stage and stage != "started":
        detail = stage
        body.append(note(detail))
    fallback = f"{neutral(verb, 40)} {neutral(name, 200)}" + (f" — {detail}" if detail else "")
    return _card(body, fallback=fallback)
