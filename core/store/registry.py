"""Document registry: each document's state, and the chunk texts of its versions.

The registry is the arbiter of visibility. A chunk is searchable only while its
``version`` equals its document's committed ``version``; a new version is
committed in one SQLite transaction after all of its chunks and vectors are
written. A crash before that commit leaves the previous version (or nothing)
visible, never half a document.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, delete, event, func, select, update
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.orm import Session, sessionmaker

from core.errors import NotFound
from core.models import Chunk, DocStatus, DocumentRecord
from core.store.schema import Base, ChunkRow, DocumentRow, MetaRow, TranscriptRow

_GENERATION = "generation"


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """Facts about a committed version, stored on the document row."""

    kind: str
    title: str | None
    chunks: int
    segments: int
    pages: int | None
    duration: float | None
    embedding_model: str
    index_signature: str
    stored_path: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def make_sql_engine(url: str) -> SqlEngine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so CLI and server can share it."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DBAPI connection
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


class DocumentRegistry:
    """Documents and chunk texts in a relational database."""

    def __init__(self, url: str):
        self._url = url
        self._engine: SqlEngine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()

    def _session(self) -> Session:
        if self._sessions is None:
            with self._lock:
                if self._sessions is None:
                    self._engine = make_sql_engine(self._url)
                    Base.metadata.create_all(self._engine)
                    self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._sessions()

    def session(self) -> Session:
        """A session on the registry's database, for other stores that share it."""
        return self._session()

    # -- reading ---------------------------------------------------------------

    def get(self, doc_id: str) -> DocumentRecord:
        with self._session() as s:
            row = s.get(DocumentRow, doc_id)
            if row is None:
                raise NotFound(f"no document with id {doc_id!r}")
            return _record(row)

    def find(self, doc_id: str) -> DocumentRecord | None:
        with self._session() as s:
            row = s.get(DocumentRow, doc_id)
            return _record(row) if row else None

    def list(self, scopes: Iterable[str] | None = None) -> list[DocumentRecord]:
        with self._session() as s:
            q = select(DocumentRow).order_by(DocumentRow.updated_at.desc())
            if scopes is not None:
                q = q.where(DocumentRow.scope.in_(list(scopes)))
            return [_record(r) for r in s.scalars(q)]

    def with_source_prefix(self, prefix: str) -> list[DocumentRecord]:
        """Documents whose source starts with ``prefix`` (in any scope)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._session() as s:
            q = select(DocumentRow).where(DocumentRow.source.like(escaped + "%", escape="\\"))
            return [_record(r) for r in s.scalars(q)]

    def generation(self) -> int:
        """A counter that changes whenever the set of visible chunks changes."""
        with self._session() as s:
            row = s.get(MetaRow, _GENERATION)
            return int(row.value) if row else 0

    def visible_chunks(self, chunk_ids: Iterable[str]) -> dict[str, Chunk]:
        """The chunks among ``chunk_ids`` that belong to a committed version."""
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return {}
        with self._session() as s:
            q = (
                select(ChunkRow)
                .join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
                .where(ChunkRow.chunk_id.in_(ids), DocumentRow.version == ChunkRow.version)
            )
            return {r.chunk_id: _chunk(r) for r in s.scalars(q)}

    def iter_visible(self, batch: int = 5000) -> Iterator[tuple[str, str, str]]:
        """(chunk_id, scope, text) of every visible chunk, in a stable order."""
        with self._session() as s:
            q = (
                select(ChunkRow.chunk_id, ChunkRow.scope, ChunkRow.text)
                .join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
                .where(DocumentRow.version == ChunkRow.version)
                .order_by(ChunkRow.chunk_id)
                .execution_options(yield_per=batch)
            )
            for cid, scope, text in s.execute(q):
                yield cid, scope, text

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        """The visible chunks of one document, in reading order."""
        with self._session() as s:
            q = (
                select(ChunkRow)
                .join(DocumentRow, DocumentRow.doc_id == ChunkRow.doc_id)
                .where(ChunkRow.doc_id == doc_id, DocumentRow.version == ChunkRow.version)
                .order_by(ChunkRow.ordinal)
            )
            return [_chunk(r) for r in s.scalars(q)]

    # -- writing ---------------------------------------------------------------

    def begin(self, doc_id: str, source: str, scope: str, version: str, size_bytes: int) -> None:
        """Announce that ``version`` of a document is being indexed; what is visible does not change."""
        with self._session() as s, s.begin():
            row = s.get(DocumentRow, doc_id)
            if row is None:
                row = DocumentRow(doc_id=doc_id, source=source, scope=scope, chunks=0, segments=0)
                s.add(row)
            row.status = DocStatus.INDEXING.value
            row.pending_version = version
            row.size_bytes = size_bytes
            row.error = None
            row.error_code = None
            row.updated_at = _now()

    def put_chunks(self, doc_id: str, version: str, chunks: list[Chunk]) -> None:
        """Write the full chunk set of one version, replacing any earlier attempt at it."""
        with self._session() as s, s.begin():
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc_id, ChunkRow.version == version))
            s.add_all(_row(c) for c in chunks)

    def commit(self, doc_id: str, version: str, info: CommitInfo) -> str | None:
        """Make ``version`` the visible one. Returns the version it replaced, if any."""
        with self._session() as s, s.begin():
            row = s.get(DocumentRow, doc_id)
            if row is None:
                raise NotFound(f"no document with id {doc_id!r}")
            previous = row.version
            row.version = version
            row.pending_version = None
            row.status = DocStatus.INDEXED.value
            row.kind = info.kind
            row.title = info.title
            row.chunks = info.chunks
            row.segments = info.segments
            row.pages = info.pages
            row.duration = info.duration
            row.embedding_model = info.embedding_model
            row.index_signature = info.index_signature
            row.stored_path = info.stored_path
            row.error = None
            row.error_code = None
            row.updated_at = _now()
            _bump_generation(s)
            return previous if previous != version else None

    def fail(self, doc_id: str, source: str, scope: str, size_bytes: int, code: str, error: str) -> None:
        """Record a failure. A previously committed version stays visible."""
        with self._session() as s, s.begin():
            row = s.get(DocumentRow, doc_id)
            if row is None:
                row = DocumentRow(doc_id=doc_id, source=source, scope=scope, chunks=0, segments=0)
                s.add(row)
            row.status = DocStatus.FAILED.value
            row.pending_version = None
            row.size_bytes = size_bytes
            row.error = error
            row.error_code = code
            row.updated_at = _now()

    def drop_chunks(self, doc_id: str, keep_version: str | None = None) -> None:
        """Delete a document's chunk texts and transcripts except those of ``keep_version``."""
        with self._session() as s, s.begin():
            for table in (ChunkRow, TranscriptRow):
                q = delete(table).where(table.doc_id == doc_id)
                if keep_version is not None:
                    q = q.where(table.version != keep_version)
                s.execute(q)

    def delete(self, doc_id: str) -> DocumentRecord:
        """Remove a document from search (one transaction) and forget its chunk texts."""
        with self._session() as s, s.begin():
            row = s.get(DocumentRow, doc_id)
            if row is None:
                raise NotFound(f"no document with id {doc_id!r}")
            record = _record(row)
            s.delete(row)
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc_id))
            s.execute(delete(TranscriptRow).where(TranscriptRow.doc_id == doc_id))
            _bump_generation(s)
            return record

    def count_chunks(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(ChunkRow)) or 0)

    def pending(self) -> list[DocumentRecord]:
        """Documents whose indexing started and never finished (a crash, a kill)."""
        with self._session() as s:
            q = select(DocumentRow).where(DocumentRow.status == DocStatus.INDEXING.value)
            return [_record(r) for r in s.scalars(q)]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _bump_generation(s: Session) -> None:
    row = s.get(MetaRow, _GENERATION)
    if row is None:
        s.add(MetaRow(key=_GENERATION, value="1"))
    else:
        s.execute(update(MetaRow).where(MetaRow.key == _GENERATION).values(value=str(int(row.value) + 1)))


