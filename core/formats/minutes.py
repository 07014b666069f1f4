"""Minutes as JSON (lossless, also how jobs store them) and as Markdown for people."""

from __future__ import annotations

from typing import Any

from core.formats.locations import clock
from core.models import ActionItem, Decision, Evidence, Minutes, OpenQuestion, Topic

FORMATS = ("json", "markdown")


def _evidence(e: Evidence) -> dict[str, Any]:
    return {"quote": e.quote, "start": e.start, "end": e.end, "speaker": e.speaker, "turn": e.turn}


def to_dict(m: Minutes) -> dict[str, Any]:
    return {
        "title": m.title,
        "date": m.date,
        "attendees": list(m.attendees),
        "summary": m.summary,
        "topics": [{"title": t.title, "start": t.start, "end": t.end} for t in m.topics],
        "decisions": [{"text": d.text, "evidence": [_evidence(e) for e in d.evidence]} for d in m.decisions],
        "action_items": [{"owner": a.owner, "task": a.task, "due": a.due, "due_text": a.due_text,
                          "evidence": [_evidence(e) for e in a.evidence]} for a in m.action_items],
        "open_questions": [{"text": q.text, "evidence": [_evidence(e) for e in q.evidence]}
                           for q in m.open_questions],
        "timed": m.timed,
        "model": m.model,
        "notes": list(m.notes),
    }


def _evidence_of(items: list[dict]) -> tuple[Evidence, ...]:
    return tuple(Evidence(quote=e["quote"], turn=int(e["turn"]), start=e.get("start"), end=e.get("end"),
                          speaker=e.get("speaker")) for e in items)


def from_dict(d: dict[str, Any]) -> Minutes:
    return Minutes(
        title=d["title"], date=d.get("date"), attendees=list(d.get("attendees") or []), summary=d.get("summary", ""),
        topics=[Topic(t["title"], t.get("start"), t.get("end")) for t in d.get("topics") or []],
        decisions=[Decision(x["text"], _evidence_of(x["evidence"])) for x in d.get("decisions") or []],
        action_items=[ActionItem(task=x["task"], owner=x.get("owner"), due=x.get("due"), due_text=x.get("due_text"),
                                 evidence=_evidence_of(x["evidence"])) for x in d.get("action_items") or []],
        open_questions=[OpenQuestion(x["text"], _evidence_of(x["evidence"])) for x in d.get("open_questions") or []],
        timed=bool(d.get("timed")), model=d.get("model", ""), notes=list(d.get("notes") or []),
    )


def where(e: Evidence | Topic, timed: bool) -> str:
    """"12:31–12:58" for a recording, "turn 42" or "turns 40–44" for a text transcript."""
    if e.start is None:
        return ""
    if timed:
        end = e.end if e.end is not None else e.start
        return clock(e.start) if end == e.start else f"{clock(e.start)}–{clock(end)}"
    first, last = int(e.start), int(e.end if e.end is not None else e.start)
    return f"turn {first}" if first == last else f"turns {first}–{last}"


def _cite(evidence: tuple[Evidence, ...], timed: bool) -> str:
    parts = []
    for e in evidence:
        who = f"{e.speaker}, " if e.speaker else ""
        parts.append(f"> “{e.quote}” ({who}{where(e, timed)})")
    return "\n".join("  " + p for p in parts)


def to_markdown(m: Minutes) -> str:
    lines = [f"# {m.title}", ""]
    if m.date:
        lines.append(f"**Date:** {m.date}  ")
    if m.attendees:
        lines.append(f"**Attendees:** {', '.join(m.attendees)}")
    lines += ["", "## Summary", "", m.summary or "_No summary._", ""]
    if m.topics:
        lines += ["## Topics", ""]
        lines += [f"- {t.title} ({where(t, m.timed)})" for t in m.topics]
        lines.append("")
    lines += ["## Decisions", ""]
    for d in m.decisions:
        lines += [f"- {d.text}", _cite(d.evidence, m.timed)]
    if not m.decisions:
        lines.append("_None recorded._")
    lines += ["", "## Action items", ""]
    for a in m.action_items:
        owner = a.owner or "Unassigned"
        due = f" — due {a.due}" if a.due else (f" — {a.due_text}" if a.due_text else "")
        lines += [f"- [ ] **{owner}**: {a.task}{due}", _cite(a.evidence, m.timed)]
    if not m.action_items:
        lines.append("_None recorded._")
    if m.open_questions:
        lines += ["", "## Open questions", ""]
        for q in m.open_questions:
            lines += [f"- {q.text}", _cite(q.evidence, m.timed)]
    if m.notes:
        lines += ["", "---", ""] + [f"_{n}_  " for n in m.notes]
    return "\n".join(lines).rstrip() + "\n"


def render(m: Minutes, fmt: str) -> str:
    import json

    if fmt == "json":
        return json.dumps(to_dict(m), ensure_ascii=False, indent=2)
    if fmt == "markdown":
        return to_markdown(m)
    raise ValueError(f"unknown minutes format {fmt!r} (use {', '.join(FORMATS)})")
