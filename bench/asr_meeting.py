"""The "meeting-dense" recording of bench/asr_speed.py: real meeting excerpts and read speech back to back.

Source folder (``--meeting DIR``, outside the repo, never read by the product):
- meeting excerpts: the ``*.wav`` files at the top of DIR (AMI excerpts trn00-09, dev00-01, tst00-01 and
  pyannote's ``sample.wav``, 30 s each; files under 5 s, such as ``empty.wav``, are left out);
- read speech: every ``*.flac`` under ``DIR/speakers`` (LibriSpeech utterances, one folder per speaker).

Each meeting excerpt is cut to the span from its first to its last labelled speech (the reference
``*.rttm`` in DIR, human labels, not the VAD that measures silence); excerpts with under 5 s of labelled
speech, or whose span is less than half speech, are left out (trn01, trn02 and tst01 of the AMI set:
0.7-6 s of speech in 30 s). The recording alternates one meeting excerpt (``sample.wav`` first, as it
has a reference, then by name) with read clips of about the same length (speakers taken in turn, so two read clips in a row come
from different speakers), with no pause added between clips; the pauses inside the clips (turn-taking in
the meetings) are kept as they were recorded. The sources are taken in a fixed order and cycled if
``minutes`` asks for more than they hold (the printed composition says how many clips were repeated);
the last clip is cut at the requested length.

Only ``sample.wav`` has a reference transcript (``sample.stm``); when the recording contains it whole,
its span in the recording is returned so the caller can score the words transcribed in that span.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.speech.base import SAMPLE_RATE

MIN_CLIP_SECONDS = 5.0
MIN_LABELLED_SPEECH = 0.5  # meeting excerpts whose labelled speech span is less speech than this are left out


def decode(path: Path) -> np.ndarray:
    """16 kHz mono int16 via ffmpeg (list arguments, no shell)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-"]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, dtype=np.int16)


@dataclass
class Composition:
    """What went into the meeting-dense recording."""

    meeting_s: float = 0.0
    read_s: float = 0.0
    meeting_clips: int = 0
    meeting_labelled_speech_s: float = 0.0  # speech in the meeting parts by the reference RTTM labels
    meeting_skipped: tuple[str, ...] = ()
    read_clips: int = 0
    repeated_clips: int = 0
    sample_span_s: tuple[float, float] | None = None  # where sample.wav lies, when it is in the recording whole

    def describe(self) -> str:
        return (f"{self.meeting_clips} meeting excerpts ({self.meeting_s / 60:.1f} min) and {self.read_clips} "
                f"LibriSpeech read clips ({self.read_s / 60:.1f} min) interleaved back to back, no pauses added"
                + (f", {self.repeated_clips} clips repeated" if self.repeated_clips else "")
                + (f"; meeting parts {self.meeting_labelled_speech_s / self.meeting_s:.0%} speech by their "
                   f"reference labels" if self.meeting_s else "")
                + (f"; left out as mostly silent by their labels: {', '.join(self.meeting_skipped)}"
                   if self.meeting_skipped else ""))


def meeting_sources(folder: Path) -> tuple[list[Path], list[list[Path]]]:
    """(meeting excerpts, read clips grouped by speaker), both in a fixed order; raises if either is missing."""
    if not folder.is_dir():
        raise SystemExit(f"--meeting: {folder} is not a folder")
    meetings = [p for p in sorted(folder.glob("*.wav"), key=lambda p: (p.name != "sample.wav", p.name))
                if p.is_file() and p.stat().st_size > MIN_CLIP_SECONDS * SAMPLE_RATE * 2]
    by_speaker: dict[Path, list[Path]] = {}
    for p in sorted((folder / "speakers").rglob("*.flac")):
        if p.is_file():
            by_speaker.setdefault(p.parent, []).append(p)
    if not meetings or not by_speaker:
        raise SystemExit(f"--meeting: {folder} needs meeting excerpts (*.wav) and read speech (speakers/**/*.flac)")
    return meetings, list(by_speaker.values())


