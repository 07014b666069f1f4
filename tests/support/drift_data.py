"""Streams of questions for the drift tests: two topics people ask about, stored as answers in order.

Questions are drawn from templates with a fixed seed: the same topic with another seed is
"the same distribution, different samples"; the other topic is a shifted stream.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from core.models import Feedback
from core.store.database import Database
from core.store.schema import AnswerRow

POLICY = (
    "How many vacation days do {who} get in their first year?",
    "Can {who} carry unused holiday into next year?",
    "What is the parental leave policy for {who}?",
    "How do {who} claim travel expenses for a client visit?",
    "Who approves overtime for {who}?",
    "Is there a remote work allowance for {who}?",
    "What sick leave do {who} get without a doctor's note?",
    "When are {who} paid each month?",
    "How do {who} book training courses paid by the company?",
    "What is the notice period for {who}?",
)
WHO = ("new hires", "contractors", "part-time staff", "engineers", "interns", "managers", "sales staff",
       "support agents", "employees in Germany", "the finance team")

DESIGN = (
    "What did the {team} decide about the {part} of the remote control?",
    "Which {part} did the {team} prefer for the new remote?",
    "Why was the {part} dropped by the {team} in the last meeting?",
    "How much will the {part} add to the remote's production cost, according to the {team}?",
    "What did the {team} say users want from the {part}?",
    "Who presented the {part} prototype to the {team}?",
    "Did the {team} agree on a colour for the {part}?",
    "What were the {team}'s concerns about the {part}?",
    "When will the {team} finish the {part} design?",
    "How does the {part} compare with competitors' remotes, per the {team}?",
)
TEAM = ("industrial designer", "marketing expert", "project manager", "user interface designer", "design team")
PART = ("battery", "case", "buttons", "scroll wheel", "LCD screen", "speech recognition", "rubber casing",
        "infrared sensor", "logo", "charger")


def questions(topic: str, n: int, seed: int) -> list[str]:
    """``n`` questions about ``topic`` ("policy" or "design")."""
    rng = random.Random(seed)
    if topic == "policy":
        return [rng.choice(POLICY).format(who=rng.choice(WHO)) for _ in range(n)]
    if topic == "design":
        return [rng.choice(DESIGN).format(team=rng.choice(TEAM), part=rng.choice(PART)) for _ in range(n)]
    raise ValueError(topic)


class AnswerStream:
    """Stores answers one after another (each a second later than the last), as the answer log does."""

    def __init__(self, database: Database, start: datetime | None = None):
        self._db = database
        self._at = (start or datetime.now(UTC) - timedelta(days=1)).replace(tzinfo=None)

    def add(self, texts: list[str], *, abstained: bool = False, best: float | None = 0.6,
            total_ms: float = 120.0) -> list[str]:
        ids = []
        with self._db.session() as s, s.begin():
            for text in texts:
                self._at += timedelta(seconds=1)
                answer_id = uuid.uuid4().hex
                s.add(AnswerRow(answer_id=answer_id, question=text, search_query=text, answer="",
                                abstained=abstained, citations=[], scopes=["default"], model="extractive",
                                timings_ms={"total": total_ms}, notes=[], created_at=self._at,
                                best_similarity=best))
                ids.append(answer_id)
        return ids


def rate(engine, answer_ids: list[str], rating: int, user: str = "U1") -> None:
    """One rating by ``user`` on each answer."""
    for answer_id in answer_ids:
        assert engine.record_feedback(Feedback(answer_id, user, "C1", rating, datetime.now(UTC)))
