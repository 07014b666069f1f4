"""The ingestion pipeline: read → load → chunk → embed → write → commit, per document.

Each document is atomic. Chunks and vectors of a new version are written under
ids derived from (source, content hash), then one registry transaction makes
that version the visible one and drops the other versions' chunk texts; their
vectors go right after. Re-running after a crash redoes the same writes under
the same ids.

Concurrent ingests of one document (racing uploads, two `imp ingest` runs) are
ordered by the attempt number each takes when it starts: the newest attempt that
succeeds is what search shows, and only the holder of the document's writer
lease touches its chunks and vectors (core.store.registry). An older attempt
that finds a newer one already visible answers failed, code ``superseded``.
"Unchanged" is answered only for a visible version whose chunks and vectors
are all there.

Vectors go to every served collection (core.index.serving: the champion's and a
challenger's, each embedded with its own model) and are deleted from every one,
under the serving set's shared lock, so a switch of embedder never misses a write.
Chunking uses the configured (base) embedder's tokenizer, which trained versions share.

Documents (not recordings) are read by core.ingest.sandbox: in worker processes
with a memory cap and a time limit. Users see plain reasons; internal failures
show only a log reference, and the log line with that reference has the detail.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import (
    CorruptDocument, DocumentTooLarge, EmptyDocument, ImpError, InvalidRequest, NotFound, UnsupportedFormat,
)
from core.index.embedders import Embedder
from core.index.keyword import KeywordIndex
from core.index.serving import Served, ServingSet
from core.index.vectors import VectorStore
from core.ingest.chunking import Chunker, document_id
from core.ingest.loaders import KINDS, LOADER_VERSION, MEDIA, detect_kind, load_file
from core.ingest.sandbox import LoaderCrashed, LoaderSandbox
from core.models import Chunk, DocumentRecord, IngestResult, IngestStatus, LoadedDocument, Segment
from core.observe import Observer, guarded
from core.store.leases import WriterBusy, WriterLease
from core.store.registry import CommitInfo, DocumentRegistry

if TYPE_CHECKING:
    import numpy as np

    from core.speech.transcriber import Transcriber
    from core.store.transcripts import TranscriptStore

log = logging.getLogger(__name__)

Progress = Callable[[IngestResult], None]
# (what, seconds or items done, in all): long steps such as transcription report through this.
StepProgress = Callable[[str, float, float], None]
_MEDIA_KINDS = frozenset({"audio", "video"})
# What an ingested document may be counted as (core.observe): a loader's kind, a recording, or "unknown"
# (refused before its kind was known). Anything else is counted as "other", so the set stays bounded.
_COUNTED_KINDS = KINDS | _MEDIA_KINDS | {MEDIA, "unknown"}

_EMBED_BATCH = 128
SUPERSEDED = "superseded"
# Failures whose detail is written for the person who sent the document; any other
# error's detail can hold paths, SQL or library text and goes to the log only.
_SHOWN = (UnsupportedFormat, CorruptDocument, EmptyDocument, DocumentTooLarge, InvalidRequest, NotFound, WriterBusy,
          LoaderCrashed)
# An absolute path (two or more components) inside a message: shown as its last component.
_PATH = re.compile(r"(?<![\w.~])(?:/[^\s'\"/:;,()<>]+){2,}")
# A URL (a service's address): not for users.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{0,30}://[^\s'\"<>]+")


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

    def __init__(self, registry: DocumentRegistry, vectors: VectorStore | None, keywords: KeywordIndex,
                 embedder: Embedder, *, overlap: float = 0.15, max_tokens: int | None = None,
                 max_file_bytes: int = 200 << 20, max_chars: int = 5_000_000,
                 transcriber: Transcriber | None = None, transcripts: TranscriptStore | None = None,
                 max_media_bytes: int = 4 << 30, loader_timeout_s: float = 300.0, loader_max_mb: int = 2048,
                 loader_workers: int = 2, loader_idle_s: float = 60.0, lease_ttl_s: float = 60.0,
                 serving: ServingSet | None = None, pdf_text: str = "pdfium", observer: Observer | None = None):
        """``loader_workers`` = 0 reads documents in this process, without the sandbox's limits;
        a loader process idle for ``loader_idle_s`` exits (the next document starts one).
        ``serving``: the served collections to write to; without it, ``vectors`` alone.
        ``pdf_text``: what lays out PDF text, "pdfium" or "pypdf" (core.ingest.loaders.pdf).
        ``observer`` is told of each document ingested, its kind, and how long it and its embedding took."""
        self._registry = registry
        if serving is None:
            if vectors is None:
                raise ValueError("give serving, or vectors")
            serving = ServingSet.fixed(embedder, vectors)
        self._serving = serving
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
        self._sandbox = (LoaderSandbox(timeout_s=loader_timeout_s, max_mb=loader_max_mb, workers=loader_workers,
                                       idle_s=loader_idle_s) if loader_workers > 0 else None)
        self._lease_ttl_s = lease_ttl_s
        self._pdf_text = pdf_text
        self._observer = guarded(observer)

    def close(self) -> None:
        """End the loader processes (the next document starts them again)."""
        if self._sandbox is not None:
            self._sandbox.close()

    def loader_pids(self) -> list[int]:
        """Process ids of the running document loader workers (health checks, tests)."""
        return self._sandbox.pids() if self._sandbox is not None else []

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
        """Recordings also depend on the speech model that transcribed them, PDFs on what laid out their text."""
        if kind in _MEDIA_KINDS and self._transcriber is not None:
            return f"{self.signature}|speech:{self._transcriber.model_id}"
        if kind == "pdf":
            return f"{self.signature}|pdf:{self._pdf_text}"
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
        started, kind = time.perf_counter(), ["unknown"]  # the kind, once known (read in the failure case too)
        result = self._ingest(path, scope, source, stored_path, on_step, kind)
        self._observer.stage("ingest", time.perf_counter() - started)
        self._observer.ingested(result.status.value, kind[0] if kind[0] in _COUNTED_KINDS else "other")
        return result

    def _ingest(self, path: Path, scope: str, source: str | None, stored_path: Path | None,
                on_step: StepProgress | None, seen_kind: list[str]) -> IngestResult:
        source = source or str(path.resolve())
        doc_id = document_id(scope, source)
        size = 0
        attempt: int | None = None
        try:
            attempt = self._registry.start(doc_id, source, scope)
            size = path.stat().st_size
            kind = seen_kind[0] = detect_kind(path)
            self._check_size(size, kind)
            version = file_version(path)
            chunks_now = self._unchanged(doc_id, attempt, version)
            if chunks_now is not None:
                return IngestResult(doc_id, source, IngestStatus.UNCHANGED, chunks=chunks_now)
            loaded = self._transcribe(path, on_step) if kind == MEDIA else self._load(path, kind)
            seen_kind[0] = loaded.kind
            chunks = self.chunker.chunk(loaded.segments, doc_id=doc_id, version=version, source=source, scope=scope)
            if not chunks:
                raise EmptyDocument("the document holds no text to index")
            return self._write(attempt, doc_id, source, scope, version, size, loaded, chunks, stored_path)
        except _SHOWN as e:
            return self._failed(doc_id, source, scope, attempt, size, e.code, _scrub(e.detail, path))
        except OSError as e:
            ref = _log_ref(source, e)
            reason = f": {e.strerror.lower()}" if e.strerror else ""
            return self._failed(doc_id, source, scope, attempt, size, "unreadable",
                                f"cannot read the file{reason} (ref {ref})")
        except ImpError as e:  # a backend (index, model) failed: what failed, and where the log says why
            ref = _log_ref(source, e)
            return self._failed(doc_id, source, scope, attempt, size, e.code, f"{_scrub(e.detail, path)} (ref {ref})")
        except Exception as e:  # a library bug on odd input, a database failure: never stops a batch
            ref = _log_ref(source, e)
            return self._failed(doc_id, source, scope, attempt, size, "internal_error", f"internal error (ref {ref})")

    def _load(self, path: Path, kind: str) -> LoadedDocument:
        if self._sandbox is None:
            return load_file(path, max_chars=self._max_chars, kind=kind, pdf_text=self._pdf_text)
        return self._sandbox.load(path, kind, self._max_chars, self._pdf_text)

    def _check_size(self, size: int, kind: str) -> None:
        limit, setting = ((self._max_media_bytes, "IMP_SPEECH__MAX_FILE_MB") if kind == MEDIA
                          else (self._max_file_bytes, "IMP_INGEST__MAX_FILE_MB"))
        if size > limit:
            raise DocumentTooLarge(f"file is {size / 2**20:.1f} MB, above the {limit / 2**20:.0f} MB limit ({setting})")

    def _transcribe(self, path: Path, on_step: StepProgress | None) -> LoadedDocument:
        if self._transcriber is None:
            raise UnsupportedFormat("recordings cannot be ingested here: speech recognition is not configured")
        info = self._transcriber.probe(path)
        report = (lambda done, total: on_step(f"transcribing {path.name}", done, total)) if on_step else None
        transcript = self._transcriber.transcribe(path, report, info=info)
        segments = [Segment(text=s.text, start=s.start, end=s.end, speaker=s.speaker) for s in transcript.segments]
        return LoadedDocument(kind=info.kind, segments=segments, transcript=transcript)

    def _unchanged(self, doc_id: str, attempt: int, version: str) -> int | None:
        """The chunk count if ``version`` is visible and complete (texts and vectors), else None."""
        rec = self._registry.find(doc_id)
        if rec is None or rec.version != version:
            return None
        signature = self._signature(rec.kind)
        if rec.extra.get("index_signature") != signature or rec.chunks < 1:
            return None
        if any(t.store.count(doc_id, version) != rec.chunks for t in self._serving.snapshot().targets()):
            log.warning("%s: vectors of the visible version are missing; indexing it again", rec.source)
            return None
        return self._registry.confirm_unchanged(doc_id, attempt, version, signature)

    def _write(self, attempt: int, doc_id: str, source: str, scope: str, version: str, size: int,
               loaded: LoadedDocument, chunks: list[Chunk], stored_path: Path | None) -> IngestResult:
        lease = self._registry.lock(doc_id, source, scope, attempt, ttl_s=self._lease_ttl_s)
        if lease is None:
            return self._superseded(doc_id, source, version)
        with self._serving.writing() as targets:  # after the lease, never before: see SwitchLock
            return self._write_locked(lease, attempt, doc_id, source, version, size, loaded, chunks, stored_path,
                                      targets)

    def _write_locked(self, lease: WriterLease, attempt: int, doc_id: str, source: str, version: str, size: int,
                      loaded: LoadedDocument, chunks: list[Chunk], stored_path: Path | None,
                      targets: list[Served]) -> IngestResult:
        try:
            self._registry.begin(lease, attempt, version, size)
            self._registry.put_chunks(doc_id, version, chunks)
            for i in range(0, len(chunks), _EMBED_BATCH):
                lease.renew()
                part = chunks[i : i + _EMBED_BATCH]
                texts = [c.text for c in part]
                embedded: dict[int, np.ndarray] = {}  # one embedding per model, however many collections use it
                for target in targets:
                    key = id(target.embedder)
                    if key not in embedded:
                        embedding_started = time.perf_counter()
                        embedded[key] = target.embedder.embed(texts)
                        self._observer.stage("embed", time.perf_counter() - embedding_started)
                    target.store.upsert(part, embedded[key])
            if loaded.transcript is not None and self._transcripts is not None:
                self._transcripts.save(doc_id, version, loaded.transcript)
            lease.renew()
            committed = self._registry.commit(lease, attempt, version, self._commit_info(loaded, chunks, stored_path))
        except BaseException:
            self._clean_up(lease, targets)
            lease.release()
            raise
        # Visible now (or a newer version is): what remains of other versions is garbage.
        if committed:  # the commit dropped the other versions' texts; their vectors go now
            self._clean_up(lease, targets, visible=version)
        else:
            self._clean_up(lease, targets)
        lease.release()
        if not committed:
            return self._superseded(doc_id, source, version)
        log.info("indexed %s: %d chunks", source, len(chunks))
        return IngestResult(doc_id, source, IngestStatus.INDEXED, chunks=len(chunks))

    def _commit_info(self, loaded: LoadedDocument, chunks: list[Chunk], stored_path: Path | None) -> CommitInfo:
        pages = {s.page for s in loaded.segments if s.page is not None}
        ends = [s.end for s in loaded.segments if s.end is not None]
        if loaded.transcript is not None:
            ends = [loaded.transcript.duration]
        return CommitInfo(
            kind=loaded.kind, title=loaded.title, chunks=len(chunks), segments=len(loaded.segments),
            pages=max(pages) if pages else None, duration=max(ends) if ends else None,
            embedding_model=self._embedder.model_id, index_signature=self._signature(loaded.kind),
            stored_path=str(stored_path) if stored_path else None,
        )

    def _clean_up(self, lease: WriterLease, targets: list[Served], *, visible: str | None = None) -> None:
        """Under the lease: drop every version's chunks and vectors but the visible one's
        (``visible``: known, its commit dropped the other versions' chunk texts).

        A failure here is only logged: leftovers are invisible (search shows chunks of
        the visible version alone) and the next writer of the document removes them.
        """
        try:
            ours = True
            if visible is None:
                ours, visible = self._registry.tidy(lease)
            if ours:
                for target in targets:
                    target.store.delete(lease.doc_id, keep_version=visible)
        except Exception:
            log.warning("could not clean up other versions of %s", lease.doc_id, exc_info=True)

    def _superseded(self, doc_id: str, source: str, version: str) -> IngestResult:
        """A newer attempt is visible: the same content (unchanged) or other content (this one is dropped)."""
        visible = self._registry.find(doc_id)
        if visible is not None and visible.version == version:
            return IngestResult(doc_id, source, IngestStatus.UNCHANGED, chunks=visible.chunks)
        log.info("%s: a newer upload was indexed first; this one is not kept", source)
        return IngestResult(doc_id, source, IngestStatus.FAILED, error_code=SUPERSEDED,
                            error="a newer upload of this document was indexed first, so this one was not kept")

    def _failed(self, doc_id: str, source: str, scope: str, attempt: int | None, size: int, code: str,
                detail: str) -> IngestResult:
        log.warning("could not ingest %s: %s", source, detail)
        try:
            self._registry.fail(doc_id, source, scope, attempt, size, code, detail)
        except Exception:  # the registry itself failing: the caller still gets the reason
            log.exception("could not record the failure of %s", source)
        return IngestResult(doc_id, source, IngestStatus.FAILED, error=detail, error_code=code)

    def refresh_keywords(self) -> None:
        self._keywords.refresh()

    def delete(self, doc_id: str) -> DocumentRecord:
        """Remove a document from search, waiting for an ingest of it that is writing to finish."""
        record = self._registry.get(doc_id)
        lease = self._registry.lock(doc_id, record.source, record.scope, None, ttl_s=self._lease_ttl_s)
        assert lease is not None  # only an attempt can be superseded
        try:
            with self._serving.writing() as targets:
                for target in targets:  # first: while the lease stands, nobody writes new ones
                    target.store.delete(doc_id)
                return self._registry.delete(doc_id)
        finally:
            lease.release()


def _log_ref(source: str, e: BaseException) -> str:
    """Log an internal failure with a short reference, the one the user is shown."""
    ref = secrets.token_hex(4)
    log.error("ingesting %s failed (ref %s)", source, ref, exc_info=e)
    return ref


def _scrub(detail: str, path: Path) -> str:
    """A user-facing reason without server paths: the file's own path, or any other, becomes its name."""
    for shown in {str(path.resolve()), str(path.absolute()), str(path)}:
        if len(shown) > 1:
            detail = detail.replace(shown, path.name)
    detail = _URL.sub("<address>", detail)
    return _PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], detail)
