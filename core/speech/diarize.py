"""Speaker diarization for mono recordings: a voice embedding per segment, then clustering.

The transcription runner cuts a recording into segments (the recogniser's sentences),
asks ``SpeakerEmbedder.embed`` for each segment's voice embedding, and hands segments and
embeddings to ``label_segments``, which clusters the embeddings (agglomerative, cosine
distance, average linkage, cut at a threshold) and names the speakers "Speaker 1",
"Speaker 2"... in order of first appearance. Segments too short to judge inherit the
speaker of the nearest labelled segment.

The encoder is Resemblyzer's (Apache-2.0; its weights ``pretrained.pt`` ship inside the
package, so it loads offline). It is trained on 1.6 s windows of volume-normalised speech;
below about a second its embeddings are unreliable, so ``embed`` answers None there, and
for audio in which its voice activity detector (webrtcvad) finds too little speech.
Silences are *not* cut out before embedding, unlike ``resemblyzer.preprocess_wav``: on the
benchmark, cutting them made short turns worse.

The default threshold (0.35) was tuned on one half of a pool of real speakers (LibriSpeech
readers, AMI meeting-headset voices, three broadcast/telephone voices) and scored on the other
half (``bench/diarization.py``, docs/benchmarks.md). Between two real voices the encoder's
cosine distance is often only 0.3-0.45, and in a shared meeting room lower still; the old
0.45, tuned on three voices recorded on three very different channels, merged such voices.
"""

from __future__ import annotations

import logging
import sys
import threading
import types
from dataclasses import replace
from importlib import metadata

import numpy as np

from core.errors import BackendError
from core.models import SpeechSegment
from core.speech.base import SAMPLE_RATE

logger = logging.getLogger(__name__)

# Cosine distance at which two clusters stop merging; chosen on the tuning speakers of
# bench/diarization.py (0.45 before: different real voices merged).
DEFAULT_THRESHOLD = 0.35
# Shorter audio gives no embedding.
MIN_SPEECH_SECONDS = 1.0
# Nor does audio in which the voice activity detector keeps less than this (its smoothing
# trims about 0.1 s at each edge even of continuous speech, so this is below the 1 s above).
MIN_VOICED_SECONDS = 0.5
# Longer audio is embedded from its middle this long: a voice is recognisable in a few
# seconds, and embedding whole minute-long segments made diarization cost a third of the
# transcription time (bench/asr_speed.py).
MAX_EMBED_SECONDS = 2.0
# Quieter than this (RMS, full scale 1.0; about -70 dBFS) counts as silence.
_SILENCE_RMS = 10 ** (-70 / 20)


def _import_resemblyzer() -> types.ModuleType:
    """Import resemblyzer, bridging webrtcvad 2.0.10's import of ``pkg_resources``.

    webrtcvad 2.0.10 (Resemblyzer's voice activity detector) reads its own version through
    ``pkg_resources``, which setuptools 81 and later no longer ship. The stand-in answers
    that one call from importlib.metadata and is removed again right after the import.
    """
    try:
        import resemblyzer

        return resemblyzer
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            raise
    shim = types.ModuleType("pkg_resources")
    shim.get_distribution = lambda name: types.SimpleNamespace(version=metadata.version(name))  # type: ignore
    sys.modules["pkg_resources"] = shim
    try:
        import resemblyzer
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return resemblyzer


