"""Feedback on answers (👍 = 1, 👎 = -1): recorded, retracted, listed for monitoring and training.

``rated_answers`` joins the ratings in force with the answer log for the learning loop;
it names no person and no channel, and gives the passages as they were cited (the engine
leaves out those of documents deleted or replaced since).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import select

from core.errors import InvalidRequest
from core.models import Feedback, RatedAnswer
from core.store.database import Database
from core.store.schema import AnswerRow, FeedbackRow


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# Answers read from the log per query: SQLite allows at most 32,766 bound parameters.
_ANSWER_BATCH = 500


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def _passages(citations: list) -> tuple[str, ...]:
    """The cited chunk texts, in citation order, each once (a malformed entry is skipped)."""
    texts: list[str] = []
    for c in citations or []:
        chunk = c.get("chunk") if isinstance(c, dict) else None
        text = chunk.get("text") if isinstance(chunk, dict) else None
        if isinstance(text, str) and text.strip():
            texts.append(text)
    return tuple(dict.fromkeys(texts))


def _feedback(r: FeedbackRow) -> Feedback:
    return Feedback(answer_id=r.answer_id, user=r.user, channel=r.channel, rating=r.rating,
                    created_at=r.created_at, source=r.source)


class FeedbackStore:
    """One active rating per (answer, user, rating, source); taking it back keeps the row, marked."""

    def __init__(self, database: Database):
        self._db = database
        # Check-then-insert must not interleave: Slack sends one event per emoji variant
        # ("+1" and "+1::skin-tone-2"), and the listeners that store them run in parallel.
        self._lock = threading.Lock()

    def record(self, fb: Feedback) -> bool:
        """Store a rating; False when the same person's same rating of the answer is already active."""
        if fb.rating not in (1, -1):
            raise InvalidRequest("a rating is 1 or -1")
        with self._lock, self._db.session() as s, s.begin():
            if s.scalars(self._active(fb.answer_id, fb.user, fb.rating, fb.source)).first() is not None:
                return False
            s.add(FeedbackRow(answer_id=fb.answer_id, user=fb.user, channel=fb.channel, rating=fb.rating,
                              source=fb.source, created_at=fb.created_at.astimezone(UTC).replace(tzinfo=None)
                              if fb.created_at.tzinfo else fb.created_at))
            return True

    def retract(self, answer_id: str, user: str, rating: int, source: str = "slack") -> bool:
        """Take back a rating; False when there was none to take back."""
        with self._db.session() as s, s.begin():
            rows = s.scalars(self._active(answer_id, user, rating, source)).all()
            for row in rows:
                row.retracted_at = _now()
            return bool(rows)

    def list(self, answer_id: str | None = None, *, include_retracted: bool = False) -> list[Feedback]:
        q = select(FeedbackRow).order_by(FeedbackRow.created_at, FeedbackRow.id)
        if answer_id is not None:
            q = q.where(FeedbackRow.answer_id == answer_id)
        if not include_retracted:
            q = q.where(FeedbackRow.retracted_at.is_(None))
        with self._db.session() as s:
            return [_feedback(r) for r in s.scalars(q)]

    @staticmethod
    def _active(answer_id: str, user: str, rating: int, source: str):
        return select(FeedbackRow).where(
            FeedbackRow.answer_id == answer_id, FeedbackRow.user == user, FeedbackRow.rating == rating,
            FeedbackRow.source == source, FeedbackRow.retracted_at.is_(None))

    def rated_answers(self, since: datetime | None = None) -> list[RatedAnswer]:
        """Answers with a rating in force, oldest rating first; with ``since``, those rated at or after it.

        ``ups``/``downs`` count every rating in force on the answer (not only the recent ones).
        Abstained answers and answers without citations give nothing: they hold no passage to learn from.
        """
        q = select(FeedbackRow).where(FeedbackRow.retracted_at.is_(None))
        with self._db.session() as s:
            votes: dict[str, list[int]] = {}
            latest: dict[str, datetime] = {}
            for row in s.scalars(q.order_by(FeedbackRow.created_at, FeedbackRow.id)):
                votes.setdefault(row.answer_id, []).append(row.rating)
                latest[row.answer_id] = row.created_at
            if since is not None:
                cutoff = _naive_utc(since)
                latest = {aid: when for aid, when in latest.items() if when >= cutoff}
            ids = sorted(latest, key=lambda aid: (latest[aid], aid))
            rows: dict[str, AnswerRow] = {}
            for i in range(0, len(ids), _ANSWER_BATCH):
                part = ids[i : i + _ANSWER_BATCH]
                rows.update((r.answer_id, r) for r in s.scalars(select(AnswerRow).where(AnswerRow.answer_id.in_(part))))
            rated: list[RatedAnswer] = []
            for aid in ids:
                row = rows.get(aid)
                if row is None or row.abstained:
                    continue
                passages = _passages(row.citations)
                if not passages:
                    continue
                ups, downs = votes[aid].count(1), votes[aid].count(-1)
                # The embedder column is newer than some databases' answer logs.
                embedder = getattr(row, "embedder", None)
                rated.append(RatedAnswer(answer_id=aid, question=row.question, passages=passages, ups=ups,
                                         downs=downs, rated_at=latest[aid], embedder=embedder))
            return rated
