"""Feedback on answers (👍 = 1, 👎 = -1): recorded, retracted, listed for monitoring and training."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import select

from core.errors import InvalidRequest
from core.models import Feedback
from core.store.registry import DocumentRegistry
from core.store.schema import FeedbackRow


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _feedback(r: FeedbackRow) -> Feedback:
    return Feedback(answer_id=r.answer_id, user=r.user, channel=r.channel, rating=r.rating,
                    created_at=r.created_at, source=r.source)


class FeedbackStore:
    """One active rating per (answer, user, rating, source); taking it back keeps the row, marked."""

    def __init__(self, registry: DocumentRegistry):
        self._registry = registry
        # Check-then-insert must not interleave: Slack sends one event per emoji variant
        # ("+1" and "+1::skin-tone-2"), and the listeners that store them run in parallel.
        self._lock = threading.Lock()

    def record(self, fb: Feedback) -> bool:
        """Store a rating; False when the same person's same rating of the answer is already active."""
        if fb.rating not in (1, -1):
            raise InvalidRequest("a rating is 1 or -1")
        with self._lock, self._registry.session() as s, s.begin():
            if s.scalars(self._active(fb.answer_id, fb.user, fb.rating, fb.source)).first() is not None:
                return False
            s.add(FeedbackRow(answer_id=fb.answer_id, user=fb.user, channel=fb.channel, rating=fb.rating,
                              source=fb.source, created_at=fb.created_at.astimezone(UTC).replace(tzinfo=None)
                              if fb.created_at.tzinfo else fb.created_at))
            return True

    def retract(self, answer_id: str, user: str, rating: int, source: str = "slack") -> bool:
        """Take back a rating; False when there was none to take back."""
        with self._registry.session() as s, s.begin():
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
        with self._registry.session() as s:
            return [_feedback(r) for r in s.scalars(q)]

    @staticmethod
    def _active(answer_id: str, user: str, rating: int, source: str):
        return select(FeedbackRow).where(
            FeedbackRow.answer_id == answer_id, FeedbackRow.user == user, FeedbackRow.rating == rating,
            FeedbackRow.source == source, FeedbackRow.retracted_at.is_(None))