class SpeakerEmbedder:
    """Voice embeddings from Resemblyzer's bundled encoder."""

    def __init__(self, device: str = "cpu", max_embed_seconds: float = MAX_EMBED_SECONDS):
        if not max_embed_seconds >= MIN_SPEECH_SECONDS:
            raise ValueError(f"max_embed_seconds must be at least {MIN_SPEECH_SECONDS}")
        self._device = device
        self._max_embed_seconds = max_embed_seconds
        self._encoder = None
        self._audio = None  # resemblyzer.audio: volume normalisation and voice activity
        self._target_dbfs = -30.0
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        try:
            return f"resemblyzer-{metadata.version('Resemblyzer')}"
        except metadata.PackageNotFoundError:
            return "resemblyzer-unknown"

    def warm_up(self) -> None:
        """Load the encoder now (idempotent)."""
        with self._lock:
            if self._encoder is not None:
                return
            try:
                _import_resemblyzer()
                from resemblyzer import VoiceEncoder, audio, hparams

                encoder = VoiceEncoder(self._device, verbose=False)
                # The first call pays librosa's lazy imports and torch's kernel set-up (seconds).
                encoder.embed_utterance(np.random.default_rng(0).normal(0, 0.03, 2 * SAMPLE_RATE).astype(np.float32))
            except Exception as e:  # ImportError, a missing weights file, a bad device name
                raise BackendError(f"cannot load the Resemblyzer voice encoder on {self._device!r}: {e}") from e
            self._encoder, self._audio = encoder, audio
            self._target_dbfs = hparams.audio_norm_target_dBFS
            logger.info("loaded %s on %s", self.model_id, self._device)

    def embed(self, audio: np.ndarray) -> np.ndarray | None:
        """L2-normalised 256-d embedding of 16 kHz float32 speech, or None when there is too little to judge.

        None for under a second of audio, silence, or less than half a second of voice.
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio (1-D), got shape {audio.shape}")
        min_samples = int(MIN_SPEECH_SECONDS * SAMPLE_RATE)
        if len(audio) < min_samples or not np.isfinite(audio).all():
            return None
        longest = int(self._max_embed_seconds * SAMPLE_RATE)
        if len(audio) > longest:
            middle = (len(audio) - longest) // 2
            audio = audio[middle : middle + longest]
        if float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < _SILENCE_RMS:
            return None  # Resemblyzer's volume normalisation divides by the level
        self.warm_up()
        try:
            # The level the encoder was trained at, raised only, as preprocess_wav does.
            wav = self._audio.normalize_volume(audio, self._target_dbfs, increase_only=True)
            voiced = self._audio.trim_long_silences(np.clip(wav, -1.0, 1.0))
            if len(voiced) < MIN_VOICED_SECONDS * SAMPLE_RATE:
                return None
            emb = self._encoder.embed_utterance(wav.astype(np.float32))
        except Exception as e:
            raise BackendError(f"speaker embedding failed: {e}") from e
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(norm) or norm == 0.0:
            return None
        return (emb / norm).astype(np.float32)


    def embed_windows(self, audio: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """Voice embeddings of overlapping stretches of 16 kHz speech: ``(start, end, embedding)``, seconds from its start.

        The encoder runs once over the audio, on its 1.6 s partial windows 0.77 s apart (the
        same windows ``embed`` averages); each stretch is the L2-normalised mean of two
        neighbouring partials, about 2.4 s, like ``embed``'s 2 s, so one threshold fits both.
        A stretch every 0.77 s: about 1.3 encoder passes per second of audio. Empty for under a
        second of audio or silence; no voice check per stretch (the caller knows where words are).
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio (1-D), got shape {audio.shape}")
        if len(audio) < int(MIN_SPEECH_SECONDS * SAMPLE_RATE) or not np.isfinite(audio).all():
            return []
        if float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < _SILENCE_RMS:
            return []
        self.warm_up()
        try:
            wav = self._audio.normalize_volume(audio, self._target_dbfs, increase_only=True)
            _, partials, slices = self._encoder.embed_utterance(np.clip(wav, -1.0, 1.0).astype(np.float32),
                                                                return_partials=True)
        except Exception as e:
            raise BackendError(f"speaker embedding failed: {e}") from e
        partials = np.asarray(partials, dtype=np.float64)
        pairs = [(k, k + 2) for k in range(len(partials) - 1)] or [(0, 1)]
        out = []
        for a, b in pairs:
            mean = partials[a:b].mean(axis=0)
            norm = float(np.linalg.norm(mean))
            if not np.isfinite(norm) or norm == 0.0:
                continue
            end = min(slices[b - 1].stop, len(audio))
            out.append((slices[a].start / SAMPLE_RATE, end / SAMPLE_RATE, (mean / norm).astype(np.float32)))
        return out


