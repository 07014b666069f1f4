"""Vosk (Kaldi) speech-to-text backend: recognises 16 kHz mono audio with a local Vosk model folder.

No English model ships with IMP; ``config.model_path`` must point at an unpacked
Vosk model (``make vosk-model-en`` fetches the small English one at sites with
internet). The model loads once per backend, in ``warm_up`` or on first use.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import BackendError
from core.models import SpeechSegment, Word
from core.speech.base import SAMPLE_RATE, SpeechConfig

log = logging.getLogger(__name__)

# Vosk decodes incrementally; a quarter second per call keeps segments flowing out promptly.
BLOCK_SAMPLES = SAMPLE_RATE // 4


class VoskBackend:
    """Recognises speech with ``vosk.KaldiRecognizer`` over a model folder given by path."""

    def __init__(self, config: SpeechConfig):
        self._config = config
        self._model: Any = None
        self._lock = threading.Lock()

    def _model_dir(self) -> Path:
        """The configured model folder, checked to look like a Vosk model."""
        if self._config.model_path is None:
            raise BackendError(
                "the vosk speech backend needs a model folder: set IMP_SPEECH__MODEL_PATH to an "
                "unpacked Vosk model (run `make vosk-model-en` to fetch the small English one)"
            )
        path = Path(self._config.model_path).expanduser()
        if not path.is_dir():
            raise BackendError(f"Vosk model folder {path} does not exist")
        if not (path / "am" / "final.mdl").is_file() or not (path / "conf").is_dir():
            raise BackendError(
                f"{path} is not a Vosk model folder (expected am/final.mdl and conf/ inside)"
            )
        return path

    @property
    def model_id(self) -> str:
        # The acoustic model's size tells model versions apart without reading hundreds of MB.
        path = self._model_dir()
        return f"vosk:{path.name}:{(path / 'am' / 'final.mdl').stat().st_size}"

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            path = self._model_dir()
            import vosk

            vosk.SetLogLevel(-1)  # Kaldi otherwise logs every loading step to stderr
            began = time.perf_counter()
            try:
                self._model = vosk.Model(str(path))
            except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
                raise BackendError(f"could not load the Vosk model in {path}: {e}") from e
            log.info("loaded Vosk model %s in %.1f s", path, time.perf_counter() - began)

    def transcribe(self, audio: np.ndarray, offset: float = 0.0) -> Iterator[SpeechSegment]:
        """Yield segments as Vosk finalises them.

        Loads the model first, so a bad model folder raises here rather than on iteration.
        """
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono audio (1-D samples), got shape {samples.shape}")
        self.warm_up()
        return self._recognise(samples, offset)

    def _recognise(self, samples: np.ndarray, offset: float) -> Iterator[SpeechSegment]:
        if samples.size == 0:
            return
        import vosk

        recogniser = vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        recogniser.SetWords(True)
        recogniser.SetPartialWords(False)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
        since = 0.0  # where the current utterance began, used only if a result has no words
        for begin in range(0, pcm.size, BLOCK_SAMPLES):
            fed = min(begin + BLOCK_SAMPLES, pcm.size) / SAMPLE_RATE
            if recogniser.AcceptWaveform(pcm[begin : begin + BLOCK_SAMPLES].tobytes()):
                segment = _segment(recogniser.Result(), offset, since, fed)
                since = fed
                if segment is not None:
                    yield segment
        segment = _segment(recogniser.FinalResult(), offset, since, pcm.size / SAMPLE_RATE)
        if segment is not None:
            yield segment


def _segment(result_json: str, offset: float, since: float, until: float) -> SpeechSegment | None:
    """One Vosk result as a segment, or None when it holds no text.

    A result is ``{"text": "...", "result": [{"word", "start", "end", "conf"}, ...]}``;
    silence gives ``{"text": ""}`` with no "result" key.
    """
    result = json.loads(result_json)
    text = result.get("text", "").strip()
    if not text:
        return None
    words = tuple(
        Word(
            text=w["word"],
            start=round(offset + float(w["start"]), 3),
            end=round(offset + float(w["end"]), 3),
            confidence=min(1.0, max(0.0, float(w.get("conf", 0.0)))),
        )
        for w in result.get("result", ())
    )
    if words:
        return SpeechSegment(start=words[0].start, end=words[-1].end, text=text, words=words)
    return SpeechSegment(start=round(offset + since, 3), end=round(offset + until, 3), text=text)
