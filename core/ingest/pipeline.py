"""The ingestion pipeline: open → prepare (load, chunk, embed) → write → commit, per document.

A file is opened here (an attempt taken, its size, kind and content hash checked), prepared
by core.ingest.prepare (read in the sandbox or transcribed, chunked, embedded: nothing
written) and committed here. A plain ingest does all three in this process; `imp ingest
--ray` prepares on Ray workers and commits here (core.ingest.distributed), through the same
``commit``.

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
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import DocumentTooLarge
from core.index.embedders import Embedder
from core.index.keyword import KeywordIndex
from core.index.serving import Served, ServingSet
from core.index.vectors import VectorStore
from core.ingest.chunking import Chunker, document_id
from core.ingest.loaders import KINDS, LOADER_VERSION, MEDIA, detect_kind
from core.ingest.prepare import (
    EmbedderSpec, FileJob, PreparedDocument, PrepareFailed, Preparer, StepProgress, failure,
)
from core.ingest.sandbox import LoaderSandbox
from core.models import Chunk, DocumentRecord, IngestResult, IngestStatus, LoadedDocument
from core.observe import Observer, guarded
from core.store.leases import WriterLease
from core.store.registry import CommitInfo, DocumentRegistry

if TYPE_CHECKING:
    import numpy as np

    from core.speech.transcriber import Transcriber
    from core.store.transcripts import TranscriptStore

log = logging.getLogger(__name__)

Progress = Callable[[IngestResult], None]
__all__ = ["IngestPipeline", "Progress", "StepProgress", "SUPERSEDED", "file_version", "walk"]
_MEDIA_KINDS = frozenset({"audio", "video"})
# What an ingested document may be counted as (core.observe): a loader's kind, a recording, or "unknown"
# (refused before its kind was known). Anything else is counted as "other", so the set stays bounded.
_COUNTED_KINDS = KINDS | _MEDIA_KINDS | {MEDIA, "unknown"}

_WRITE_BATCH = 128
SUPERSEDED = "superseded"


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
                 serving: ServingSet | None = None, pdf_text: str = "pdfium", observer: Observer | None = None,
                 embedder_at: Callable[[Path], Embedder] | None = None):
        """``loader_workers`` = 0 reads documents in this process, without the sandbox's limits;
        a loader process idle for ``loader_idle_s`` exits (the next document starts one).
        ``serving``: the served collections to write to; without it, ``vectors`` alone.
        ``pdf_text``: what lays out PDF text, "pdfium" or "pypdf" (core.ingest.loaders.pdf).
        ``observer`` is told of each document ingested, its kind, and how long it and its embedding took.
        ``embedder_at`` loads a trained embedder from its folder (a Ray worker's preparer is asked for the
        served ones by folder)."""
        self._registry = registry
        if serving is None:
            if vectors is None:
                raise ValueError("give serving, or vectors")
            serving = ServingSet.fixed(embedder, vectors)
        self._serving = serving
        self._keywords = keywords
        self._embedder = embedder
        self._max_file_bytes = max_file_bytes
        self._transcriber = transcriber
        self._transcripts = transcripts
        self._max_media_bytes = max_media_bytes
        sandbox = (LoaderSandbox(timeout_s=loader_timeout_s, max_mb=loader_max_mb, workers=loader_workers,
                                 idle_s=loader_idle_s) if loader_workers > 0 else None)
        self._preparer = Preparer(embedder, overlap=overlap, max_tokens=max_tokens, max_chars=max_chars,
                                  transcriber=transcriber, sandbox=sandbox, pdf_text=pdf_text,
                                  embedder_at=embedder_at)
        self._lease_ttl_s = lease_ttl_s
        self._pdf_text = pdf_text
        self._observer = guarded(observer)

    def close(self) -> None:
        """End the loader processes (the next document starts them again)."""
        self._preparer.close()

    def loader_pids(self) -> list[int]:
        """Process ids of the running document loader workers (health checks, tests)."""
        return self._preparer.loader_pids()

    @property
    def preparer(self) -> Preparer:
        """The per-file half (read, transcribe, chunk, embed): what a Ray worker runs (core.ingest.distributed)."""
        return self._preparer

    @property
    def chunker(self) -> Chunker:
        return self._preparer.chunker

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
        started = time.perf_counter()
        job, result = self.open(path, scope, source=source)
        kind = job.kind
        if result is None:  # embedded while it is written, as the lease is renewed (no embedders here)
            prepared = self._preparer.prepare_or_fail(job, (), on_step)
            kind = prepared.kind if isinstance(prepared, PrepareFailed) else prepared.loaded.kind
            result = self.commit(prepared, stored_path=stored_path)
        self.observed(result, kind, time.perf_counter() - started)
        return result

    def observed(self, result: IngestResult, kind: str, seconds: float) -> None:
        """Tell the observer of one document ingested (by this process or prepared by a worker)."""
        self._observer.stage("ingest", seconds)
        self._observer.ingested(result.status.value, kind if kind in _COUNTED_KINDS else "other")

    # -- the committing half: open a file, then commit what was prepared of it -----

    def open(self, path: Path, scope: str, *, source: str | None = None) -> tuple[FileJob, IngestResult | None]:
        """Take an attempt on ``path``'s document and check the file (size, kind, content hash).

        Returns the job to prepare, and a result when there is nothing to prepare: the visible
        version is this one (unchanged) or the file was refused (failed, recorded).
        """
        source = source or str(path.resolve())
        job = FileJob(path=path, source=source, scope=scope, doc_id=document_id(scope, source))
        try:
            job = replace(job, attempt=self._registry.start(job.doc_id, source, scope))
            job = replace(job, size=path.stat().st_size)
            job = replace(job, kind=detect_kind(path))
            self._check_size(job.size, job.kind)
            job = replace(job, version=file_version(path))
            chunks_now = self._unchanged(job.doc_id, job.attempt, job.version)
            if chunks_now is not None:
                return job, IngestResult(job.doc_id, source, IngestStatus.UNCHANGED, chunks=chunks_now)
            return job, None
        except Exception as e:
            return job, self.commit(failure(job, e))

    def embedder_specs(self) -> list[EmbedderSpec]:
        """The embedders a document is written with now (the served champion's, and a challenger's), as a
        worker process can rebuild them (core.ingest.distributed)."""
        return [EmbedderSpec(t.embedder.model_id, t.path) for t in self._serving.snapshot().targets()]

    def commit(self, prepared: PreparedDocument | PrepareFailed, *, stored_path: Path | None = None) -> IngestResult:
        """Make a prepared document the visible version (or record why it failed). Never raises."""
        if isinstance(prepared, PrepareFailed):
            return self._record(prepared)
        if prepared.embed_seconds:
            self._observer.stage("embed", prepared.embed_seconds)
        try:
            return self._write(prepared, stored_path)
        except Exception as e:
            return self._record(failure(prepared.job, e, prepared.loaded.kind))

    def _record(self, failed: PrepareFailed) -> IngestResult:
        job, detail = failed.job, failed.detail
        if failed.trace is not None:  # an internal failure: the user gets a reference to the log line with the cause
            ref = secrets.token_hex(4)
            log.error("ingesting %s failed (ref %s): %s\n%s", job.source, ref, detail, failed.trace.rstrip())
            detail = f"{detail} (ref {ref})"
        return self._failed(job.doc_id, job.source, job.scope, job.attempt, job.size, failed.code, detail)

    def _check_size(self, size: int, kind: str) -> None:
        limit, setting = ((self._max_media_bytes, "IMP_SPEECH__MAX_FILE_MB") if kind == MEDIA
                          else (self._max_file_bytes, "IMP_INGEST__MAX_FILE_MB"))
        if size > limit:
            raise DocumentTooLarge(f"file is {size / 2**20:.1f} MB, above the {limit / 2**20:.0f} MB limit ({setting})")

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

    def _write(self, prepared: PreparedDocument, stored_path: Path | None) -> IngestResult:
        job = prepared.job
        lease = self._registry.lock(job.doc_id, job.source, job.scope, job.attempt, ttl_s=self._lease_ttl_s)
        if lease is None:
            return self._superseded(job.doc_id, job.source, job.version)
        with self._serving.writing() as targets:  # after the lease, never before: see SwitchLock
            return self._write_locked(lease, prepared, stored_path, targets)

    def _write_locked(self, lease: WriterLease, prepared: PreparedDocument, stored_path: Path | None,
                      targets: list[Served]) -> IngestResult:
        job, chunks, loaded = prepared.job, prepared.chunks, prepared.loaded
        try:
            self._registry.begin(lease, job.attempt, job.version, job.size)
            self._registry.put_chunks(job.doc_id, job.version, chunks)
            n = len(chunks)
            for i in range(0, n, _WRITE_BATCH):
                lease.renew()
                part = chunks[i : i + _WRITE_BATCH]
                embedded: dict[str, np.ndarray] = {}  # one embedding per model, however many collections use it
                for target in targets:
                    key = target.embedder.model_id
                    given = prepared.vectors.get(key)
                    if given is not None and len(given) == n:  # embedded while it was prepared (a Ray worker)
                        target.store.upsert(part, given[i : i + _WRITE_BATCH])
                        continue
                    if key not in embedded:  # embedded here, batch by batch, the lease renewed between batches
                        embedding_started = time.perf_counter()
                        embedded[key] = target.embedder.embed([c.text for c in part])
                        self._observer.stage("embed", time.perf_counter() - embedding_started)
                    target.store.upsert(part, embedded[key])
            if loaded.transcript is not None and self._transcripts is not None:
                self._transcripts.save(job.doc_id, job.version, loaded.transcript)
            lease.renew()
            committed = self._registry.commit(lease, job.attempt, job.version,
                                              self._commit_info(loaded, chunks, stored_path))
        except BaseException:
            self._clean_up(lease, targets)
            lease.release()
            raise
        # Visible now (or a newer version is): what remains of other versions is garbage.
        if committed:  # the commit dropped the other versions' texts; their vectors go now
            self._clean_up(lease, targets, visible=job.version)
        else:
            self._clean_up(lease, targets)
        lease.release()
        if not committed:
            return self._superseded(job.doc_id, job.source, job.version)
        log.info("indexed %s: %d chunks", job.source, len(chunks))
        return IngestResult(job.doc_id, job.source, IngestStatus.INDEXED, chunks=len(chunks))

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
