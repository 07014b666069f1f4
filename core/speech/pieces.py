"""Cutting a stream of audio blocks into pieces at silences.

A piece ends at the quietest 100 ms inside the last ``search`` seconds before
``target`` seconds, so words are rarely cut. Only one piece plus one block is
ever held, so memory stays flat however long the recording.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from core.speech.base import SAMPLE_RATE

_FRAME = SAMPLE_RATE // 10  # 100 ms


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of a recording: its index, its start in seconds, and its samples."""

    index: int
    offset: float
    audio: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def quietest_cut(audio: np.ndarray, lo: int, hi: int) -> int:
    """Sample index of the centre of the quietest 100 ms frame within [lo, hi)."""
    lo = max(0, lo)
    n = (hi - lo) // _FRAME
    if n <= 1:
        return hi
    frames = audio[lo : lo + n * _FRAME].reshape(n, _FRAME)
    energy = np.einsum("ij,ij->i", frames, frames)
    # Prefer the latest of equally quiet frames, so pieces stay near the target length.
    best = n - 1 - int(np.argmin(energy[::-1]))
    return lo + best * _FRAME + _FRAME // 2


def cut_at_silences(blocks: Iterable[np.ndarray], *, target: float = 60.0, search: float = 15.0) -> Iterator[Piece]:
    """Yield consecutive pieces of at most ~``target`` seconds covering all of ``blocks``."""
    target_n = int(target * SAMPLE_RATE)
    search_n = int(min(search, target / 2) * SAMPLE_RATE)
    buffer = np.zeros(0, dtype=np.float32)
    start = 0  # absolute sample index of buffer[0]
    index = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block]) if buffer.size else np.asarray(block, dtype=np.float32)
        while len(buffer) >= target_n:
            cut = quietest_cut(buffer, target_n - search_n, target_n)
            yield Piece(index, start / SAMPLE_RATE, buffer[:cut].copy())
            index += 1
            start += cut
            buffer = buffer[cut:]
    if buffer.size:
        yield Piece(index, start / SAMPLE_RATE, buffer)
