"""Document registry: each document's state, and the chunk texts of its versions.

The registry is the arbiter of visibility. A chunk is searchable only while its
``version`` equals its document's committed ``version``; a new version is
committed in one SQLite transaction after all of its chunks and vectors are
written. A crash before that commit leaves the previous version (or nothing)
visible, never half a document. Concurrent ingests of one document are ordered
by attempt numbers and serialised by a writer lease (see "writing" below).
Every write transaction starts with a write statement, and rows are created
with INSERT ... ON CONFLICT, so concurrent processes never collide on a row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Chunk, DocStatus, DocumentRecord
from core.store.database import Database
from core.store.leases import WriterBusy, WriterLease, abandoned, acquire
from core.store.schema import ChunkRow, DocumentRow, MetaRow, TranscriptRow

log = logging.getLogger(__name__)

_GENERATION = "generation"
_DOCS = DocumentRow.__table__
_CHUNKS = ChunkRow.__table__


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


class DocumentRegistry:
    """Documents and chunk texts in the relational database (core.store.database)."""

    def __init__(self, database: Database):
        self.database = database  # shared with the other stores; whoever built it closes it

    def _session(self) -> Session:
        return self.database.session()

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
    #
    # Ingests of one document may run at once (threads, a CLI beside the server).
    # Two rules keep what search shows consistent:
    # - Each ingest takes the next attempt number (``start``). The visible version is
    #   the newest attempt that succeeded: a commit only lands if no newer attempt has
    #   (compare-and-set on ``committed_attempt``), and ``status``/``error`` report the
    #   newest attempt that reported, so the end state is the one sequential ingests in
    #   arrival order would leave.
    # - Chunks and vectors of a document change only under its writer lease (``lock``):
    #   one writer at a time, across processes, so cleaning up "every version but the
    #   visible one" can never delete the rows another writer is about to commit.

    def start(self, doc_id: str, source: str, scope: str) -> int:
        """Number a new ingest of a document (1, 2, …); a new document gets its row (status indexing)."""
        with self._session() as s, s.begin():
            _ensure_row(s, doc_id, source, scope)
            q = (update(_DOCS).where(_DOCS.c.doc_id == doc_id)
                 .values(attempts=func.coalesce(_DOCS.c.attempts, 0) + 1).returning(_DOCS.c.attempts))
            return int(s.execute(q).scalar_one())

    def confirm_unchanged(self, doc_id: str, attempt: int, version: str, signature: str) -> int | None:
        """If ``version`` is the visible version, built with ``signature``, with every one of its chunk
        texts stored: record ``attempt`` as its newest ingest and return its chunk count; else None."""
        stored = (select(func.count()).select_from(_CHUNKS)
                  .where(_CHUNKS.c.doc_id == doc_id, _CHUNKS.c.version == version).scalar_subquery())
        with self._session() as s, s.begin():
            q = (update(_DOCS)
                 .where(_DOCS.c.doc_id == doc_id, _DOCS.c.version == version, _DOCS.c.index_signature == signature,
                        _DOCS.c.chunks > 0, _DOCS.c.chunks == stored)
                 .values(committed_attempt=_newest(_DOCS.c.committed_attempt, attempt))
                 .returning(_DOCS.c.chunks))
            chunks = s.execute(q).scalar_one_or_none()
            if chunks is None:
                return None
            _report(s, doc_id, attempt, status=DocStatus.INDEXED.value, error=None, error_code=None)
            return int(chunks)

    def lock(self, doc_id: str, source: str, scope: str, attempt: int | None, *,
             ttl_s: float = 60.0, wait_s: float = 1800.0) -> WriterLease | None:
        """Become the one writer of a document's chunks and vectors (core.store.leases), waiting while
        another live writer is; None when a newer attempt than ``attempt`` is already visible."""

        def claim(token: str, until: datetime) -> bool | None:
            with self._session() as s, s.begin():
                _ensure_row(s, doc_id, source, scope)  # the document may have been deleted meanwhile
                row = s.execute(select(_DOCS.c.writer, _DOCS.c.committed_attempt)
                                .where(_DOCS.c.doc_id == doc_id)).one()
                if attempt is not None and (row.committed_attempt or 0) >= attempt:
                    return None
                free = or_(_DOCS.c.writer.is_(None), _DOCS.c.writer_until < _now())
                if row.writer is not None and abandoned(row.writer):
                    log.warning("document %s: taking over the writer lease of a process that is gone", doc_id)
                    free = _DOCS.c.writer == row.writer
                q = update(_DOCS).where(_DOCS.c.doc_id == doc_id, free).values(writer=token, writer_until=until)
                return bool(s.execute(q).rowcount)

        return acquire(self, doc_id, claim, ttl_s=ttl_s, wait_s=wait_s)

    def _renew(self, lease: WriterLease) -> bool:
        with self._session() as s, s.begin():
            q = (update(_DOCS).where(_DOCS.c.doc_id == lease.doc_id, _DOCS.c.writer == lease.token)
                 .values(writer_until=_now() + timedelta(seconds=lease.ttl_s)))
            return bool(s.execute(q).rowcount)

    def _release(self, lease: WriterLease) -> None:
        with self._session() as s, s.begin():
            s.execute(update(_DOCS).where(_DOCS.c.doc_id == lease.doc_id, _DOCS.c.writer == lease.token)
                      .values(writer=None, writer_until=None))

    def begin(self, lease: WriterLease, attempt: int, version: str, size_bytes: int) -> None:
        """Announce that ``version`` of a document is being written; what is visible does not change."""
        with self._session() as s, s.begin():
            q = (update(_DOCS).where(_DOCS.c.doc_id == lease.doc_id, _DOCS.c.writer == lease.token)
                 .values(pending_version=version, size_bytes=size_bytes, updated_at=_now()))
            if not s.execute(q).rowcount:
                raise WriterBusy("another upload of this document took over while it was being indexed")
            _report(s, lease.doc_id, attempt, status=DocStatus.INDEXING.value, error=None, error_code=None)

    def put_chunks(self, doc_id: str, version: str, chunks: list[Chunk]) -> None:
        """Write the full chunk set of one version, replacing any earlier attempt at it."""
        with self._session() as s, s.begin():
            s.execute(delete(ChunkRow).where(ChunkRow.doc_id == doc_id, ChunkRow.version == version))
            s.add_all(_row(c) for c in chunks)

    def commit(self, lease: WriterLease, attempt: int, version: str, info: CommitInfo) -> bool:
        """Make ``version`` the visible one, unless a newer attempt already is; then, in the same
        transaction, drop the chunk texts and transcripts of every other version. True if it landed."""
        doc_id = lease.doc_id
        with self._session() as s, s.begin():
            q = (update(_DOCS)
                 .where(_DOCS.c.doc_id == doc_id, _DOCS.c.writer == lease.token,
                        func.coalesce(_DOCS.c.committed_attempt, 0) < attempt)
                 .values(version=version, committed_attempt=attempt, pending_version=None, kind=info.kind,
                         title=info.title, chunks=info.chunks, segments=info.segments, pages=info.pages,
                         duration=info.duration, embedding_model=info.embedding_model,
                         index_signature=info.index_signature, stored_path=info.stored_path, updated_at=_now()))
            if not s.execute(q).rowcount:
                return False
            _report(s, doc_id, attempt, status=DocStatus.INDEXED.value, error=None, error_code=None)
            _drop_versions(s, doc_id, keep=version)
            _bump_generation(s)
            return True

    def tidy(self, lease: WriterLease) -> tuple[bool, str | None]:
        """After writing (committed, superseded or failed): drop the chunk texts and transcripts of
        every version but the visible one.

        Returns (whether the lease was still ours, the visible version). Without the
        lease nothing is touched: the writer that has it owns the document's rows.
        """
        with self._session() as s, s.begin():
            q = (update(_DOCS).where(_DOCS.c.doc_id == lease.doc_id, _DOCS.c.writer == lease.token)
                 .values(pending_version=None).returning(_DOCS.c.version))
            row = s.execute(q).one_or_none()
            if row is None:
                return False, None
            _drop_versions(s, lease.doc_id, keep=row.version)
            return True, row.version

    def fail(self, doc_id: str, source: str, scope: str, attempt: int | None, size_bytes: int,
             code: str, error: str) -> None:
        """Record a failed attempt, unless a newer one has reported. A committed version stays visible."""
        with self._session() as s, s.begin():
            _ensure_row(s, doc_id, source, scope)
            _report(s, doc_id, attempt, status=DocStatus.FAILED.value, error=error, error_code=code,
                    size_bytes=size_bytes)

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
        """Close the registry's database (for a caller that built the registry over a database of its own)."""
        self.database.close()


