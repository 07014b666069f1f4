"""Background jobs: one worker thread runs them in order and records progress and outcome.

Each kind of job has a handler that gets the job (with the ``params`` it was
submitted with) and a reporter for progress. Because jobs and their params are
stored, ``resume`` picks up what a stopped service had not finished.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core.errors import (
    CorruptDocument, DocumentTooLarge, EmptyDocument, InvalidRequest, NotFound, UnsupportedFormat,
)
from core.models import Job
from core.store.jobs import JobStore

log = logging.getLogger(__name__)

Reporter = Callable[[str, float, "float | None"], None]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a handler returns: the result as the API shows it, or an error (with any partial result)."""

    result: dict[str, Any] | None
    error: str | None = None
    doc_id: str | None = None


Handler = Callable[[Job, Reporter], Outcome]

# Errors about the request or the file, written for the person who sent it. Any other error
# (a backend, a bug) may carry server paths, SQL or library text: the log gets it, people a reference.
_FOR_USERS = (NotFound, InvalidRequest, UnsupportedFormat, CorruptDocument, EmptyDocument, DocumentTooLarge)


def shown_error(e: BaseException, what: str) -> str:
    """What a job's error says to the people following it; anything but a user-facing error is logged
    with a reference that the returned text carries."""
    if isinstance(e, _FOR_USERS):
        return e.detail
    ref = secrets.token_hex(4)
    log.error("%s failed (ref %s)", what, ref, exc_info=e)
    return f"internal error (ref {ref})"


class JobRunner:
    """Runs submitted jobs in a background thread, one at a time, in submission order."""

    def __init__(self, store: JobStore, handlers: dict[str, Handler]):
        self.store = store
        self._handlers = handlers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, kind: str, scope: str, source: str, *, params: dict[str, Any],
               doc_id: str | None = None) -> Job:
        if kind not in self._handlers:
            raise ValueError(f"no handler for jobs of kind {kind!r}")
        job = self.store.create(kind, scope, source, doc_id=doc_id, params=params)
        self._enqueue(job.job_id)
        return job

    def resume(self) -> int:
        """Queue again the jobs a previous run left unfinished; returns how many."""
        jobs = self.store.unfinished()
        for job in jobs:
            if job.kind in self._handlers:
                self.store.requeue(job.job_id)
                self._enqueue(job.job_id)
            else:
                self.store.finish(job.job_id, result=None, error=f"interrupted, and jobs of kind {job.kind!r} "
                                  "cannot be resumed by this version")
        if jobs:
            log.warning("resuming %d unfinished job(s) after a restart", len(jobs))
        return len(jobs)

    def _enqueue(self, job_id: str) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="imp-jobs")
            self._executor.submit(self._run, job_id)

    def _run(self, job_id: str) -> None:
        job = self.store.get(job_id)
        self.store.progress(job_id, "started")

        def report(stage: str, done: float, total: float | None) -> None:
            self.store.progress(job_id, stage, done, total)

        try:
            outcome = self._handlers[job.kind](job, report)
        except Exception as e:  # a job must end recorded, whatever went wrong
            outcome = Outcome(None, shown_error(e, f"job {job_id} ({job.kind})"))
        self.store.finish(job_id, result=outcome.result, error=outcome.error, doc_id=outcome.doc_id)

    def failed(self, kind: str, scope: str, source: str, *, error: str, result: dict[str, Any] | None = None,
               doc_id: str | None = None) -> Job:
        """Record a job that failed before it could run (an upload refused on arrival), for uniform follow-up."""
        job = self.store.create(kind, scope, source, doc_id=doc_id, params={})
        self.store.finish(job.job_id, result=result, error=error, doc_id=doc_id)
        return self.store.get(job.job_id)

    def close(self) -> None:
        """Finish the queued jobs and stop the worker."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
