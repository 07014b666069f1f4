"""Transcripts of recordings, one per document version, beside the document registry."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.errors import NotFound
from core.models import Transcript
from core.formats.transcripts import from_dict, to_dict
from core.store.database import Database
from core.store.schema import DocumentRow, TranscriptRow


class TranscriptStore:
    """Saves a version's transcript before it is committed; reads the committed one."""

    def __init__(self, database: Database):
        self._db = database

    def save(self, doc_id: str, version: str, transcript: Transcript) -> None:
        """Store (or replace) a version's transcript in one statement, safe beside other writers."""
        values = {"doc_id": doc_id, "version": version, "model": transcript.model, "data": to_dict(transcript),
                  "created_at": datetime.now(UTC).replace(tzinfo=None)}
        with self._db.session() as s, s.begin():
            dialect = s.get_bind().dialect.name
            if dialect not in ("sqlite", "postgresql"):
                s.merge(TranscriptRow(**values))
                return
            insert = sqlite_insert if dialect == "sqlite" else pg_insert
            q = insert(TranscriptRow.__table__).values(values)
            s.execute(q.on_conflict_do_update(index_elements=["doc_id", "version"],
                                              set_={k: q.excluded[k] for k in ("model", "data", "created_at")}))

    def get(self, doc_id: str) -> Transcript:
        """The transcript of the document's searchable version."""
        with self._db.session() as s:
            doc = s.get(DocumentRow, doc_id)
            if doc is None:
                raise NotFound(f"no document with id {doc_id!r}")
            row = s.get(TranscriptRow, (doc_id, doc.version)) if doc.version else None
            if row is None:
                raise NotFound(f"document {doc_id!r} has no transcript (it is not a recording, or not indexed yet)")
            return from_dict(row.data)
