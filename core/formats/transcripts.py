"""Transcript formats: JSON (lossless, also how transcripts are stored), WebVTT and SRT."""

from __future__ import annotations

from typing import Any

from core.models import SpeechSegment, Transcript, Word

FORMATS = ("json", "vtt", "srt")


def to_dict(t: Transcript) -> dict[str, Any]:
    return {
        "duration": t.duration,
        "language": t.language,
        "model": t.model,
        "speakers": t.speakers,
        "notes": list(t.notes),
        "segments": [
            {
                "start": s.start,
                "end": s.end,
                "speaker": s.speaker,
                "text": s.text,
                "words": [{"word": w.text, "start": w.start, "end": w.end, "confidence": w.confidence}
                          for w in s.words],
            }
            for s in t.segments
        ],
    }


def from_dict(d: dict[str, Any]) -> Transcript:
    segments = [
        SpeechSegment(
            start=float(s["start"]), end=float(s["end"]), text=s["text"], speaker=s.get("speaker"),
            words=tuple(Word(w["word"], float(w["start"]), float(w["end"]), w.get("confidence"))
                        for w in s.get("words") or ()),
        )
        for s in d.get("segments") or ()
    ]
    return Transcript(duration=float(d["duration"]), language=d.get("language"), segments=segments,
                      model=d.get("model", ""), speakers=d.get("speakers", "none"), notes=list(d.get("notes") or ()))


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(s: SpeechSegment, voice_tag: bool) -> str:
    # A cue's text must not contain the "-->" arrow or a blank line, which would end it early.
    text = " ".join(s.text.replace("-->", "->").split())
    if s.speaker:
        return f"<v {s.speaker}>{text}" if voice_tag else f"{s.speaker}: {text}"
    return text


def to_vtt(t: Transcript) -> str:
    lines = ["WEBVTT", ""]
    for s in t.segments:
        lines += [f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}", _cue_text(s, voice_tag=True), ""]
    return "\n".join(lines)


def to_srt(t: Transcript) -> str:
    lines: list[str] = []
    for i, s in enumerate(t.segments, 1):
        lines += [str(i), f"{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}", _cue_text(s, voice_tag=False), ""]
    return "\n".join(lines)


def render(t: Transcript, fmt: str) -> str:
    import json

    if fmt == "json":
        return json.dumps(to_dict(t), ensure_ascii=False, indent=2)
    if fmt == "vtt":
        return to_vtt(t)
    if fmt == "srt":
        return to_srt(t)
    raise ValueError(f"unknown transcript format {fmt!r} (use {', '.join(FORMATS)})")
