"""Transcribing a recording: decode, cut at silences, recognise in parallel, merge, assign speakers.

Pieces are recognised by a pool of worker processes (one per core, each with a
one-thread recogniser) and merged back in order with absolute timestamps. At
most two pieces per worker are in flight, so memory stays flat for any length.
Short recordings run in this process, where the model stays loaded between calls.

Speakers: a recording whose channels carry different voices (a call recorded
one side per channel) gets a speaker per channel. A mono recording is
diarized, when enabled: workers embed each segment's voice (long segments in
overlapping stretches over their words), and once all pieces are back the
embeddings of the whole recording are clustered together and segments are cut
where the speaker changes (``core.speech.turns``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import BackendError, EmptyDocument
from core.ingest.media import Media, MediaInfo
from core.models import SpeechSegment, Transcript
from core.observe import Observer, guarded, timed
from core.speech.base import SAMPLE_RATE, SpeechConfig, make_backend
from core.speech.pieces import Piece, cut_at_silences
from core.speech.turns import MIN_SPLIT_SECONDS, PieceVoices, VoiceWindow

log = logging.getLogger(__name__)

Progress = Callable[[float, float], None]  # (seconds done, seconds in all)


@dataclass(frozen=True, slots=True)
class PieceResult:
    index: int
    seconds: float
    segments: list[SpeechSegment]
    voices: PieceVoices
    language: str | None


class PieceWorker:
    """A recogniser (and voice embedder) that turns pieces into segments."""

    def __init__(self, config: SpeechConfig, diarize: bool, split_turns: bool = True):
        self._backend = make_backend(config)
        self._split_turns = split_turns
        self._embedder = None
        if diarize:
            from core.speech.diarize import SpeakerEmbedder

            self._embedder = SpeakerEmbedder(config.device)

    def warm_up(self) -> None:
        self._backend.warm_up()
        if self._embedder is not None:
            self._embedder.warm_up()

    @property
    def model_id(self) -> str:
        voice = f"+{self._embedder.model_id}" if self._embedder is not None else ""
        return self._backend.model_id + voice

    def run(self, piece: Piece, speaker: str | None) -> PieceResult:
        segments = list(self._backend.transcribe(piece.audio, piece.offset))
        if speaker is not None:
            segments = [replace(s, speaker=speaker) for s in segments]
        voices = PieceVoices()
        if self._embedder is not None and speaker is None:
            voices = self._voices(segments, piece)
        return PieceResult(piece.index, piece.seconds, segments, voices,
                           getattr(self._backend, "language", None))

    def _clip(self, piece: Piece, start: float, end: float) -> tuple[float, np.ndarray]:
        lo = max(0, int((start - piece.offset) * SAMPLE_RATE))
        hi = max(lo, int((end - piece.offset) * SAMPLE_RATE))
        return piece.offset + lo / SAMPLE_RATE, piece.audio[lo:hi]

    def _voices(self, segments: list[SpeechSegment], piece: Piece) -> PieceVoices:
        """Stretches over the words of each long segment (where the speaker may change inside it); one
        embedding of the middle of each other segment (and of every segment with splitting off)."""
        assert self._embedder is not None
        windows: list[VoiceWindow] = []
        embeddings: list[np.ndarray | None] = []
        for s in segments:
            start, end = s.start, s.end
            if s.words:
                start, end = min(start, s.words[0].start), max(end, s.words[-1].end)
            at, audio = self._clip(piece, start, end)
            if self._split_turns and s.words and len(audio) >= MIN_SPLIT_SECONDS * SAMPLE_RATE:
                spans = np.array([(w.start, w.end) for w in s.words])
                mine = []
                for a, b, e in self._embedder.embed_windows(audio):
                    a, b = at + a, at + b
                    # a stretch must hold words: pauses and noise are no one's voice
                    if np.clip(np.minimum(spans[:, 1], b) - np.maximum(spans[:, 0], a), 0, None).sum() >= 0.5:
                        mine.append(VoiceWindow(round(a, 3), round(b, 3), e))
                if len(mine) >= 2:
                    windows += mine
                    embeddings.append(None)
                    continue
            embeddings.append(self._embedder.embed(self._clip(piece, s.start, s.end)[1]))
        return PieceVoices(tuple(windows), tuple(embeddings))


# One worker per pool process, built by the pool's initializer.
_process_worker: PieceWorker | None = None


def _init_process(config: SpeechConfig, diarize: bool, split_turns: bool) -> None:
    """One thread per worker: the pool already fills the cores, and idle BLAS/OpenMP threads
    spinning beside the other workers' cost a quarter of the throughput (bench/asr_speed.py)."""
    global _process_worker
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # read by libraries not yet loaded in this fresh process
    from threadpoolctl import threadpool_limits

    if diarize:
        # Only the voice embedder needs torch; importing it costs each worker about 2 CPU-s.
        import torch

        torch.set_num_threads(1)
    _process_worker = PieceWorker(config, diarize, split_turns)
    _process_worker.warm_up()
    threadpool_limits(1)  # and for those already loaded (numpy's BLAS)


