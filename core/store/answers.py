"""The answer log: every answer with its question, citations, scopes, model and timings.

The log keeps what was answered. What may be shown again is decided above it: the
answerer reads an answer back through ``Answerer.read``, which redacts citations of
documents deleted, unshared or replaced since (``visible_sources`` says which remain).
"""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Answer, Chunk, Citation
from core.store.database import Database
from core.store.registry import DocumentRegistry
from core.store.schema import AnswerRow, FeedbackRow


def _chunk_json(c: Chunk) -> dict:
    return {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "version": c.version, "ordinal": c.ordinal,
            "source": c.source, "scope": c.scope, "text": c.text, "page_start": c.page_start,
            "page_end": c.page_end, "start": c.start, "end": c.end, "speakers": list(c.speakers)}


def _chunk(d: dict) -> Chunk:
    return Chunk(**{**d, "speakers": tuple(d.get("speakers") or ())})


class AnswerLog:
    """Stores answers in the shared database; the registry says which cited chunks are still visible."""

    def __init__(self, database: Database, registry: DocumentRegistry):
        self._db = database
        self._registry = registry

    def _session(self) -> Session:
        return self._db.session()

    def save(self, answer: Answer, *, search_query: str) -> None:
        model, _, version = answer.model.partition("@")
        with self._session() as s, s.begin():
            s.add(AnswerRow(
                answer_id=answer.answer_id, question=answer.question, search_query=search_query,
                answer=answer.text, abstained=answer.abstained,
                citations=[{"n": c.n, "chunk": _chunk_json(c.chunk)} for c in answer.citations],
                scopes=list(answer.scopes), model=answer.model, model_version=version or None,
                timings_ms=dict(answer.timings_ms), notes=list(answer.notes), created_at=answer.created_at,
                embedder=answer.embedder, adapter=answer.adapter, best_similarity=answer.best_similarity,
            ))

    def visible_sources(self, answer: Answer) -> set[str]:
        """The chunk ids among ``answer``'s citations that are still visible (committed, not deleted)."""
        return set(self._registry.visible_chunks(c.chunk.chunk_id for c in answer.citations))

    def get(self, answer_id: str) -> Answer:
        """The answer as it was given (``Answerer.read`` gives what may be shown again)."""
        with self._session() as s:
            row = s.get(AnswerRow, answer_id)
            if row is None:
                raise NotFound(f"no answer with id {answer_id!r}")
            return Answer(
                answer_id=row.answer_id, question=row.question, text=row.answer, abstained=row.abstained,
                citations=[Citation(c["n"], _chunk(c["chunk"])) for c in row.citations],
                scopes=list(row.scopes), model=row.model, timings_ms=dict(row.timings_ms),
                created_at=row.created_at,
                notes=list(row.notes or []), embedder=row.embedder, adapter=row.adapter,
                best_similarity=row.best_similarity,
            )

    def ratings_by_version(self, model: str) -> dict[str, tuple[int, int]]:
        """Per version of ``model`` ("embedder" or "adapter") that produced rated answers: (👍, 👎)
        counts of the ratings in force (retracted ones left out)."""
        column = {"embedder": AnswerRow.embedder, "adapter": AnswerRow.adapter}[model]
        q = (select(column, func.sum(case((FeedbackRow.rating > 0, 1), else_=0)),
                    func.sum(case((FeedbackRow.rating < 0, 1), else_=0)))
             .join(FeedbackRow, FeedbackRow.answer_id == AnswerRow.answer_id)
             .where(FeedbackRow.retracted_at.is_(None), column.is_not(None))
             .group_by(column))
        with self._session() as s:
            return {version: (int(up or 0), int(down or 0)) for version, up, down in s.execute(q)}
