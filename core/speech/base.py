"""The speech-to-text contract every ASR backend implements, and its factory.

A backend recognises one piece of audio at a time: 16 kHz mono float32
samples in [-1, 1], at most a few minutes long (the runner cuts recordings at
silences). It yields segments as they are recognised, with times relative to
the start of the piece plus ``offset``. Backends are cheap to construct and
load their model in ``warm_up`` (or on first use), once per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from core.models import SpeechSegment

SAMPLE_RATE = 16_000


class SpeechBackend(Protocol):
    """Recognises speech in a piece of audio."""

    @property
    def model_id(self) -> str:
        """Names the model and its settings; changes when a transcript would change."""
        ...

    def warm_up(self) -> None:
        """Load the model now (idempotent)."""
        ...

    def transcribe(self, audio: np.ndarray, offset: float = 0.0) -> Iterator[SpeechSegment]:
        """Yield recognised segments of ``audio`` (16 kHz mono float32), times shifted by ``offset``."""
        ...


@dataclass(frozen=True, slots=True)
class SpeechConfig:
    """What a worker process needs to build the same backend as the parent.

    Plain values only, so it pickles into worker processes.
    """

    backend: str = "whisper"  # "whisper" (faster-whisper) or "vosk"
    model_path: Path | None = None  # None: the bundled Whisper tiny.en (whisper only)
    device: str = "cpu"
    compute_type: str = "auto"  # whisper: int8 on CPU, float16 on CUDA when "auto"
    language: str | None = "en"
    beam_size: int = 1
    vad: bool = True
    word_timestamps: bool = True
    batch_size: int = 1  # whisper: 1 sequential windows; above 1, VAD-packed 30 s windows decoded together
    threads: int = 1  # CPU threads inside one recogniser


def make_backend(config: SpeechConfig) -> SpeechBackend:
    """Map the setting to a backend class, importing it lazily."""
    if config.backend == "whisper":
        from core.speech.whisper_backend import WhisperBackend

        return WhisperBackend(config)
    if config.backend == "vosk":
        from core.speech.vosk_backend import VoskBackend

        return VoskBackend(config)
    raise ValueError(f"unknown speech backend {config.backend!r} (use whisper or vosk)")
