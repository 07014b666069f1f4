"""WebVTT and SRT loading: one segment per cue, with times in seconds and speaker.

Both formats are parsed here (they are small) so that a malformed timestamp is
reported with its line number instead of being skipped silently.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import CorruptDocument
from core.ingest.loaders.text import read_text
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"^(?:(\d+):)?([0-5]?\d):([0-5]\d)[.,](\d{1,3})$")
# A tag ends at ">" and never spans a "<" (or "{" for overrides): an unclosed "<v <v <v ..." costs
# one pass instead of one pass per "<" (quadratic: 60 KB of "<v " took 14 s).
_VOICE = re.compile(r"<v(?:\.[^\s<>]*+)?\s++([^<>]++)>")
_TAG = re.compile(r"<[^<>]*+>")
_ASS_OVERRIDE = re.compile(r"\{\\[^{}]*+\}")  # {\an8}-style positioning some SRT files carry
_SPEAKER_PREFIX = re.compile(r"^([^:]{1,40}):\s+(\S.*)$", re.DOTALL)
_SENTENCE_PUNCTUATION = re.compile(r"[.!?;,\"“”]")
# A longer "prefix" is a clause ("The plan we agreed on: ..."), not a name.
_MAX_SPEAKER_WORDS = 4
_VTT_SKIPPED_BLOCKS = ("NOTE", "STYLE", "REGION")


@dataclass
class _Cue:
    start: float
    end: float
    lines: list[str] = field(default_factory=list)


def load_vtt(path: Path) -> LoadedDocument:
    lines = read_text(path).lstrip("\ufeff").splitlines()
    blocks = _blocks(lines)
    title: str | None = None
    if lines and lines[0].startswith("WEBVTT"):
        title = lines[0][len("WEBVTT") :].strip(" \t-") or None
        # The header block holds metadata ("Kind: captions"); a file that omits the
        # blank line after it starts its first cue inside that block.
        header = blocks.pop(0)
        timing_at = next((i for i, (_, line) in enumerate(header) if "-->" in line), None)
        if timing_at is not None:
            blocks.insert(0, header[timing_at:])
    else:
        log.debug("%s: no WEBVTT header, reading cues anyway", path.name)
    kept = [block for block in blocks if not _is_vtt_metadata(block)]
    return LoadedDocument(kind="vtt", segments=_segments(_cues(kept, fmt="WebVTT")), title=title)


def load_srt(path: Path) -> LoadedDocument:
    lines = read_text(path).lstrip("\ufeff").splitlines()
    return LoadedDocument(kind="srt", segments=_segments(_cues(_blocks(lines), fmt="SRT")))


def _is_vtt_metadata(block: list[tuple[int, str]]) -> bool:
    first_word = block[0][1].split(maxsplit=1)[0]
    return first_word in _VTT_SKIPPED_BLOCKS and not any("-->" in line for _, line in block)


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Split into blank-line separated blocks of (1-based line number, line)."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line.rstrip()))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _cues(blocks: list[list[tuple[int, str]]], *, fmt: str) -> list[_Cue]:
    cues: list[_Cue] = []
    for block in blocks:
        timing_at = next((i for i, (_, line) in enumerate(block) if "-->" in line), None)
        if timing_at is None or timing_at > 1:
            if block[0][1].strip().isdigit() and len(block) > 1:
                number, line = block[1]
                raise CorruptDocument(
                    f"{fmt} line {number}: expected a cue timing 'start --> end', got {line!r}"
                )
            if cues:
                # A blank line inside a cue's text: the rest still belongs to it.
                cues[-1].lines.extend(line for _, line in block)
            else:
                log.debug("%s block without timing at line %d skipped", fmt, block[0][0])
            continue
        number, timing = block[timing_at]
        start, end = _parse_timing(timing, number, fmt)
        cues.append(_Cue(start=start, end=end, lines=[line for _, line in block[timing_at + 1 :]]))
    return cues


def _parse_timing(line: str, number: int, fmt: str) -> tuple[float, float]:
    left, _, right = line.partition("-->")
    right_parts = right.split()
    start = _seconds(left.strip(), number, fmt)
    end = _seconds(right_parts[0] if right_parts else "", number, fmt)
    if end < start:
        raise CorruptDocument(f"{fmt} line {number}: cue ends before it starts: {line.strip()!r}")
    return start, end


def _seconds(stamp: str, number: int, fmt: str) -> float:
    match = _TIMESTAMP.match(stamp)
    if match is None:
        raise CorruptDocument(
            f"{fmt} line {number}: malformed timestamp {stamp!r} "
            "(expected hh:mm:ss,mmm or hh:mm:ss.mmm)"
        )
    hours, minutes, seconds, fraction = match.groups()
    return (
        int(hours or 0) * 3600
        + int(minutes) * 60
        + int(seconds)
        + int(fraction.ljust(3, "0")) / 1000
    )


def _segment(cue: _Cue) -> Segment:
    raw = " ".join(line.strip() for line in cue.lines)
    voice = _VOICE.search(raw)
    speaker = voice.group(1).strip() if voice else None
    text = " ".join(html.unescape(_TAG.sub("", _ASS_OVERRIDE.sub("", raw))).split())
    if speaker is None:
        speaker, text = _split_speaker_prefix(text)
    return Segment(text=text, start=cue.start, end=cue.end, speaker=speaker)


def _split_speaker_prefix(text: str) -> tuple[str | None, str]:
    match = _SPEAKER_PREFIX.match(text)
    if match is None:
        return None, text
    name = match.group(1).strip()
    if (
        not name
        or _SENTENCE_PUNCTUATION.search(name)
        or len(name.split()) > _MAX_SPEAKER_WORDS
    ):
        return None, text
    return name, match.group(2).strip()


def _segments(cues: list[_Cue]) -> list[Segment]:
    return [segment for segment in map(_segment, cues) if segment.text]
