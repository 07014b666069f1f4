"""How a cited source is quoted beside an answer: the one sentence of the source that best matches what the
answer says with its ``[n]`` marker, shortened to a line. Every chat front door shows sources this way."""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"(?<=[.!?…])\s+")
_WORD = re.compile(r"\w+")


def snippet(source_text: str, answer_text: str, n: int, limit: int = 160) -> str:
    """The sentence of a source that best matches what the answer says with ``[n]``."""
    cited = " ".join(s for s in _SENTENCE.split(answer_text) if f"[{n}]" in s) or answer_text
    words = {w for w in _WORD.findall(cited.lower()) if len(w) > 2}
    sentences = _SENTENCE.split(" ".join(source_text.split()))
    best = max(sentences, key=lambda s: len(words & set(_WORD.findall(s.lower()))))
    return best if len(best) <= limit else best[:limit - 1].rsplit(" ", 1)[0] + "…"
