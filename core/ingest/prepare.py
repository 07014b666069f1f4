"""The per-file half of ingestion that needs no shared state: read, transcribe, chunk, embed.

A ``Preparer`` turns one file (a ``FileJob``: what the committing process learned of it
before, its id, content hash and kind) into a ``PreparedDocument``: the loaded text or
transcript, its chunks and their vectors per embedding model. It writes nothing, so it
can run in the ingesting process (a plain `imp ingest`, an upload) or in a Ray worker
(core.ingest.distributed); either way core.ingest.pipeline commits the result in one
place, atomically and idempotently.

``prepare_or_fail`` is the worker's entry: it never raises, and turns a failure into a
``PrepareFailed`` with the reason a user may see (the traceback of an internal failure
travels along for the committing process's log, which users are pointed to by a reference).
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import (
    CorruptDocument, DocumentTooLarge, EmptyDocument, ImpError, InvalidRequest, NotFound, UnsupportedFormat,
)
from core.index.embedders import Embedder
from core.ingest.chunking import Chunker
from core.ingest.loaders import MEDIA, load_file
from core.ingest.sandbox import LoaderCrashed, LoaderSandbox
from core.models import Chunk, LoadedDocument, Segment
from core.store.leases import WriterBusy

if TYPE_CHECKING:
    import numpy as np

    from core.speech.transcriber import Transcriber

# (what, seconds or items done, in all): long steps such as transcription report through this.
StepProgress = Callable[[str, float, float], None]

# Failures whose detail is written for the person who sent the document; any other
# error's detail can hold paths, SQL or library text and goes to the log only.
SHOWN = (UnsupportedFormat, CorruptDocument, EmptyDocument, DocumentTooLarge, InvalidRequest, NotFound, WriterBusy,
         LoaderCrashed)
# An absolute path (two or more components) inside a message: shown as its last component.
_PATH = re.compile(r"(?<![\w.~])(?:/[^\s'\"/:;,()<>]+){2,}")
# A URL (a service's address): not for users.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{0,30}://[^\s'\"<>]+")
_EMBED_BATCH = 128


@dataclass(frozen=True)
class FileJob:
    """One file to prepare, as the committing process opened it (its attempt taken, its content hashed)."""

    path: Path
    source: str
    scope: str
    doc_id: str
    attempt: int | None = None
    size: int = 0
    kind: str = "unknown"  # a loader's kind, or MEDIA until a recording is probed
    version: str = ""


@dataclass(frozen=True)
class PreparedDocument:
    """A file read, chunked and embedded: everything its commit writes."""

    job: FileJob
    loaded: LoadedDocument
    chunks: list[Chunk]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # embedder model id -> one row per chunk
    embed_seconds: float = 0.0


@dataclass(frozen=True)
class PrepareFailed:
    """Why a file could not be prepared: ``detail`` may be shown; ``trace`` (internal failures) is for the log."""

    job: FileJob
    code: str
    detail: str
    trace: str | None = None  # set: the committing process logs it under a reference it shows the user
    kind: str = "unknown"


@dataclass(frozen=True)
class EmbedderSpec:
    """An embedder the commit writes with, as a worker can rebuild it: its model id and folder (None: the base)."""

    model_id: str
    path: Path | None = None


def failure(job: FileJob, e: BaseException, kind: str | None = None) -> PrepareFailed:
    """The reason to show for ``e``: its own detail when written for users, else a plain one (with the trace)."""
    if isinstance(e, SHOWN):
        return PrepareFailed(job, e.code, scrub(e.detail, job.path), kind=kind or job.kind)
    trace = "".join(traceback.format_exception(e))
    if isinstance(e, OSError):
        reason = f": {e.strerror.lower()}" if e.strerror else ""
        return PrepareFailed(job, "unreadable", f"cannot read the file{reason}", trace, kind or job.kind)
    if isinstance(e, ImpError):  # a backend (index, model) failed: what failed; the log says why
        return PrepareFailed(job, e.code, scrub(e.detail, job.path), trace, kind or job.kind)
    # A library bug on odd input, a database failure: never stops a batch.
    return PrepareFailed(job, "internal_error", "internal error", trace, kind or job.kind)


def scrub(detail: str, path: Path) -> str:
    """A user-facing reason without server paths: the file's own path, or any other, becomes its name."""
    for shown in {str(path.resolve()), str(path.absolute()), str(path)}:
        if len(shown) > 1:
            detail = detail.replace(shown, path.name)
    detail = _URL.sub("<address>", detail)
    return _PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], detail)


