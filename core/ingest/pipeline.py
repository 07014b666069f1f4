"""The ingestion pipeline: read → load → chunk → embed → write → commit, per document.

Each document is atomic. Chunks and vectors of a new version are written under
ids derived from (source, content hash), then one registry transaction makes
that version the visible one, and only then are the previous version's chunks
removed. Re-running after a crash redoes the same writes under the same ids.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BackendError, DocumentTooLarge, EmptyDocument, ImpError
from core.index.embedders import Embedder
from core.index.keyword import KeywordIndex
from core.index.vectors import VectorStore
from core.ingest.chunking import Chunker, document_id
from core.ingest.loaders import LOADER_VERSION, MEDIA, detect_kind, load_file
from core.models import Chunk, DocStatus, DocumentRecord, IngestResult, IngestStatus, LoadedDocument, Segment
from core.store.registry import CommitInfo, DocumentRegistry

if TYPE_CHECKING:
    from core.speech.transcriber import Transcriber
    from core.store.transcripts import TranscriptStore

log = logging.getLogger(__name__)

Progress = Callable[[IngestResult], None]
# (what, seconds or items done, in all): long steps such as transcription report through this.
StepProgress = Callable[[str, float, float], None]
_MEDIA_KINDS = frozenset({"audio", "video"})

_EMBED_BATCH = 128


def file_version(path: Path) -> str:
    """Content hash of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def walk(paths: Iterable[Path]) -> Iterator[Path]:
    """Files under the given paths, depth first, sorted, skipping hidden entries."""
    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        yield Path(root) / name
        else:
            yield p


