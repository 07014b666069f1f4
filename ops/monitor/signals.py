"""What the drift check reads from the shared database: the two newest windows of answers and ingests.

A window is counted, not timed: the newest ``n`` answers (by when they were given) and the
``n`` before them; the newest ``n`` documents that finished ingesting (indexed or failed, by
their last update) and the ``n`` before them. Reads are bounded by ``n`` and only take the
columns the statistics need; question texts are cut to ``MAX_QUESTION_CHARS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from core.models import DocStatus
from core.store.database import Database
from core.store.schema import AnswerRow, DocumentRow, FeedbackRow

MAX_QUESTION_CHARS = 1000  # the embedders read 256-512 tokens; longer text only costs time
_BATCH = 500  # ids per IN (...) query: SQLite allows at most 32,766 bound parameters


@dataclass(frozen=True, slots=True)
class AnswerWindow:
    """One window of answers, newest first."""

    answer_ids: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    abstained: list[bool] = field(default_factory=list)
    best_similarity: list[float] = field(default_factory=list)  # answers that retrieved something
    total_ms: list[float] = field(default_factory=list)  # answers with a recorded total time
    first: datetime | None = None
    last: datetime | None = None

    def __len__(self) -> int:
        return len(self.answer_ids)


@dataclass(frozen=True, slots=True)
class Ratings:
    """The ratings in force (retracted ones left out) of one window's answers."""

    up: int = 0
    down: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass(frozen=True, slots=True)
class IngestWindow:
    """One window of finished ingests."""

    failed: int = 0
    total: int = 0


def _window(rows: Sequence) -> AnswerWindow:
    ids, questions, abstained, best, total_ms = [], [], [], [], []
    for answer_id, question, gave_up, similarity, timings, _created in rows:
        ids.append(answer_id)
        questions.append((question or "")[:MAX_QUESTION_CHARS])
        abstained.append(bool(gave_up))
        if similarity is not None:
            best.append(float(similarity))
        total = timings.get("total") if isinstance(timings, dict) else None
        if isinstance(total, int | float) and not isinstance(total, bool) and total >= 0:
            total_ms.append(float(total))
    return AnswerWindow(ids, questions, abstained, best, total_ms,
                        first=rows[-1][5] if rows else None, last=rows[0][5] if rows else None)


def answer_windows(database: Database, n: int) -> tuple[AnswerWindow, AnswerWindow]:
    """The newest ``n`` answers and the ``n`` before them."""
    q = (select(AnswerRow.answer_id, AnswerRow.question, AnswerRow.abstained, AnswerRow.best_similarity,
                AnswerRow.timings_ms, AnswerRow.created_at)
         .order_by(AnswerRow.created_at.desc(), AnswerRow.answer_id.desc())
         .limit(2 * n))
    with database.session() as s:
        rows = list(s.execute(q).all())
    return _window(rows[:n]), _window(rows[n:])


def ratings(database: Database, answer_ids: Iterable[str]) -> Ratings:
    """👍 and 👎 in force on these answers."""
    ids = list(answer_ids)
    up = down = 0
    with database.session() as s:
        for i in range(0, len(ids), _BATCH):
            q = (select(FeedbackRow.rating, func.count())
                 .where(FeedbackRow.answer_id.in_(ids[i:i + _BATCH]), FeedbackRow.retracted_at.is_(None))
                 .group_by(FeedbackRow.rating))
            for rating, count in s.execute(q):
                if rating > 0:
                    up += int(count)
                elif rating < 0:
                    down += int(count)
    return Ratings(up, down)


def ingest_windows(database: Database, n: int) -> tuple[IngestWindow, IngestWindow]:
    """The newest ``n`` finished ingests (indexed or failed) and the ``n`` before them."""
    failed = DocStatus.FAILED.value
    q = (select(DocumentRow.status)
         .where(DocumentRow.status.in_([DocStatus.INDEXED.value, failed]))
         .order_by(DocumentRow.updated_at.desc(), DocumentRow.doc_id.desc())
         .limit(2 * n))
    with database.session() as s:
        statuses = list(s.scalars(q).all())
    recent, previous = statuses[:n], statuses[n:]
    return (IngestWindow(sum(st == failed for st in recent), len(recent)),
            IngestWindow(sum(st == failed for st in previous), len(previous)))
