"""Citation validation: every [n] names a source that was given, and every claim is supported.

A model's draft is split into sentences. Citations to sources that were not
given are removed. A sentence is kept only when the sources it cites (or, if it
cites none, some given source) contain most of its content words; a sentence
without support is dropped. Citations are renumbered in order of first use. If
nothing supported remains, the answer abstains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.models import Hit
from core.textutil import CITATION, content_words, split_sentences


def citations(text: str) -> list[int]:
    """The source numbers a text cites, in order ("[1]", "[2, 3]" and "[2;3]" alike)."""
    return [int(n) for group in CITATION.findall(text) for n in re.split(r"[,;]", group)]


def without_citations(text: str) -> str:
    """The text with its citation markers removed."""
    return CITATION.sub("", text).strip()


SUPPORT_THRESHOLD = 0.5
MIN_CONTENT_WORDS = 2


def support(sentence: str, source: str) -> float:
    """Share of the sentence's content words that the source contains."""
    words = content_words(sentence)
    if not words:
        return 1.0
    return len(words & content_words(source)) / len(words)


@dataclass
class Checked:
    """The outcome of validation: clean text, the sources it cites (renumbered), notes."""

    text: str
    cited: list[Hit]
    abstained: bool
    notes: list[str] = field(default_factory=list)


def validate(draft: str, hits: list[Hit], texts: list[str] | None = None) -> Checked:
    """Keep the supported sentences of ``draft`` and make its citations valid.

    ``texts`` are the source texts as the model saw them (possibly shortened);
    they default to the hits' chunk texts.
    """
    texts = texts if texts is not None else [h.chunk.text for h in hits]
    words = [content_words(t) for t in texts]
    notes: list[str] = []
    order: list[int] = []  # original source numbers in order of first use
    out: list[str] = []
    for sentence in split_sentences(draft):
        claimed = citations(sentence)
        bare = without_citations(sentence)
        invalid = [n for n in claimed if not 1 <= n <= len(hits)]
        if invalid:
            notes.append(f"removed citation(s) {sorted(set(invalid))} to sources that were not given")
        valid = list(dict.fromkeys(n for n in claimed if 1 <= n <= len(hits)))
        sw = content_words(bare)
        if len(sw) < MIN_CONTENT_WORDS:
            # Too short to claim anything ("Yes.", "In short:"); kept only beside a supported sentence.
            if bare and out:
                out.append(bare)
            continue
        ratio = {n: len(sw & words[n - 1]) / len(sw) for n in range(1, len(hits) + 1)}
        backed = [n for n in valid if ratio[n] >= SUPPORT_THRESHOLD]
        if not backed:
            best = max(ratio, key=ratio.get, default=None)
            if best is None or ratio[best] < SUPPORT_THRESHOLD:
                notes.append(f"dropped a sentence no source supports: {bare[:80]!r}")
                continue
            if valid:
                notes.append(f"re-attributed a sentence to source {best}, which supports it")
            backed = [best]
        for n in backed:
            if n not in order:
                order.append(n)
        marks = "".join(f"[{order.index(n) + 1}]" for n in backed)
        out.append(_attach(bare, marks))
    if not order:
        return Checked("", [], True, notes)
    return Checked(" ".join(out), [hits[n - 1] for n in order], False, notes)


def _attach(sentence: str, marks: str) -> str:
    """Put citation marks before the sentence's final punctuation."""
    if sentence and sentence[-1] in ".!?":
        return f"{sentence[:-1]} {marks}{sentence[-1]}"
    return f"{sentence} {marks}"
