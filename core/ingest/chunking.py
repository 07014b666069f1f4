"""Token-aware chunking with the embedder's own tokenizer.

A chunk never exceeds the embedder's window, so the model never silently
truncates one, and never spans two pages, slides or sections. Segments are packed whole where they fit; a segment longer than
a chunk is cut at token boundaries. Consecutive chunks overlap by about
``overlap`` of a chunk, carried as whole trailing segments where possible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from core.models import Chunk, Segment


@dataclass(frozen=True, slots=True)
class _Piece:
    """A segment, or a token-window of one, with its token count."""

    seg: Segment
    text: str
    tokens: int


class Chunker:
    """Packs located segments into chunks of at most ``max_tokens`` tokens."""

    def __init__(self, tokenizer: Any, max_tokens: int, overlap: float = 0.15, max_seconds: float = 30.0):
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        self._tok = tokenizer
        self.max_tokens = max_tokens
        self.overlap_tokens = int(max_tokens * overlap)
        # A chunk of a recording spans at most this long, so a citation points at a moment, not a quarter hour.
        self.max_seconds = max_seconds

    @property
    def signature(self) -> str:
        """Identifies the parameters, so a change of them triggers re-indexing."""
        return f"chunk2:{self.max_tokens}:{self.overlap_tokens}:{self.max_seconds:g}s"

    def count(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def _pieces(self, segments: list[Segment]) -> list[_Piece]:
        texts = [s.text for s in segments]
        enc = self._tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        pieces: list[_Piece] = []
        for seg, ids, offsets in zip(segments, enc["input_ids"], enc["offset_mapping"], strict=True):
            if not ids:
                continue
            if len(ids) <= self.max_tokens:
                pieces.append(_Piece(seg, seg.text, len(ids)))
                continue
            step = max(1, self.max_tokens - self.overlap_tokens)
            for lo in range(0, len(ids), step):
                hi = min(lo + self.max_tokens, len(ids))
                # Re-measure: joining a window's text can tokenize differently at its edges.
                text = seg.text[offsets[lo][0] : offsets[hi - 1][1]]
                pieces.extend(self._fit(seg, text, hi - lo))
                if hi == len(ids):
                    break
        return pieces

    def _fit(self, seg: Segment, text: str, tokens: int) -> list[_Piece]:
        n = self.count(text)
        while n > self.max_tokens and len(text) > 1:
            text = text[: int(len(text) * self.max_tokens / n) - 1]
            n = self.count(text)
        return [_Piece(seg, text, n)] if text.strip() else []

    def chunk(self, segments: list[Segment], *, doc_id: str, version: str, source: str, scope: str) -> list[Chunk]:
        """Chunks of one document version, with deterministic ids."""
        pieces = self._pieces([s for s in segments if s.text.strip()])
        groups: list[list[_Piece]] = []
        current: list[_Piece] = []
        size = 0
        for p in pieces:
            # A page (or slide) is the unit people cite, and a section is one topic: chunks never
            # straddle two, so a chunk's embedding is not diluted by unrelated neighbours.
            if current and (p.seg.page != current[-1].seg.page or p.seg.section != current[-1].seg.section):
                groups.append(current)
                current, size = [], 0
            # +1 for the newline that joins pieces.
            if current and (size + p.tokens + 1 > self.max_tokens or self._too_long(current, p)):
                groups.append(current)
                current, size = self._carry(current, p.tokens)
            current.append(p)
            size += p.tokens + (1 if len(current) > 1 else 0)
        if current:
            groups.append(current)
        return [self._make(g, i, doc_id, version, source, scope) for i, g in enumerate(groups)]

    def _too_long(self, current: list[_Piece], incoming: _Piece) -> bool:
        first, end = current[0].seg.start, incoming.seg.end
        return first is not None and end is not None and end - first > self.max_seconds

    def _carry(self, prev: list[_Piece], incoming: int) -> tuple[list[_Piece], int]:
        """Trailing pieces of the previous chunk to repeat, within the overlap budget."""
        carried: list[_Piece] = []
        size = 0
        budget = min(self.overlap_tokens, self.max_tokens - incoming - 1)
        for p in reversed(prev):
            if size + p.tokens + 1 > budget:
                break
            carried.insert(0, p)
            size += p.tokens + 1
        return carried, max(0, size - 1) if carried else 0

    @staticmethod
    def _make(group: list[_Piece], ordinal: int, doc_id: str, version: str, source: str, scope: str) -> Chunk:
        segs = [p.seg for p in group]
        pages = [s.page for s in segs if s.page is not None]
        starts = [s.start for s in segs if s.start is not None]
        ends = [s.end for s in segs if s.end is not None]
        speakers = tuple(dict.fromkeys(s.speaker for s in segs if s.speaker))
        text = "\n".join(p.text for p in group)
        return Chunk(
            chunk_id=chunk_id(doc_id, version, ordinal),
            doc_id=doc_id,
            version=version,
            ordinal=ordinal,
            source=source,
            scope=scope,
            text=text,
            page_start=min(pages) if pages else None,
            page_end=max(pages) if pages else None,
            start=min(starts) if starts else None,
            end=max(ends) if ends else None,
            speakers=speakers,
        )


def document_id(scope: str, source: str) -> str:
    """A document's identity: where it came from, within which scope."""
    return hashlib.sha256(f"{scope}\x00{source}".encode()).hexdigest()[:24]


def chunk_id(doc_id: str, version: str, ordinal: int) -> str:
    return f"{doc_id}-{version[:16]}-{ordinal:05d}"
