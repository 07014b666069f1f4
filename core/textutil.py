"""Small text helpers shared by loaders and writers: logical lines, sentences and their content words,
and spoken text made readable.

Every pattern here reads whole documents or turns of untrusted text and runs in linear time.
"""

from __future__ import annotations

import re
from functools import lru_cache

_UNIT_ENDS = frozenset(".!?:;)]\"'»”")
_CONTINUES = re.compile(r"^[a-z0-9(,;%€$£–-]")


def reflow(text: str) -> list[str]:
    """Logical lines: hard-wrapped prose is joined back, one-unit-per-line text is kept.

    A line continues the previous one when the previous does not end a unit
    (sentence punctuation, a colon, a closing bracket) and this one starts the
    way a continuation does (lowercase, a digit, a comma).
    """
    # Each logical line is kept as its physical lines and joined once at the end: joining as we go,
    # and testing the joined line's end with a regex, made a file of short wrapped lines quadratic
    # (100,000 lines took 90 s).
    out: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            out.append([])
            continue
        if out and out[-1] and out[-1][-1][-1] not in _UNIT_ENDS and _CONTINUES.match(line):
            out[-1].append(line)
        else:
            out.append([line])
    return [" ".join(parts) for parts in out if parts]


# ---------------------------------------------------------------- sentences and content words

# A citation marker ("[1]", "[2, 3]", "[2;3]") with the spaces before it. Tried only where a run of
# spaces starts, and possessive: a long run of spaces not followed by "[" costs one pass, not one per
# space (this reads model drafts and whole source texts).
CITATION = re.compile(r"(?<!\s)\s*+\[(\d++(?:\s*+[,;]\s*+\d++)*+)\]")
_SPLIT = re.compile(r"(?<=[.!?])\s+(?!\[)|(?<=\])\s+(?=[A-Z0-9\"'(])|\n+")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those there here they them their he she his her we our you your i me my not no yes do does did done "
    "have has had will would can could should may might must shall so than then also which who whom what when "
    "where why how all any each some such only own same very just about into over under again further once "
    "said say says according source sources".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def content_words(text: str) -> set[str]:
    """The stemmed words of ``text`` that carry meaning: no stop words, no citation markers."""
    words = [w.lower() for w in _WORD.findall(CITATION.sub(" ", text))]
    return set(_stemmer().stemWords([w for w in words if w not in _STOP and (len(w) > 1 or w.isdigit())]))


def split_sentences(text: str) -> list[str]:
    """Sentences, split after . ! ? (a citation marker stays with its sentence) and at line breaks."""
    return [s.strip() for s in _SPLIT.split(text.strip()) if s and s.strip()]


# ---------------------------------------------------------------- spoken text


def plain(text: str) -> str:
    """Typographic apostrophes made plain: same length, so match offsets stay valid."""
    return text.replace("\u2019", "'").replace("\u2018", "'")


# These patterns read whole turns of untrusted text, so each runs in linear time: a tag stops at
# the next "<" (an unclosed "<<<<…" costs one pass, not one pass per "<"), a run of spaces is tried
# from its first character only ((?<!\s) with possessive \s++), repeated words are at most 64
# characters long and taken whole ({1,64}+).
_TAG = re.compile(r"<[^<>]*+>|\{[^{}]*+\}")  # <laugh/>, {disfmarker}, {vocalsound}
_FILLER = re.compile(r"(?i)\b(?:u+h+m*|u+m+|e+h*m+|e+r+m+|h+m+|m+-?h+m+|mm+)\b[,.]?\s*")
_LEAD = re.compile(r"(?i)^(?:(?:so|okay|ok|well|yeah|yes|right|and|but|also|alright|all right|now|then|anyway|"
                   r"you know|i mean|oh|ah)\b[\s,.;:!-]*+)+")
_PUNCT_SPACE = re.compile(r"(?<!\s)\s++(?:([,.;:!?%])|(?=(?:'s|'re|'ve|'ll|'d|'m|n't)\b))")
_REPEAT = re.compile(r"(?i)\b([\w']{1,64}+)(?:\s++\1\b)+")  # "those those" -> "those"
_SEPARATORS = re.compile(r"([,;])(?:\s*+[,;])+")


def clean(sentence: str, *, lead: bool = True) -> str:
    """The sentence without fillers, markup tags and stray spaces, first letter capitalised.

    ``lead`` also drops the words a speaker starts with ("So, okay, and ...").
    """
    s = plain(_TAG.sub(" ", sentence))
    s = _FILLER.sub("", s)
    s = _PUNCT_SPACE.sub(r"\1", re.sub(r"\s+", " ", s))
    s = _REPEAT.sub(r"\1", s)
    s = _SEPARATORS.sub(r"\1", s).strip()
    s = _broken_off((_LEAD.sub("", s) if lead else s).strip(" ,;:-"))
    return s[:1].upper() + s[1:] if s else s


def _broken_off(s: str) -> str:
    """A sentence the speaker broke off ("And -.") without its dash: "And.".

    A scan from the end: a regex anchored at the end is still tried from every dash of a long run.
    """
    end = s[-1] if s[-1:] in (".", "!", "?") else ""
    body = s[:len(s) - len(end)].rstrip()
    return body.rstrip("-").rstrip() + end if body.endswith("-") else s


def key(text: str) -> str:
    """A normalised form for spotting near-identical items."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))