def speech_labels(folder: Path) -> dict[str, list[tuple[float, float]]]:
    """Reference speech per recording from the ``*.rttm`` files at the top of ``folder``: merged (start, end)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for rttm in sorted(folder.glob("*.rttm")):
        for line in rttm.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            try:
                if parts[0] == "SPEAKER" and float(parts[4]) > 0:
                    spans.setdefault(parts[1], []).append((float(parts[3]), float(parts[3]) + float(parts[4])))
            except (IndexError, ValueError):
                continue  # not a speech line
    merged: dict[str, list[tuple[float, float]]] = {}
    for uri, items in spans.items():
        out: list[tuple[float, float]] = []
        for start, end in sorted(items):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        merged[uri] = out
    return merged


def _trimmed(path: Path, labels: dict[str, list[tuple[float, float]]]) -> tuple[np.ndarray, float] | None:
    """The excerpt cut to its first..last labelled speech, and the labelled speech in it (s); None when that
    span is mostly silence or holds under 5 s of speech. Without labels: the whole excerpt, its speech
    counted as its whole length (unknown)."""
    audio = decode(path)
    spans = labels.get(path.stem)
    if not spans:
        return audio, len(audio) / SAMPLE_RATE
    start, end = int(spans[0][0] * SAMPLE_RATE), int(min(spans[-1][1] * SAMPLE_RATE, len(audio)))
    speech = sum(e - s for s, e in spans)
    if speech < MIN_CLIP_SECONDS or speech < MIN_LABELLED_SPEECH * (end - start) / SAMPLE_RATE:
        return None
    return audio[start:end], speech


def _read_order(by_speaker: list[list[Path]]) -> list[Path]:
    """Read clips with speakers taken in turn: first clip of every speaker, then the second, ..."""
    order, depth = [], max(len(v) for v in by_speaker)
    for i in range(depth):
        order.extend(v[i] for v in by_speaker if i < len(v))
    return order


def build_meeting(out: Path, minutes: float, folder: Path) -> tuple[float, Composition]:
    """Write the meeting-dense recording to ``out`` (16 kHz mono FLAC), streaming; returns (seconds, composition)."""
    meetings, by_speaker = meeting_sources(folder)
    reads, labels = _read_order(by_speaker), speech_labels(folder)
    kept = {p: t for p in meetings if (t := _trimmed(p, labels)) is not None}
    if not kept:
        raise SystemExit(f"--meeting: every meeting excerpt in {folder} is mostly silence by its labels")
    skipped = tuple(p.name for p in meetings if p not in kept)
    meetings = list(kept)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE),
           "-i", "pipe:0", "-c:a", "flac", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    target, written = int(minutes * 60 * SAMPLE_RATE), 0
    comp, seen = Composition(), set()
    m = r = 0
    try:
        while written < target:
            # one meeting excerpt, then read clips of at least the same length
            path = meetings[m % len(meetings)]
            m += 1
            whole, speech = kept[path]
            clip = whole[: target - written]
            if path.name == "sample.wav" and path not in seen and len(clip) == len(whole):
                comp.sample_span_s = (written / SAMPLE_RATE, (written + len(clip)) / SAMPLE_RATE)
            comp.meeting_labelled_speech_s += speech * len(clip) / len(whole)
            proc.stdin.write(clip.tobytes())
            written += len(clip)
            comp.meeting_s += len(clip) / SAMPLE_RATE
            comp.meeting_clips += 1
            comp.repeated_clips += path in seen
            seen.add(path)
            read_goal = written + len(clip)
            while written < min(read_goal, target):
                path = reads[r % len(reads)]
                r += 1
                clip = decode(path)[: target - written]
                proc.stdin.write(clip.tobytes())
                written += len(clip)
                comp.read_s += len(clip) / SAMPLE_RATE
                comp.read_clips += 1
                comp.repeated_clips += path in seen
                seen.add(path)
    finally:
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not write {out}")
    comp.meeting_skipped = skipped
    return written / SAMPLE_RATE, comp


def sample_reference(folder: Path) -> str | None:
    """The words of ``sample.stm`` (format: uri channel speaker start end words...), or None without it."""
    stm = folder / "sample.stm"
    if not stm.is_file():
        return None
    lines = [ln.split(maxsplit=5) for ln in stm.read_text(encoding="utf-8", errors="replace").splitlines()]
    return " ".join(parts[5] for parts in lines if len(parts) == 6) or None
