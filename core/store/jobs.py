"""Job records: background ingestion with its stage and progress, in the registry's database."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import update

from core.errors import NotFound
from core.models import IngestResult, IngestStatus, Job, JobStatus
from core.store.registry import DocumentRegistry
from core.store.schema import JobRow


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class JobStore:
    """Creates jobs, records their progress and outcome, and reads them back."""

    def __init__(self, registry: DocumentRegistry):
        self._registry = registry

    def create(self, kind: str, scope: str, source: str, doc_id: str | None = None) -> Job:
        now = _now()
        row = JobRow(job_id=uuid.uuid4().hex, kind=kind, scope=scope, source=source, doc_id=doc_id,
                     status=JobStatus.QUEUED.value, stage="queued", done=0.0, total=None, result=None,
                     created_at=now, updated_at=now)
        with self._registry.session() as s, s.begin():
            s.add(row)
            return _job(row)

    def progress(self, job_id: str, stage: str, done: float = 0.0, total: float | None = None) -> None:
        with self._registry.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.job_id == job_id).values(
                status=JobStatus.RUNNING.value, stage=stage, done=done, total=total, updated_at=_now()))

    def finish(self, job_id: str, result: IngestResult) -> None:
        status = JobStatus.FAILED if result.status == IngestStatus.FAILED else JobStatus.DONE
        data = {**asdict(result), "status": result.status.value}
        with self._registry.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.job_id == job_id).values(
                status=status.value, stage=status.value, result=data, doc_id=result.doc_id, updated_at=_now()))

    def get(self, job_id: str) -> Job:
        with self._registry.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job with id {job_id!r}")
            return _job(row)

    def interrupt_unfinished(self) -> int:
        """Fail the jobs a previous process left queued or running (it stopped before finishing them)."""
        with self._registry.session() as s, s.begin():
            done = s.execute(update(JobRow).where(JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
                             .values(status=JobStatus.FAILED.value, stage="interrupted: the service restarted; "
                                     "upload the file again", updated_at=_now()))
            return int(done.rowcount or 0)


def _job(row: JobRow) -> Job:
    result = None
    if row.result:
        r = dict(row.result)
        result = IngestResult(doc_id=r["doc_id"], source=r["source"], status=IngestStatus(r["status"]),
                              chunks=r.get("chunks", 0), error=r.get("error"), error_code=r.get("error_code"))
    return Job(job_id=row.job_id, kind=row.kind, scope=row.scope, source=row.source, doc_id=row.doc_id,
               status=JobStatus(row.status), stage=row.stage, done=row.done, total=row.total, result=result,
               created_at=row.created_at, updated_at=row.updated_at)