def _record(r: DocumentRow) -> DocumentRecord:
    return DocumentRecord(
        doc_id=r.doc_id,
        source=r.source,
        scope=r.scope,
        status=DocStatus(r.status),
        kind=r.kind,
        version=r.version,
        chunks=r.chunks or 0,
        pages=r.pages,
        duration=r.duration,
        size_bytes=r.size_bytes or 0,
        embedding_model=r.embedding_model,
        error=r.error,
        updated_at=r.updated_at,
        title=r.title,
        segments=r.segments or 0,
        extra={
            "pending_version": r.pending_version,
            "index_signature": r.index_signature,
            "error_code": r.error_code,
            "stored_path": r.stored_path,
        },
    )


def _chunk(r: ChunkRow) -> Chunk:
    return Chunk(
        chunk_id=r.chunk_id,
        doc_id=r.doc_id,
        version=r.version,
        ordinal=r.ordinal,
        source=r.source,
        scope=r.scope,
        text=r.text,
        page_start=r.page_start,
        page_end=r.page_end,
        start=r.start,
        end=r.end,
        speakers=tuple(r.speakers or ()),
    )


def _row(c: Chunk) -> ChunkRow:
    return ChunkRow(
        chunk_id=c.chunk_id,
        doc_id=c.doc_id,
        version=c.version,
        ordinal=c.ordinal,
        scope=c.scope,
        source=c.source,
        text=c.text,
        page_start=c.page_start,
        page_end=c.page_end,
        start=c.start,
        end=c.end,
        speakers=list(c.speakers),
    )
