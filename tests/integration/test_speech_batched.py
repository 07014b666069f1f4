"""Batched Whisper decoding on dense speech: nothing skipped, every time where the words are said."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from core.ingest.media import Media
from core.speech.base import SAMPLE_RATE, SpeechConfig
from core.speech.whisper_backend import WhisperBackend
from tests.conftest import SHARED_DATA

AUDIO = SHARED_DATA / "audio"
FILES = ["librispeech_dev-clean_2412-153948-0000.flac", "jfk.flac", "OSR_us_000_0034_8k.wav"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (AUDIO / FILES[2]).exists(), reason="real speech from ../shared/data/audio is not here"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


def _said(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


@pytest.fixture(scope="module")
def rounds() -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Three rounds of the three speakers back to back, no pause anywhere, and where each clip lies."""
    media = Media()
    clips = [(name, media.read_all(AUDIO / name)) for name in FILES]
    parts, where, t = [], [], 0.0
    for _ in range(3):
        for name, clip in clips:
            parts.append(clip)
            where.append((name, t, t + len(clip) / SAMPLE_RATE))
            t += len(clip) / SAMPLE_RATE
    return np.concatenate(parts), where


@pytest.fixture(scope="module")
def batched() -> WhisperBackend:
    backend = WhisperBackend(SpeechConfig(threads=2, batch_size=8))  # opt-in (IMP_SPEECH__BATCH_SIZE)
    backend.warm_up()
    return backend


def test_dense_speech_loses_no_sentence(batched, rounds):
    audio, _ = rounds
    offset = 600.0  # a piece deep into a recording: every time must carry it
    segments = list(batched.transcribe(audio, offset))
    text = _said(" ".join(s.text for s in segments))
    # Each round's sentences are all there, three times: a window that stops early is decoded again.
    for phrase in ("native country", "fellow americans", "she saw a cat", "pink shell", "come quickly"):
        assert text.count(phrase) == 3, phrase
    assert "batch8" in batched.model_id


def test_dense_speech_keeps_times_for_citations(batched, rounds):
    audio, where = rounds
    offset = 600.0
    segments = list(batched.transcribe(audio, offset))
    end = offset + len(audio) / SAMPLE_RATE
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    for s in segments:
        assert offset <= s.start <= s.end <= end + 0.5
        assert s.words, s.text
        assert all(s.start - 0.5 <= w.start <= w.end <= s.end + 0.5 for w in s.words)
    # "fellow Americans" is said inside JFK's clip, each round: its word times say when.
    jfk = [(a + offset, b + offset) for name, a, b in where if name == "jfk.flac"]
    heard = [w.start for s in segments for w in s.words if _said(w.text) == "americans"]
    assert len(heard) == 3
    for t, (a, b) in zip(heard, jfk):
        assert a <= t <= b


def test_sequential_path_stays_available(rounds):
    audio, where = rounds
    _, a, b = where[1]  # JFK alone
    backend = WhisperBackend(SpeechConfig(batch_size=1))
    segments = list(backend.transcribe(audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)], a))
    assert "fellow americans" in _said(" ".join(s.text for s in segments))
    assert all(a <= s.start <= s.end <= b + 0.5 for s in segments)
    assert "batch" not in backend.model_id