# Above this many embeddings, the clustering runs on an evenly spaced subset of them and the
# rest join the nearest cluster: average linkage needs memory and time quadratic in their number
# (3000 embeddings: 4.5 M distances, 36 MB; at a window every 0.77 s, about 38 minutes of speech).
MAX_CLUSTERED = 3000


def cluster_speakers(embeddings: list[np.ndarray | None], *, threshold: float = DEFAULT_THRESHOLD,
                     max_speakers: int | None = None) -> list[int | None]:
    """Agglomerative clustering (cosine distance, average linkage, cut at ``threshold``).

    None in → None out. Labels are 0, 1, 2… numbered in order of first appearance.
    ``max_speakers`` caps the number of clusters (merging further when the cut leaves more).
    """
    if threshold <= 0:
        raise ValueError("threshold must be positive")
    if max_speakers is not None and max_speakers < 1:
        raise ValueError("max_speakers must be at least 1")
    present = [i for i, e in enumerate(embeddings) if e is not None]
    labels: list[int | None] = [None] * len(embeddings)
    if not present:
        return labels
    if len(present) == 1:
        labels[present[0]] = 0
        return labels

    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    x = np.stack([np.asarray(embeddings[i], dtype=np.float64) for i in present])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sample = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_CLUSTERED)).round().astype(int))
    tree = linkage(pdist(x[sample], metric="cosine").clip(min=0.0), method="average")
    raw = fcluster(tree, t=threshold, criterion="distance")
    if max_speakers is not None and raw.max() > max_speakers:
        raw = fcluster(tree, t=max_speakers, criterion="maxclust")
    if len(sample) < len(x):  # the rest join the cluster whose mean direction is nearest
        ids = np.unique(raw)
        centres = np.stack([x[sample][raw == c].mean(axis=0) for c in ids])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        raw = ids[np.argmax(x @ centres.T, axis=1)]
    order: dict[int, int] = {}
    for i, r in zip(present, raw, strict=True):
        labels[i] = order.setdefault(int(r), len(order))
    return labels


def _fill_from_neighbours(segments: list[SpeechSegment], labels: list[int | None]) -> list[int | None]:
    """Each None label replaced by that of the labelled segment closest in time (the earlier on a tie)."""
    known = [i for i, lab in enumerate(labels) if lab is not None]
    if not known or len(known) == len(labels):
        return list(labels)
    starts = np.array([segments[i].start for i in known])
    ends = np.array([segments[i].end for i in known])
    filled = list(labels)
    for i, lab in enumerate(labels):
        if lab is None:
            gaps = np.maximum(0.0, np.maximum(starts - segments[i].end, segments[i].start - ends))
            filled[i] = labels[known[int(np.lexsort((starts, gaps))[0])]]
    return filled


def label_segments(segments: list[SpeechSegment], embeddings: list[np.ndarray | None], *,
                   threshold: float = DEFAULT_THRESHOLD,
                   max_speakers: int | None = None) -> tuple[list[SpeechSegment], int]:
    """Segments with speaker "Speaker 1", "Speaker 2"… (numbered by first appearance).

    Segments whose embedding is None take the speaker of the nearest labelled segment in
    time (or stay None if there is none). Returns (segments, number_of_speakers).
    """
    if len(segments) != len(embeddings):
        raise ValueError(f"{len(segments)} segments but {len(embeddings)} embeddings")
    clustered = cluster_speakers(embeddings, threshold=threshold, max_speakers=max_speakers)
    filled = _fill_from_neighbours(segments, clustered)
    names: dict[int, str] = {}
    out = []
    for seg, lab in zip(segments, filled, strict=True):
        speaker = None if lab is None else names.setdefault(lab, f"Speaker {len(names) + 1}")
        out.append(replace(seg, speaker=speaker))
    logger.debug("diarization: %d segments, %d speakers, %d without an embedding",
                 len(segments), len(names), sum(e is None for e in embeddings))
    return out, len(names)
