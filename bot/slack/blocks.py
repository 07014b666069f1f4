"""Block Kit for IMP's Slack messages: answers with numbered sources, minutes, job status.

Slack's limits shape everything here: a section's text holds at most 3,000
characters, a message at most 50 blocks, and a message's ``text`` (the
notification and fallback) should stay under 4,000. Long content is split at
paragraph, line, sentence or word boundaries, never inside a word.
"""

from __future__ import annotations

import re
from typing import Any

from core.formats.citations import snippet
from core.formats.documents import extent
from core.formats.minutes import where
from core.formats.locations import clock, locator
from core.models import Answer, DocumentRecord, Evidence, Minutes

SECTION_LIMIT = 3000
MESSAGE_BLOCKS = 50
TEXT_LIMIT = 3900
SHARE_ACTION = "imp_share_answer"
FEEDBACK_HINT = "Was this helpful? React with :+1: or :-1: so IMP learns."

Block = dict[str, Any]


def escape(text: str) -> str:
    """Slack's three control characters, so document text never forms links or mentions.

    For every field Slack reads as markup: a message's ``text``, mrkdwn text objects.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unmarked(text: str) -> str:
    """Text for a field Slack shows as it is (plain_text objects, a file's title and name).

    Slack escapes those itself, so ``&lt;`` would be shown as typed; the angle brackets
    that would form markup, were the field ever read as mrkdwn, become look-alikes instead.
    """
    return text.replace("<", "\u2039").replace(">", "\u203a")


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at the best boundary available."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"))
        if cut < limit // 2:
            sentence = max((m.end() for m in re.finditer(r"[.!?…]\s", window)), default=-1)
            cut = sentence if sentence >= limit // 2 else window.rfind(" ")
        if cut <= 0:
            cut = limit  # one unbroken word longer than the limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def sections(text: str) -> list[Block]:
    """Sections of escaped text. ``verbatim``: Slack adds no links or mentions of its own to what a
    document says; the markup IMP writes itself (mentions of owners, bold) still works."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": part, "verbatim": True}}
            for part in split_text(text)]


def context(text: str, *, verbatim: bool = False) -> Block:
    element: Block = {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}
    if verbatim:  # it holds words from a document or a person
        element["verbatim"] = True
    return {"type": "context", "elements": [element]}


def _markdown_to_mrkdwn(text: str) -> str:
    text = escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)  # **bold** -> *bold*
    return re.sub(r"^#{1,6}\s*(.+)$", r"*\1*", text, flags=re.M)




def source_line(n: int, answer: Answer) -> str:
    chunk = next(c.chunk for c in answer.citations if c.n == n)
    return f"*[{n}]* {escape(locator(chunk))} — _“{escape(snippet(chunk.text, answer.text, n))}”_"


def answer_blocks(answer: Answer, *, share: bool = False, shared_by: str | None = None) -> list[Block]:
    """The answer, its numbered sources, and the invitation to rate it."""
    blocks = sections(_markdown_to_mrkdwn(answer.text) or "_(no answer)_")
    if answer.citations:
        lines = [source_line(c.n, answer) for c in answer.citations]
        blocks.append(context("*Sources*"))
        blocks += sections("\n".join(lines))
    footer = FEEDBACK_HINT
    if shared_by:
        footer = f"Shared by <@{shared_by}> · asked: “{escape(answer.question[:200])}” · {FEEDBACK_HINT}"
    blocks.append(context(footer, verbatim=shared_by is not None))
    if share:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": SHARE_ACTION, "value": answer.answer_id,
            "text": {"type": "plain_text", "text": "Share in channel"}}]})
    return blocks


def answer_text(answer: Answer) -> str:
    """The fallback ``text``: notifications and screen readers. Slack reads it as markup, so it is escaped."""
    return split_text(escape(answer.text or "(no answer)"), TEXT_LIMIT)[0]


def batches(blocks: list[Block], limit: int = MESSAGE_BLOCKS) -> list[list[Block]]:
    """Blocks split over as many messages as Slack's per-message limit needs."""
    return [blocks[i:i + limit] for i in range(0, len(blocks), limit)] or [[]]


# -- minutes ---------------------------------------------------------------------------


def _moment(evidence: tuple[Evidence, ...], timed: bool) -> str:
    if not evidence:
        return ""
    e = evidence[0]
    at = where(e, timed)
    who = f"{e.speaker}, " if e.speaker else ""
    return f" _({escape(who)}{at})_" if at else ""


def minutes_blocks(minutes: Minutes, *, source: str, owners: dict[str, str] | None = None,
                   requested_by: str | None = None) -> list[Block]:
    """Summary, decisions, action items and open questions; owners as mentions where known."""
    owners = owners or {}
    facts = [f"*{escape(source)}*"]
    if minutes.date:
        facts.append(escape(minutes.date))
    if minutes.attendees:
        facts.append("attendees: " + escape(", ".join(minutes.attendees)))
    if requested_by:
        facts.append(f"requested by <@{requested_by}>")
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": unmarked(f"Minutes: {minutes.title}")[:150]}},
        context(" · ".join(facts), verbatim=True),
    ]
    blocks += sections("*Summary*\n" + (escape(minutes.summary) or "_No summary._"))

    def listing(title: str, lines: list[str], empty: str) -> None:
        blocks.extend(sections(f"*{title}*\n" + ("\n".join(lines) if lines else f"_{empty}_")))

    listing("Decisions", [f"• {escape(d.text)}{_moment(d.evidence, minutes.timed)}" for d in minutes.decisions],
            "No decisions were recorded.")
    actions = []
    for a in minutes.action_items:
        owner = f"<@{owners[a.owner]}>" if a.owner and a.owner in owners else escape(a.owner or "unassigned")
        due = f" — due {escape(a.due)}" if a.due else (f" — {escape(a.due_text)}" if a.due_text else "")
        actions.append(f"• {owner}: {escape(a.task)}{due}{_moment(a.evidence, minutes.timed)}")
    listing("Action items", actions, "No action items.")
    if minutes.open_questions:
        listing("Open questions", [f"• {escape(q.text)}{_moment(q.evidence, minutes.timed)}"
                                   for q in minutes.open_questions], "")
    blocks.append(context("Every item cites the moment that supports it; the full minutes with quotes are "
                          "in the Markdown file in the thread."))
    if len(blocks) > MESSAGE_BLOCKS:
        blocks = blocks[:MESSAGE_BLOCKS - 1] + [context("… more in the Markdown file in the thread.")]
    return blocks


def minutes_text(minutes: Minutes, source: str) -> str:
    return split_text(escape(f"Minutes of {source}: {minutes.summary}"), TEXT_LIMIT)[0]


# -- ingestion and progress ------------------------------------------------------------


def indexed_text(record: DocumentRecord, name: str) -> str:
    """What was indexed, as a person would say it: pages or duration, and passages."""
    return (f":white_check_mark: Indexed *{escape(name)}* ({extent(record)}). "
            "Members of this channel can now ask me about it.")


def progress_text(verb: str, name: str, stage: str, done: float, total: float | None) -> str:
    line = f":hourglass_flowing_sand: {verb} *{escape(name)}*"
    if stage and stage not in ("queued", "started"):
        line += f" — {escape(stage)}"
    if total:
        pct = max(0, min(100, round(100 * done / total)))
        line += f" ({pct}%"
        # seconds of audio while transcribing; other stages count steps, shown as a percentage only
        line += f", {clock(done)} of {clock(total)})" if "transcrib" in stage else ")"
    elif stage == "queued":
        line += " — waiting for earlier work to finish"
    return line
