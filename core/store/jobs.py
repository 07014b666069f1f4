"""Job records: background work (ingesting an upload, writing minutes) with its stage, progress and outcome.

A job keeps what it needs to run again (``params``), so a service that restarts
can resume the jobs it had not finished instead of losing them. Each unfinished job
is owned by the service process running it, with a claim that process renews
(``owner``, ``owner_until``): API replicas sharing one database take over another's
jobs only when that claim has lapsed (the replica is gone), and one at a time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select, update

from core.errors import NotFound
from core.models import Job, JobStatus
from core.store.database import Database
from core.store.schema import JobRow

_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class JobStore:
    """Creates jobs, records their progress and outcome, and reads them back."""

    def __init__(self, database: Database):
        self._db = database

    def create(self, kind: str, scope: str, source: str, *, doc_id: str | None = None,
               params: dict[str, Any] | None = None, owner: str | None = None,
               owner_until: datetime | None = None) -> Job:
        now = _now()
        row = JobRow(job_id=uuid.uuid4().hex, kind=kind, scope=scope, source=source, doc_id=doc_id,
                     status=JobStatus.QUEUED.value, stage="queued", done=0.0, total=None, result=None,
                     params=params or {}, error=None, created_at=now, updated_at=now, owner=owner,
                     owner_until=owner_until)
        with self._db.session() as s, s.begin():
            s.add(row)
            return _job(row)

    def progress(self, job_id: str, stage: str, done: float = 0.0, total: float | None = None) -> None:
        with self._db.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.job_id == job_id).values(
                status=JobStatus.RUNNING.value, stage=stage, done=done, total=total, updated_at=_now()))

    def finish(self, job_id: str, *, result: dict[str, Any] | None, error: str | None = None,
               doc_id: str | None = None) -> None:
        """Record the outcome: done with ``result``, or failed with ``error`` (and any partial result)."""
        status = JobStatus.FAILED if error else JobStatus.DONE
        values: dict[str, Any] = {"status": status.value, "stage": status.value, "result": result,
                                  "error": error, "updated_at": _now()}
        if doc_id is not None:
            values["doc_id"] = doc_id
        with self._db.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.job_id == job_id).values(**values))

    def get(self, job_id: str) -> Job:
        with self._db.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job with id {job_id!r}")
            return _job(row)

    def unfinished(self) -> list[Job]:
        """Jobs left queued or running, oldest first: what a restarted service has to pick up."""
        with self._db.session() as s:
            rows = s.scalars(select(JobRow).where(JobRow.status.in_(_UNFINISHED)).order_by(JobRow.created_at))
            return [_job(r) for r in rows]

    def claim(self, job: Job, owner: str, until: datetime) -> bool:
        """Take over ``job`` as it was read (same owner, same claim), queued again; False: someone else was faster."""
        same_owner = JobRow.owner.is_(None) if job.owner is None else JobRow.owner == job.owner
        same_until = JobRow.owner_until.is_(None) if job.owner_until is None else JobRow.owner_until == job.owner_until
        with self._db.session() as s, s.begin():
            taken = s.execute(update(JobRow).where(and_(
                JobRow.job_id == job.job_id, JobRow.status.in_(_UNFINISHED), same_owner, same_until)).values(
                owner=owner, owner_until=until, status=JobStatus.QUEUED.value, stage="queued again after a restart",
                done=0.0, total=None, updated_at=_now()))
            return taken.rowcount == 1

    def renew(self, owner: str, until: datetime) -> int:
        """Extend the claim on every unfinished job ``owner`` holds; returns how many."""
        with self._db.session() as s, s.begin():
            return s.execute(update(JobRow).where(and_(JobRow.owner == owner, JobRow.status.in_(_UNFINISHED))).values(
                owner_until=until)).rowcount


def _job(row: JobRow) -> Job:
    return Job(job_id=row.job_id, kind=row.kind, scope=row.scope, source=row.source, doc_id=row.doc_id,
               status=JobStatus(row.status), stage=row.stage, done=row.done, total=row.total,
               result=dict(row.result) if row.result else None, error=row.error, params=dict(row.params or {}),
               created_at=row.created_at, updated_at=row.updated_at, owner=row.owner, owner_until=row.owner_until)
