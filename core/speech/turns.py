"""Speakers for a mono recording's segments, cutting a segment where its speaker changes.

A recogniser segment may run over a change of speaker (batched Whisper gives sentences of
up to 30 s, sometimes two people's). The transcriber's workers therefore embed a segment
with word times not once but in overlapping stretches (``SpeakerEmbedder.embed_windows``,
a stretch every 0.77 s); short segments, or ones without word times, keep one embedding.
``label_and_split`` clusters every embedding of the recording together (one clustering,
whichever worker process embedded which piece), gives each word the speaker most of the
stretches over it belong to, and cuts a segment where consecutive words change speaker.
A stretch of under ``MIN_TURN_SECONDS`` between words of another speaker is taken as noise
and joins its neighbours. The parts keep the segment's text verbatim: each is the slice of
the segment's text from its first word to the next part's first word, so every word stays
an exact substring (citations quote the transcript). A segment whose words cannot be found
in its text in order is not cut; it takes its words' majority speaker.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from core.models import SpeechSegment, Word
from core.speech.diarize import (
    DEFAULT_THRESHOLD,
    _fill_from_neighbours,
    cluster_speakers,
)

log = logging.getLogger(__name__)

# A segment shorter than this gets one embedding (two stretches need at least ~2.4 s; a change of
# speaker inside a shorter one would leave each side under MIN_TURN_SECONDS anyway). Stretches stay
# inside their segment: stretches across segment ends mixed two voices so often (turns of 3-5 s)
# that average linkage merged the two speakers on tests/data/two_voices.flac.
MIN_SPLIT_SECONDS = 3.0
# A word with no stretch over it takes the nearest stretch's speaker if its centre is this close.
NEAR_SECONDS = 2.0
# A run of words shorter than this (first word's start to last word's end) is not a turn of its own.
MIN_TURN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class VoiceWindow:
    """A stretch of speech (seconds from the start of the recording) and its voice embedding."""

    start: float
    end: float
    embedding: np.ndarray


@dataclass(frozen=True, slots=True)
class PieceVoices:
    """A piece's voice embeddings: stretches over the words of its long segments, one for each other segment."""

    windows: tuple[VoiceWindow, ...] = ()
    embeddings: tuple[np.ndarray | None, ...] = ()  # one per segment; None for those the stretches cover


def _word_labels(words: tuple[Word, ...], starts: np.ndarray, ends: np.ndarray,
                 labels: np.ndarray) -> list[int | None]:
    """Each word's speaker: the majority of the stretches over its middle (ties: the stretch centred nearest)."""
    centres = (starts + ends) / 2
    out: list[int | None] = []
    for w in words:
        mid = (w.start + w.end) / 2
        if len(centres) == 0:
            out.append(None)
            continue
        nearest = int(np.argmin(np.abs(centres - mid)))
        over = np.flatnonzero((starts <= mid) & (mid <= ends))
        if len(over) == 0:
            out.append(int(labels[nearest]) if abs(centres[nearest] - mid) <= NEAR_SECONDS else None)
            continue
        votes = Counter(int(labels[i]) for i in over)
        top = max(votes.values())
        tied = [lab for lab, n in votes.items() if n == top]
        if len(tied) == 1:
            out.append(tied[0])
        else:
            out.append(min(tied, key=lambda lab: min(abs(centres[i] - mid) for i in over if labels[i] == lab)))
    return out


def _runs(words: tuple[Word, ...], labels: list[int]) -> list[tuple[int, int, int]]:
    """(first word, last word + 1, label) of each speaker's run, runs shorter than MIN_TURN_SECONDS absorbed."""
    runs: list[list[int]] = []
    for i, lab in enumerate(labels):
        if runs and runs[-1][2] == lab:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, lab])

    def seconds(r: list[int]) -> float:
        return words[r[1] - 1].end - words[r[0]].start

    while len(runs) > 1:
        k = min(range(len(runs)), key=lambda j: seconds(runs[j]))
        if seconds(runs[k]) >= MIN_TURN_SECONDS:
            break
        neighbours = [j for j in (k - 1, k + 1) if 0 <= j < len(runs)]
        into = max(neighbours, key=lambda j: seconds(runs[j]))
        runs[k][2] = runs[into][2]
        merged: list[list[int]] = []
        for r in runs:  # join neighbours that now share a speaker
            if merged and merged[-1][2] == r[2]:
                merged[-1][1] = r[1]
            else:
                merged.append(r)
        runs = merged
    return [(a, b, lab) for a, b, lab in runs]