class IngestPipeline:
    """Indexes files into the registry, the vector store and the keyword index."""

    def __init__(self, registry: DocumentRegistry, vectors: VectorStore, keywords: KeywordIndex,
                 embedder: Embedder, *, overlap: float = 0.15, max_tokens: int | None = None,
                 max_file_bytes: int = 200 << 20, max_chars: int = 5_000_000,
                 transcriber: Transcriber | None = None, transcripts: TranscriptStore | None = None,
                 max_media_bytes: int = 4 << 30):
        self._registry = registry
        self._vectors = vectors
        self._keywords = keywords
        self._embedder = embedder
        self._overlap = overlap
        self._max_tokens = max_tokens
        self._max_file_bytes = max_file_bytes
        self._max_chars = max_chars
        self._chunker: Chunker | None = None
        self._transcriber = transcriber
        self._transcripts = transcripts
        self._max_media_bytes = max_media_bytes

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            window = self._embedder.max_tokens
            size = min(window, self._max_tokens) if self._max_tokens else window
            self._chunker = Chunker(self._embedder.tokenizer(), size, self._overlap)
        return self._chunker

    @property
    def signature(self) -> str:
        return f"{self._embedder.model_id}|{self.chunker.signature}|loaders:{LOADER_VERSION}"

    def _signature(self, kind: str | None) -> str:
        """Recordings also depend on the speech model that transcribed them."""
        if kind in _MEDIA_KINDS and self._transcriber is not None:
            return f"{self.signature}|speech:{self._transcriber.model_id}"
        return self.signature

    def ingest_many(self, paths: Iterable[Path], scope: str, on_result: Progress | None = None,
                    on_step: StepProgress | None = None) -> list[IngestResult]:
        results = []
        for path in paths:
            r = self.ingest(path, scope, on_step=on_step)
            results.append(r)
            if on_result:
                on_result(r)
        # One rebuild for the whole batch, so the next search does not pay for it.
        if any(r.status == IngestStatus.INDEXED for r in results):
            self.refresh_keywords()
        return results

    def ingest(self, path: Path, scope: str, *, source: str | None = None,
               stored_path: Path | None = None, on_step: StepProgress | None = None) -> IngestResult:
        """Index one file. Failures are recorded and returned, never raised."""
        source = source or str(path.resolve())
        doc_id = document_id(scope, source)
        size = 0
        try:
            size = path.stat().st_size
            kind = detect_kind(path)
            self._check_size(size, kind)
            version = file_version(path)
            if self._unchanged(doc_id, version):
                rec = self._registry.get(doc_id)
                return IngestResult(doc_id, source, IngestStatus.UNCHANGED, chunks=rec.chunks)
            loaded = self._transcribe(path, on_step) if kind == MEDIA else load_file(
                path, max_chars=self._max_chars, kind=kind)
            chunks = self.chunker.chunk(loaded.segments, doc_id=doc_id, version=version, source=source, scope=scope)
            if not chunks:
                raise EmptyDocument("the document holds no text to index")
            self._write(doc_id, source, scope, version, size, loaded, chunks, stored_path)
            log.info("indexed %s: %d chunks", source, len(chunks))
            return IngestResult(doc_id, source, IngestStatus.INDEXED, chunks=len(chunks))
        except ImpError as e:
            return self._failed(doc_id, source, scope, size, e.code, e.detail)
        except OSError as e:
            return self._failed(doc_id, source, scope, size, "unreadable", f"cannot read file: {e.strerror or e}")
        except Exception as e:  # a library bug on odd input must not stop a batch
            log.exception("unexpected error while ingesting %s", source)
            return self._failed(doc_id, source, scope, size, "internal_error", f"{type(e).__name__}: {e}")

    def _check_size(self, size: int, kind: str) -> None:
        limit, setting = ((self._max_media_bytes, "IMP_SPEECH__MAX_FILE_MB") if kind == MEDIA
                          else (self._max_file_bytes, "IMP_INGEST__MAX_FILE_MB"))
        if size > limit:
            raise DocumentTooLarge(f"file is {size / 2**20:.1f} MB, above the {limit / 2**20:.0f} MB limit ({setting})")

    def _transcribe(self, path: Path, on_step: StepProgress | None) -> LoadedDocument:
        if self._transcriber is None:
            raise BackendError("speech recognition is not configured, so recordings cannot be ingested")
        info = self._transcriber.probe(path)
        report = (lambda done, total: on_step(f"transcribing {path.name}", done, total)) if on_step else None
        transcript = self._transcriber.transcribe(path, report, info=info)
        segments = [Segment(text=s.text, start=s.start, end=s.end, speaker=s.speaker) for s in transcript.segments]
        return LoadedDocument(kind=info.kind, segments=segments, transcript=transcript)

    def _unchanged(self, doc_id: str, version: str) -> bool:
        rec = self._registry.find(doc_id)
        return (
            rec is not None
            and rec.status == DocStatus.INDEXED
            and rec.version == version
            and rec.extra.get("index_signature") == self._signature(rec.kind)
        )

    def _write(self, doc_id: str, source: str, scope: str, version: str, size: int,
               loaded: LoadedDocument, chunks: list[Chunk], stored_path: Path | None) -> None:
        self._registry.begin(doc_id, source, scope, version, size)
        self._registry.put_chunks(doc_id, version, chunks)
        for i in range(0, len(chunks), _EMBED_BATCH):
            part = chunks[i : i + _EMBED_BATCH]
            self._vectors.upsert(part, self._embedder.embed([c.text for c in part]))
        if loaded.transcript is not None and self._transcripts is not None:
            self._transcripts.save(doc_id, version, loaded.transcript)
        pages = {s.page for s in loaded.segments if s.page is not None}
        ends = [s.end for s in loaded.segments if s.end is not None]
        if loaded.transcript is not None:
            ends = [loaded.transcript.duration]
        info = CommitInfo(
            kind=loaded.kind, title=loaded.title, chunks=len(chunks), segments=len(loaded.segments),
            pages=max(pages) if pages else None, duration=max(ends) if ends else None,
            embedding_model=self._embedder.model_id, index_signature=self._signature(loaded.kind),
            stored_path=str(stored_path) if stored_path else None,
        )
        self._registry.commit(doc_id, version, info)
        # The new version is visible; what remains of older ones is garbage.
        self._vectors.delete(doc_id, keep_version=version)
        self._registry.drop_chunks(doc_id, keep_version=version)

    def _failed(self, doc_id: str, source: str, scope: str, size: int, code: str, detail: str) -> IngestResult:
        log.warning("could not ingest %s: %s", source, detail)
        self._registry.fail(doc_id, source, scope, size, code, detail)
        return IngestResult(doc_id, source, IngestStatus.FAILED, error=detail, error_code=code)

    def refresh_keywords(self) -> None:
        self._keywords.refresh()

    def delete(self, doc_id: str) -> DocumentRecord:
        record = self._registry.delete(doc_id)
        self._vectors.delete(doc_id)
        return record
