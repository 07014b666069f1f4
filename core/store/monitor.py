"""Monitoring's state: the drift checks that ran, and one incident per drifted signal.

A check is saved with every signal's score, threshold and verdict (``monitor_checks``).
An incident (``alerts``) opens when a signal first drifts and stays open, silently, while
it keeps drifting; it is resolved when the signal clears. Opening is guarded by a claim
(``core.store.claims``) on the signal's incident number, so two checks running at once (a
scheduled one and one run by hand) open one incident, not two; resolving is one
conditional UPDATE, so only one of them resolves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select, update

from core.store.claims import ClaimStore
from core.store.database import Database
from core.store.schema import AlertRow, MonitorCheckRow

_INCIDENT_JOB = "incident:"  # claims' job name prefix: "incident:<signal>", window = the incident's number
MAX_SIGNAL_CHARS = 48
MAX_MESSAGE_CHARS = 4000
# An incident claim left unfinished this long belongs to a check that died before recording it.
_CLAIM_STALE = timedelta(minutes=10)


def _now() -> datetime:
    """Naive UTC, as every DateTime column of the database holds it."""
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def _aware(when: datetime | None) -> datetime | None:
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One saved drift check; ``signals`` as the check reported them (dicts with name, score, ...)."""

    id: int
    checked_at: datetime
    window: int
    signals: list[dict]
    seconds: float


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident of one signal; times are timezone-aware UTC, ``resolved_at`` None while open."""

    id: int
    signal: str
    opened_at: datetime
    resolved_at: datetime | None
    score: float
    threshold: float
    message: str
    delivered: list[dict]


def _check(row: MonitorCheckRow) -> CheckRecord:
    return CheckRecord(row.id, _aware(row.checked_at), row.window, list(row.signals or []), row.seconds)


def _incident(row: AlertRow) -> Incident:
    return Incident(row.id, row.signal, _aware(row.opened_at), _aware(row.resolved_at), row.score, row.threshold,
                    row.message, list(row.delivered or []))


class MonitorStore:
    """Drift checks and incidents in the shared database."""

    def __init__(self, database: Database):
        self._db = database
        self._claims = ClaimStore(database, stale_after=_CLAIM_STALE)

    # -- checks ----------------------------------------------------------------------

    def save_check(self, window: int, signals: Sequence[dict], seconds: float,
                   checked_at: datetime | None = None) -> int:
        """Record one check; returns its id."""
        row = MonitorCheckRow(checked_at=_naive(checked_at) if checked_at else _now(), window=window,
                              signals=list(signals), seconds=float(seconds))
        with self._db.session() as s, s.begin():
            s.add(row)
            s.flush()
            return row.id

    def latest_check(self) -> CheckRecord | None:
        with self._db.session() as s:
            row = s.scalars(select(MonitorCheckRow).order_by(MonitorCheckRow.checked_at.desc(),
                                                             MonitorCheckRow.id.desc()).limit(1)).first()
            return _check(row) if row else None

    def checks_since(self, since: datetime, *, limit: int = 1000) -> list[CheckRecord]:
        """Checks at or after ``since``, oldest first (at most ``limit``, the newest of them)."""
        q = (select(MonitorCheckRow).where(MonitorCheckRow.checked_at >= _naive(since))
             .order_by(MonitorCheckRow.checked_at.desc(), MonitorCheckRow.id.desc()).limit(limit))
        with self._db.session() as s:
            return [_check(r) for r in reversed(s.scalars(q).all())]

    # -- incidents -------------------------------------------------------------------

    def open_incidents(self) -> dict[str, Incident]:
        """The open incident of each signal that has one."""
        q = select(AlertRow).where(AlertRow.resolved_at.is_(None)).order_by(AlertRow.opened_at, AlertRow.id)
        with self._db.session() as s:
            return {r.signal: _incident(r) for r in s.scalars(q).all()}

    def incidents(self, *, limit: int = 100) -> list[Incident]:
        """The newest incidents, open and resolved, newest first."""
        q = select(AlertRow).order_by(AlertRow.opened_at.desc(), AlertRow.id.desc()).limit(limit)
        with self._db.session() as s:
            return [_incident(r) for r in s.scalars(q).all()]

    def open_incident(self, signal: str, score: float, threshold: float, message: str) -> Incident | None:
        """Open an incident of ``signal``; None when one is open already (or another check just opened it)."""
        signal = signal[:MAX_SIGNAL_CHARS]
        q = select(func.count(), func.sum(case((AlertRow.resolved_at.is_(None), 1), else_=0))).where(
            AlertRow.signal == signal)
        with self._db.session() as s:
            total, still_open = s.execute(q).one()  # one statement: one consistent view of both counts
        if still_open:
            return None
        # Of two checks that both saw no open incident, the one that claims its number opens it.
        job, number = _INCIDENT_JOB + signal, str(int(total or 0) + 1)
        if not self._claims.claim(job, number, "monitor"):
            return None
        row = AlertRow(signal=signal, opened_at=_now(), resolved_at=None, score=float(score),
                       threshold=float(threshold), message=message[:MAX_MESSAGE_CHARS], delivered=[])
        with self._db.session() as s, s.begin():
            s.add(row)
            s.flush()
            incident = _incident(row)
        self._claims.finish(job, number, '{"status": "opened"}')
        return incident

    def resolve_incident(self, incident_id: int, when: datetime | None = None) -> bool:
        """Mark the incident resolved; False when it was resolved already (by another check)."""
        with self._db.session() as s, s.begin():
            done = s.execute(update(AlertRow).where(AlertRow.id == incident_id, AlertRow.resolved_at.is_(None))
                             .values(resolved_at=_naive(when) if when else _now())).rowcount
        return bool(done)

    def record_delivery(self, incident_id: int, entries: Sequence[dict]) -> None:
        """Add where a message about the incident went, or why it did not."""
        if not entries:
            return
        with self._db.session() as s, s.begin():
            row = s.get(AlertRow, incident_id, with_for_update=True)
            if row is not None:
                row.delivered = [*(row.delivered or []), *entries]

    def incident_counts(self) -> dict[str, int]:
        """Incidents ever opened, per signal."""
        q = select(AlertRow.signal, func.count()).group_by(AlertRow.signal)
        with self._db.session() as s:
            return {signal: int(n) for signal, n in s.execute(q)}
