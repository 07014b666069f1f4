"""Cutting recogniser segments where the speaker changes (core.speech.turns), on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from core.models import SpeechSegment, Word
from core.speech.turns import VoiceWindow, label_and_split

A, B = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]


def _segment(text: str, start: float, step: float = 0.5) -> SpeechSegment:
    """A segment whose words (split on spaces, punctuation kept) last ``step`` seconds each."""
    words = tuple(Word(t, round(start + i * step, 3), round(start + (i + 1) * step, 3))
                  for i, t in enumerate(text.split()))
    return SpeechSegment(start=start, end=words[-1].end, text=text, words=words)


def _windows(start: float, end: float, voice: np.ndarray, hop: float = 0.5, width: float = 1.6):
    out, t = [], start
    while t + width <= end + 1e-9:
        out.append(VoiceWindow(t, t + width, voice))
        t += hop
    return out


def test_a_segment_spanning_two_voices_is_cut_where_the_voice_changes():
    # 12 words of 0.5 s: A speaks 0-3 s, B 3-6 s. Stretches inside each voice's part only.
    seg = _segment("So we are done here. Yes, thank you, I will read the next", 0.0)
    windows = _windows(0.0, 3.0, A) + _windows(3.0, 6.0, B)

    out, n = label_and_split([seg], [None], windows)

    assert n == 2
    assert [s.speaker for s in out] == ["Speaker 1", "Speaker 2"]
    assert [s.text for s in out] == ["So we are done here. Yes,", "thank you, I will read the next"]
    assert out[0].start == 0.0 and out[1].end == seg.end
    assert out[0].end <= out[1].start
    assert sum(len(s.words) for s in out) == len(seg.words)
    for s in out:  # each part's words are verbatim and in order in its text
        at = 0
        for w in s.words:
            at = s.text.index(w.text, at) + len(w.text)


def test_a_blip_of_another_voice_shorter_than_a_second_does_not_cut():
    seg = _segment("one two three four five six seven eight", 0.0)
    windows = _windows(0.0, 4.0, A)
    windows[2] = VoiceWindow(windows[2].start, windows[2].end, B)  # one stray stretch

    out, n = label_and_split([seg], [None], windows)

    assert n == 1
    assert [s.text for s in out] == [seg.text]
    assert out[0].speaker == "Speaker 1"


def test_words_not_found_in_the_text_leave_the_segment_whole():
    seg = _segment("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", 0.0)
    seg = SpeechSegment(seg.start, seg.end, "something else entirely", words=seg.words)
    windows = _windows(0.0, 3.0, A) + _windows(3.0, 6.0, B)

    out, _ = label_and_split([seg], [None], windows)

    assert len(out) == 1 and out[0].text == "something else entirely"


def test_segments_with_one_embedding_and_short_ones_are_labelled_as_before():
    long_a = _segment("a b c d e f g h", 0.0)
    short = SpeechSegment(4.2, 4.6, "yes")
    b = SpeechSegment(5.0, 8.0, "reading now")

    out, n = label_and_split([long_a, short, b], [None, None, B], _windows(0.0, 4.0, A))

    assert n == 2
    assert [s.speaker for s in out] == ["Speaker 1", "Speaker 1", "Speaker 2"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        label_and_split([SpeechSegment(0, 1, "x")], [], [])