def _run_in_process(piece: Piece, speaker: str | None) -> PieceResult:
    assert _process_worker is not None
    return _process_worker.run(piece, speaker)


class Transcriber:
    """Turns an audio or video file into a Transcript."""

    def __init__(self, media: Media, config: SpeechConfig, *, workers: int = 0, piece_seconds: float = 60.0,
                 diarize: bool = True, max_speakers: int | None = None, split_turns: bool = True,
                 observer: Observer | None = None):
        """``split_turns`` False labels each recogniser segment whole (one embedding of its middle 2 s),
        as before segments were cut at changes of speaker; kept for bench/diarization.py's comparison.
        ``observer`` is told how long each transcription took (core.observe)."""
        self.media = media
        self._config = config
        self._workers = workers or os.cpu_count() or 1
        self._piece_seconds = piece_seconds
        self._diarize = diarize
        self._max_speakers = max_speakers
        self._split_turns = split_turns
        self._inline: PieceWorker | None = None
        self._observer = guarded(observer)

    def _inline_worker(self) -> PieceWorker:
        if self._inline is None:
            self._inline = PieceWorker(replace(self._config, threads=self._workers), self._diarize,
                                       self._split_turns)
        return self._inline

    @property
    def model_id(self) -> str:
        return self._inline_worker().model_id

    def warm_up(self) -> None:
        self._inline_worker().warm_up()

    def probe(self, path: Path) -> MediaInfo:
        return self.media.probe(path)

    def transcribe(self, path: Path, progress: Progress | None = None, info: MediaInfo | None = None) -> Transcript:
        """The whole transcript of ``path``; EmptyDocument when nobody speaks in it."""
        with timed(self._observer, "transcribe"):
            return self._transcribe(Path(path), progress, info)

    def _transcribe(self, path: Path, progress: Progress | None, info: MediaInfo | None) -> Transcript:
        path = Path(path)
        info = info or self.media.probe(path)
        split = self.media.separate_channels(path, info)
        streams: list[tuple[int | None, str | None]] = (
            [(ch, f"Speaker {ch + 1}") for ch in range(info.channels)] if split else [(None, None)]
        )
        total = info.duration * len(streams)
        done = 0.0
        results: list[PieceResult] = []
        for channel, speaker in streams:
            for r in self._recognise(path, info, channel, speaker):
                results.append(r)
                done += r.seconds
                if progress:
                    progress(min(done, total), total)
        segments = [s for r in results for s in r.segments]
        if not segments:
            raise EmptyDocument(f"{path.name}: no speech was recognised in {info.duration:.1f} s of audio")
        language = next((r.language for r in results if r.language), self._config.language)
        notes: list[str] = []
        heard = done / len(streams)
        duration = info.duration
        if heard < 0.9 * info.duration - 1.0:
            # A cut-off download or an interrupted recording: its header promises more than it holds.
            notes.append(f"the file holds {heard:.1f} s of audio although its header says {info.duration:.1f} s: "
                         "it may be truncated")
            duration = heard
        if split:
            how = "channels"
            segments.sort(key=lambda s: (s.start, s.end))
            notes.append(f"one speaker per channel ({info.channels} channels)")
        elif self._diarize:
            from core.speech.turns import label_and_split

            embeddings = [e for r in results for e in r.voices.embeddings]
            windows = [w for r in results for w in r.voices.windows]
            segments, count = label_and_split(segments, embeddings, windows, max_speakers=self._max_speakers)
            how = "diarization"
            notes.append(f"{count} speaker(s) told apart by voice; their names are not known")
        else:
            how = "none"
            notes.append("speakers unknown: a mono recording and speaker diarization is off")
        return Transcript(duration=round(duration, 3), language=language, segments=segments,
                          model=self.model_id, speakers=how, notes=notes)

    def _recognise(self, path: Path, info: MediaInfo, channel: int | None,
                   speaker: str | None) -> Iterator[PieceResult]:
        pieces = cut_at_silences(self.media.decode(path, info, channel=channel), target=self._piece_seconds)
        if self._workers <= 1 or info.duration <= 2 * self._piece_seconds:
            worker = self._inline_worker()
            for piece in pieces:
                yield worker.run(piece, speaker)
            return
        yield from self._in_pool(pieces, speaker)

    def _in_pool(self, pieces: Iterator[Piece], speaker: str | None) -> Iterator[PieceResult]:
        config = replace(self._config, threads=1)
        context = multiprocessing.get_context("spawn")
        pending: deque[Future[PieceResult]] = deque()
        with ProcessPoolExecutor(self._workers, mp_context=context, initializer=_init_process,
                                 initargs=(config, self._diarize, self._split_turns)) as pool:
            try:
                for piece in pieces:
                    pending.append(pool.submit(_run_in_process, piece, speaker))
                    while len(pending) >= 2 * self._workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            except BrokenProcessPool as e:
                raise BackendError("a speech recognition worker died (out of memory?)") from e
            finally:
                for f in pending:
                    f.cancel()
