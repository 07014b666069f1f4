"""Prompts, and packing numbered sources into the model's context window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.formats.locations import locator
from core.models import Hit, Message

SYSTEM = (
    "You answer questions for employees using only the numbered sources provided. "
    "After each sentence, cite the sources that support it, like [1] or [2][3]. "
    "Cite only source numbers that appear below. If the sources do not contain the answer, "
    "reply exactly: NOT FOUND. Be brief: at most three sentences."
)

REWRITE = (
    "Rewrite the user's last question so it can be understood without the conversation. "
    "Reply with the rewritten question only."
)

TRUNCATED = " […shortened to fit]"


@dataclass(frozen=True, slots=True)
class Packed:
    """The sources that fit, numbered from 1, and notes on any that were shortened or left out."""

    hits: list[Hit]
    texts: list[str]
    notes: list[str]


def pack_sources(hits: list[Hit], budget: int, count: Callable[[str], int]) -> Packed:
    """Number and fit sources into ``budget`` tokens, in rank order.

    A source that does not fit whole is shortened (and says so) when a useful
    part fits; the rest are left out, and the notes say which.
    """
    kept: list[Hit] = []
    texts: list[str] = []
    notes: list[str] = []
    left = budget
    for hit in hits:
        n = len(kept) + 1
        header = f"[{n}] {locator(hit.chunk)}\n"
        body = hit.chunk.text
        cost = count(header + body + "\n\n")
        if cost <= left:
            kept.append(hit)
            texts.append(body)
            left -= cost
            continue
        room = left - count(header + TRUNCATED + "\n\n")
        if room >= 48:
            ratio = room / max(1, count(body))
            cut = body[: int(len(body) * ratio * 0.95)]
            while cut and count(cut) > room:
                cut = cut[: int(len(cut) * 0.9)]
            kept.append(hit)
            texts.append(cut + TRUNCATED)
            notes.append(f"source {n} ({locator(hit.chunk)}) was shortened to fit the model's context")
            left = 0
        skipped = len(hits) - len(kept)
        if skipped:
            notes.append(f"{skipped} lower-ranked source(s) did not fit the model's context and were left out")
        break
    return Packed(kept, texts, notes)


def source_block(packed: Packed) -> str:
    return "\n\n".join(f"[{i}] {locator(h.chunk)}\n{t}" for i, (h, t) in enumerate(zip(packed.hits, packed.texts,
                                                                                        strict=True), 1))


def answer_messages(question: str, packed: Packed) -> list[Message]:
    return [Message("system", SYSTEM),
            Message("user", f"Sources:\n\n{source_block(packed)}\n\nQuestion: {question}")]


def rewrite_messages(history: list[Message], question: str) -> list[Message]:
    convo = "\n".join(f"{m.role}: {m.content}" for m in history[-6:])
    return [Message("system", REWRITE), Message("user", f"{convo}\nuser: {question}")]