def _cut(segment: SpeechSegment, runs: list[tuple[int, int, int]]) -> list[tuple[SpeechSegment, int]] | None:
    """The segment cut into one part per run, or None when its words are not in its text in order."""
    at, cursor = [], 0
    for w in segment.words:
        pos = segment.text.find(w.text, cursor)
        if pos < 0:
            return None
        at.append(pos)
        cursor = pos + len(w.text)
    parts = []
    for n, (a, b, lab) in enumerate(runs):
        words = segment.words[a:b]
        lo = 0 if n == 0 else at[a]
        hi = len(segment.text) if n == len(runs) - 1 else at[b]
        start = segment.start if n == 0 else words[0].start
        end = segment.end if n == len(runs) - 1 else words[-1].end
        parts.append((replace(segment, start=start, end=max(start, end), text=segment.text[lo:hi].strip(),
                              words=words), lab))
    return parts


def label_and_split(segments: list[SpeechSegment], embeddings: list[np.ndarray | None],
                    windows: list[VoiceWindow], *, threshold: float = DEFAULT_THRESHOLD,
                    max_speakers: int | None = None) -> tuple[list[SpeechSegment], int]:
    """Segments with speakers "Speaker 1", "Speaker 2"… (by first appearance), cut where the speaker changes.

    ``embeddings``: one per segment (None where ``windows`` speak for it); ``windows``: the
    stretches of the whole recording. All are clustered together. A segment's words take their
    speakers from the stretches over them; a segment with neither takes the speaker of the
    nearest labelled segment in time (or None if there is none). Returns (segments, count).
    """
    if len(segments) != len(embeddings):
        raise ValueError(f"{len(segments)} segments but {len(embeddings)} embeddings")
    clustered = cluster_speakers([w.embedding for w in windows] + list(embeddings), threshold=threshold,
                                 max_speakers=max_speakers)
    win_labels = np.array(clustered[: len(windows)], dtype=np.int64)
    seg_labels = clustered[len(windows):]
    starts = np.array([w.start for w in windows], dtype=np.float64)
    ends = np.array([w.end for w in windows], dtype=np.float64)

    out: list[SpeechSegment] = []
    labels: list[int | None] = []
    cuts = 0
    for seg, own in zip(segments, seg_labels, strict=True):
        words = _word_labels(seg.words, starts, ends, win_labels) if seg.words else []
        known = [(w, lab) for w, lab in zip(seg.words, words, strict=False) if lab is not None]
        if own is not None or not known:
            if own is None and not seg.words:  # no words: the stretches over the segment, if any
                over = np.flatnonzero((starts < seg.end) & (ends > seg.start))
                own = Counter(int(win_labels[i]) for i in over).most_common(1)[0][0] if len(over) else None
            out.append(seg)
            labels.append(own)
            continue
        # Words no stretch reaches take the speaker of the word before them (or the first known one).
        filled, last = [], known[0][1]
        for lab in words:
            last = lab if lab is not None else last
            filled.append(last)
        runs = _runs(seg.words, filled)
        parts = _cut(seg, runs) if len(runs) > 1 else None
        if parts is None:
            weight: Counter[int] = Counter()
            for w, lab in zip(seg.words, filled, strict=True):
                weight[lab] += max(w.end - w.start, 0.01)
            out.append(seg)
            labels.append(weight.most_common(1)[0][0])
            continue
        cuts += len(parts) - 1
        for part, lab in parts:
            out.append(part)
            labels.append(lab)

    filled_segments = _fill_from_neighbours(out, labels)
    names: dict[int, str] = {}
    named = [replace(s, speaker=None if lab is None else names.setdefault(lab, f"Speaker {len(names) + 1}"))
             for s, lab in zip(out, filled_segments, strict=True)]
    log.debug("diarization: %d segments (%d cut at a change of speaker), %d stretches, %d speakers",
              len(segments), cuts, len(windows), len(names))
    return named, len(names)
