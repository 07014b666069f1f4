"""What minutes are made from: a recording, a transcript file, or an ingested document, as a Meeting.

A recording is transcribed; WebVTT and SRT cues, the JSON of ``imp transcribe``
and stored transcripts keep their times; a text transcript has one turn a line,
"Speaker: text" or "(Speaker) text" (a line without a speaker continues the
previous speaker). One turn per recognised segment or cue, so evidence points
at a sentence's moment rather than a minute-long monologue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from core.errors import EmptyDocument, UnsupportedFormat
from core.ingest.loaders import MEDIA, detect_kind, load_file
from core.ingest.loaders.text import read_text
from core.models import Meeting, Segment, SpeechSegment, Transcript, Turn
from core.formats.transcripts import from_dict

_PAREN_SPEAKER = re.compile(r"^\(([^()]{1,60})\)\s*(\S.*)$")  # "(PERSON6) text", as ELITR writes it
_COLON_SPEAKER = re.compile(r"^([^:\[\]()]{1,40}):\s+(\S.*)$")  # "Project Manager: text"
_TEXT_KINDS = frozenset({"text", "markdown"})
_MAX_SPEAKER_WORDS = 4


def meeting_from_segments(segments: Iterable[Segment | SpeechSegment], *, title: str | None = None,
                          date: str | None = None, source: str | None = None) -> Meeting:
    turns = [Turn(index=i, speaker=s.speaker, text=" ".join(s.text.split()), start=s.start, end=s.end)
             for i, s in enumerate((s for s in segments if s.text.strip()), 1)]
    if not turns:
        raise EmptyDocument(f"{source or 'the transcript'} has no words to write minutes from")
    return Meeting(turns=turns, title=title, date=date, source=source)


def meeting_from_transcript(t: Transcript, *, title: str | None = None, date: str | None = None,
                            source: str | None = None) -> Meeting:
    return meeting_from_segments(t.segments, title=title, date=date, source=source)


def meeting_from_text(text: str, *, title: str | None = None, date: str | None = None,
                      source: str | None = None) -> Meeting:
    """Turns from "Speaker: text" or "(Speaker) text" lines; other lines continue the last speaker."""
    turns: list[Turn] = []
    speaker: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _PAREN_SPEAKER.match(line) or _COLON_SPEAKER.match(line)
        # A longer "name" is a clause ("The plan we agreed on: ..."), not a speaker.
        if m and len(m.group(1).split()) <= _MAX_SPEAKER_WORDS:
            speaker, line = m.group(1).strip(), m.group(2).strip()
        turns.append(Turn(index=len(turns) + 1, speaker=speaker, text=" ".join(line.split())))
    if not turns:
        raise EmptyDocument(f"{source or 'the transcript'} has no words to write minutes from")
    return Meeting(turns=turns, title=title, date=date, source=source)


def load_meeting(path: Path, *, transcribe=None, max_chars: int = 5_000_000) -> Meeting:
    """A Meeting from a file: a recording (needs ``transcribe``: path → (Transcript, date)) or a transcript."""
    path = Path(path)
    kind = detect_kind(path)
    name = path.name
    if kind == MEDIA:
        if transcribe is None:
            raise UnsupportedFormat(f"{name} is a recording, and speech recognition is not configured")
        transcript, date = transcribe(path)
        return meeting_from_transcript(transcript, title=path.stem, date=date, source=name)
    if kind in ("vtt", "srt"):
        loaded = load_file(path, max_chars=max_chars, kind=kind)
        return meeting_from_segments(loaded.segments, title=loaded.title or path.stem, source=name)
    if kind in _TEXT_KINDS:
        text = read_text(path)
        if len(text) > max_chars:
            raise UnsupportedFormat(f"{name} has more than {max_chars:,} characters; too long for minutes")
        if text.lstrip().startswith("{"):
            return meeting_from_transcript(_transcript_json(text, name), title=path.stem, source=name)
        return meeting_from_text(text, title=path.stem, source=name)
    raise UnsupportedFormat(
        f"{name} is {kind}: minutes are made from a recording or a transcript "
        "(WebVTT, SRT, imp transcribe JSON, or text with one 'Speaker: text' turn a line)"
    )


def _transcript_json(text: str, name: str) -> Transcript:
    try:
        data = json.loads(text)
        return from_dict(data)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UnsupportedFormat(f"{name} is JSON but not a transcript from `imp transcribe` ({e})") from e