def _ensure_row(s: Session, doc_id: str, source: str, scope: str) -> None:
    """Insert the document's row unless it exists; safe when two processes do it at once."""
    values = {"doc_id": doc_id, "source": source, "scope": scope, "status": DocStatus.INDEXING.value,
              "chunks": 0, "segments": 0, "size_bytes": 0, "updated_at": _now()}
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        s.execute(insert(_DOCS).values(values).on_conflict_do_nothing(index_elements=[_DOCS.c.doc_id]))
        return
    if s.execute(select(_DOCS.c.doc_id).where(_DOCS.c.doc_id == doc_id)).first() is None:
        try:
            with s.begin_nested():
                s.execute(_DOCS.insert().values(values))
        except IntegrityError:
            pass  # inserted by another writer between the check and the insert


def _newest(column, attempt: int):  # noqa: ANN001, ANN202 - SQL expressions
    """``max(column, attempt)`` in SQL that SQLite and PostgreSQL both speak."""
    return case((func.coalesce(column, 0) < attempt, attempt), else_=column)


def _report(s: Session, doc_id: str, attempt: int | None, **values: object) -> None:
    """Set the document's status fields for ``attempt``, unless a newer attempt already reported."""
    q = update(_DOCS).where(_DOCS.c.doc_id == doc_id)
    if attempt is not None:
        q = q.where(func.coalesce(_DOCS.c.status_attempt, 0) <= attempt)
        values["status_attempt"] = attempt
    s.execute(q.values(updated_at=_now(), **values))


def _drop_versions(s: Session, doc_id: str, keep: str | None) -> None:
    for table in (ChunkRow, TranscriptRow):
        q = delete(table).where(table.doc_id == doc_id)
        if keep is not None:
            q = q.where(table.version != keep)
        s.execute(q)


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