class Preparer:
    """Reads, transcribes, chunks and embeds one file at a time; holds its models across files."""

    def __init__(self, embedder: Embedder, *, overlap: float = 0.15, max_tokens: int | None = None,
                 max_chars: int = 5_000_000, transcriber: Transcriber | None = None,
                 sandbox: LoaderSandbox | None = None, pdf_text: str = "pdfium",
                 embedder_at: Callable[[Path], Embedder] | None = None):
        """``embedder`` is the configured (base) one, whose tokenizer chunks; ``embedder_at`` builds a
        trained version from its folder (the served champion or challenger a worker is asked to embed with)."""
        self._embedder = embedder
        self._overlap = overlap
        self._max_tokens = max_tokens
        self._max_chars = max_chars
        self._transcriber = transcriber
        self._sandbox = sandbox
        self._pdf_text = pdf_text
        self._embedder_at = embedder_at
        self._trained: dict[str, Embedder] = {}
        self._chunker: Chunker | None = None

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            window = self._embedder.max_tokens
            size = min(window, self._max_tokens) if self._max_tokens else window
            self._chunker = Chunker(self._embedder.tokenizer(), size, self._overlap)
        return self._chunker

    def close(self) -> None:
        """End the loader processes (the next document starts them again)."""
        if self._sandbox is not None:
            self._sandbox.close()

    def loader_pids(self) -> list[int]:
        return self._sandbox.pids() if self._sandbox is not None else []

    def prepare(self, job: FileJob, embedders: Sequence[Embedder],
                on_step: StepProgress | None = None) -> PreparedDocument:
        """Read ``job``'s file, chunk it and embed the chunks with each of ``embedders``; raises on failure."""
        path = job.path
        loaded = self._transcribe(path, on_step) if job.kind == MEDIA else self._load(path, job.kind)
        chunks = self.chunker.chunk(loaded.segments, doc_id=job.doc_id, version=job.version, source=job.source,
                                    scope=job.scope)
        if not chunks:
            raise EmptyDocument("the document holds no text to index")
        embedding = time.perf_counter()
        vectors = {}
        for embedder in embedders:  # one embedding per model, however many collections use it
            if embedder.model_id not in vectors:
                vectors[embedder.model_id] = embed(embedder, [c.text for c in chunks])
        return PreparedDocument(job, loaded, chunks, vectors, time.perf_counter() - embedding)

    def prepare_or_fail(self, job: FileJob, specs: Sequence[EmbedderSpec],
                        on_step: StepProgress | None = None) -> PreparedDocument | PrepareFailed:
        """``prepare`` with the embedders ``specs`` name, answering a failure instead of raising (Ray workers)."""
        try:
            return self.prepare(job, [self._resolve(s) for s in specs], on_step)
        except Exception as e:
            return failure(job, e)

    def _resolve(self, spec: EmbedderSpec) -> Embedder:
        if spec.path is None:
            return self._embedder
        key = str(spec.path)
        if key not in self._trained:
            if self._embedder_at is None:
                raise InvalidRequest(f"no way to load the embedder {spec.model_id} here")
            self._trained[key] = self._embedder_at(spec.path)
        return self._trained[key]

    def _load(self, path: Path, kind: str) -> LoadedDocument:
        if self._sandbox is None:
            return load_file(path, max_chars=self._max_chars, kind=kind, pdf_text=self._pdf_text)
        return self._sandbox.load(path, kind, self._max_chars, self._pdf_text)

    def _transcribe(self, path: Path, on_step: StepProgress | None) -> LoadedDocument:
        if self._transcriber is None:
            raise UnsupportedFormat("recordings cannot be ingested here: speech recognition is not configured")
        info = self._transcriber.probe(path)
        report = (lambda done, total: on_step(f"transcribing {path.name}", done, total)) if on_step else None
        transcript = self._transcriber.transcribe(path, report, info=info)
        segments = [Segment(text=s.text, start=s.start, end=s.end, speaker=s.speaker) for s in transcript.segments]
        return LoadedDocument(kind=info.kind, segments=segments, transcript=transcript)


def embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Vectors of ``texts`` in batches (a long document's chunks do not go to the model at once)."""
    import numpy as np

    parts = [embedder.embed(texts[i : i + _EMBED_BATCH]) for i in range(0, len(texts), _EMBED_BATCH)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
