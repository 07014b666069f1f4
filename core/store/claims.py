"""Claims on scheduled runs, so that of several replicas exactly one runs each window of a job.

Every replica's scheduler fires for the same schedule; each computes the same window
name from the fire time and tries to insert the (job, window) row. The primary key
lets one insert win on SQLite and on PostgreSQL alike; the others get an
IntegrityError and skip the window. The winner records when it finished and how
(``outcome``, JSON text written by the caller, with a ``"status"`` key).

A claim that was never finished and is older than ``stale_after`` (None: never)
belongs to a replica that died mid-run: one more claim of that window takes it over, with one
conditional UPDATE, so two replicas taking over at once still end with one owner.
``stale_after`` must exceed the longest run (a training can take hours), or a live
run could be taken over.

Requests are flags beside the claims (a ``meta`` row per job): the monitoring drift
check asks for a retraining with ``request("retrain", "drift: ...")``; the scheduled
job sees it on its next run and clears it once it has trained.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InvalidRequest
from core.store.database import Database
from core.store.schema import MetaRow, ScheduleClaimRow

log = logging.getLogger(__name__)

_CLAIMS = ScheduleClaimRow.__table__
_META = MetaRow.__table__
_REQUEST_PREFIX = "request:"
_SCAN = 50  # finished runs read per round when looking for the newest with a given status


def _now() -> datetime:
    """Naive UTC, as every DateTime column of the database holds it."""
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class ClaimInfo:
    """One claimed window of a job; times are timezone-aware UTC."""

    job: str
    window: str
    owner: str
    claimed_at: datetime
    finished_at: datetime | None
    outcome: str | None

    @property
    def status(self) -> str | None:
        """The outcome's ``"status"`` (the outcome itself when it is not a JSON object); None while running."""
        if self.outcome is None:
            return None
        try:
            data = json.loads(self.outcome)
        except ValueError:
            return self.outcome
        return str(data.get("status")) if isinstance(data, dict) else self.outcome


def _info(row: ScheduleClaimRow) -> ClaimInfo:
    return ClaimInfo(job=row.job, window=row.window, owner=row.owner, claimed_at=_aware(row.claimed_at),
                     finished_at=_aware(row.finished_at), outcome=row.outcome)


class ClaimStore:
    """Claims of scheduled windows and requests for unscheduled runs, in the shared database."""

    def __init__(self, database: Database, *, stale_after: timedelta | None = timedelta(hours=12)):
        self._db = database
        self.stale_after = stale_after

    # -- claims ------------------------------------------------------------------

    def claim(self, job: str, window: str, owner: str) -> bool:
        """Take ``window`` of ``job`` for ``owner``; False when another replica has it (and is not stale)."""
        now = _now()
        try:
            with self._db.session() as s, s.begin():
                s.execute(insert(_CLAIMS).values(job=job, window=window, owner=owner, claimed_at=now))
            return True
        except IntegrityError:
            if self.stale_after is None:
                return False
        # Taken already. Take it over only if its owner never finished and has been silent too long;
        # the WHERE re-checks that under the row lock, so of two replicas taking over, one wins.
        with self._db.session() as s, s.begin():
            taken = s.execute(
                update(_CLAIMS)
                .where(_CLAIMS.c.job == job, _CLAIMS.c.window == window, _CLAIMS.c.finished_at.is_(None),
                       _CLAIMS.c.claimed_at < now - self.stale_after)
                .values(owner=owner, claimed_at=now, outcome=None)
            ).rowcount
        if taken:
            log.warning("took over the stale claim of %s window %s (unfinished for over %s)",
                        job, window, self.stale_after)
        return bool(taken)

    def finish(self, job: str, window: str, outcome: str, *, owner: str | None = None) -> bool:
        """Record how the run of ``window`` ended; with ``owner``, only if that owner still holds the claim."""
        q = update(_CLAIMS).where(_CLAIMS.c.job == job, _CLAIMS.c.window == window)
        if owner is not None:
            q = q.where(_CLAIMS.c.owner == owner)
        with self._db.session() as s, s.begin():
            done = s.execute(q.values(finished_at=_now(), outcome=outcome)).rowcount
        if not done:
            log.warning("the claim of %s window %s is no longer %s's; outcome not recorded: %s",
                        job, window, owner, outcome)
        return bool(done)

    def get(self, job: str, window: str) -> ClaimInfo | None:
        with self._db.session() as s:
            row = s.get(ScheduleClaimRow, (job, window))
            return _info(row) if row else None

    def last(self, job: str, *, status: str | None = None) -> ClaimInfo | None:
        """The newest finished run of ``job`` (by claim time), or the newest whose outcome has ``status``."""
        q = (select(ScheduleClaimRow)
             .where(ScheduleClaimRow.job == job, ScheduleClaimRow.finished_at.is_not(None))
             .order_by(ScheduleClaimRow.claimed_at.desc(), ScheduleClaimRow.window.desc()))
        if status is not None:  # a cheap filter in SQL; the parsed status decides below
            q = q.where(ScheduleClaimRow.outcome.contains(status, autoescape=True))
        with self._db.session() as s:
            for offset in itertools.count(0, _SCAN):
                rows = s.scalars(q.offset(offset).limit(_SCAN)).all()
                for row in rows:
                    info = _info(row)
                    if status is None or info.status == status:
                        return info
                if len(rows) < _SCAN:
                    return None
        return None  # not reached

    # -- requests ------------------------------------------------------------------

    def request(self, job: str, reason: str) -> None:
        """Ask for a run of ``job`` at its next scheduled check (a newer request replaces an older one)."""
        value = json.dumps({"reason": reason, "at": datetime.now(UTC).isoformat()})
        with self._db.session() as s, s.begin():
            _upsert(s, _request_key(job), value)
        log.info("run of %s requested: %s", job, reason)

    def pending_request(self, job: str) -> str | None:
        """The reason of the pending request for ``job``, if any."""
        data = self._request(job)
        return None if data is None else str(data.get("reason", ""))

    def requested_at(self, job: str) -> datetime | None:
        data = self._request(job)
        return None if data is None else datetime.fromisoformat(data["at"])

    def clear_request(self, job: str, *, up_to: datetime | None = None) -> bool:
        """Drop the pending request; with ``up_to``, only one made at or before then (a newer one stays)."""
        key = _request_key(job)
        q = delete(_META).where(_META.c.key == key)
        if up_to is not None:
            raw = self._raw_request(key)
            if raw is None or datetime.fromisoformat(json.loads(raw)["at"]) > _aware(up_to):
                return False
            # Delete only the value that was read: a request made since replaced it and survives.
            q = q.where(_META.c.value == raw)
        with self._db.session() as s, s.begin():
            return bool(s.execute(q).rowcount)

    def _request(self, job: str) -> dict | None:
        raw = self._raw_request(_request_key(job))
        return None if raw is None else json.loads(raw)

    def _raw_request(self, key: str) -> str | None:
        with self._db.session() as s:
            row = s.get(MetaRow, key)
            return row.value if row else None


def _request_key(job: str) -> str:
    key = _REQUEST_PREFIX + job
    if len(key) > 64:
        raise InvalidRequest(f"job name too long for a request: {job!r}")
    return key


def _upsert(s: Session, key: str, value: str) -> None:
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        ins = (sqlite_insert if dialect == "sqlite" else pg_insert)(_META).values(key=key, value=value)
        s.execute(ins.on_conflict_do_update(index_elements=[_META.c.key], set_={"value": value}))
        return
    if not s.execute(update(_META).where(_META.c.key == key).values(value=value)).rowcount:
        s.execute(insert(_META).values(key=key, value=value))
