"""Background jobs: one worker thread runs them in order and records progress and outcome.

Each kind of job has a handler that gets the job (with the ``params`` it was
submitted with) and a reporter for progress. Because jobs and their params are
stored, ``resume`` picks up what a stopped service had not finished.

The queue is bounded: past ``max_queued`` jobs waiting or running, a new one is
refused with Busy (429 at the REST edge) rather than accepted into a backlog that
would take hours to drain. Jobs resumed after a restart were accepted before and
are always taken.

Several service processes (API replicas) may share one database. Each job is owned
by the runner that accepted it, which renews its claim while it lives; a runner that
has started watching (``resume``) takes over, every third of ``lease_s``, the
unfinished jobs whose owner stopped renewing (it crashed or was killed), one runner
per job. So a job is never run by two replicas at once, and none is lost.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import (
    Busy, CorruptDocument, DocumentTooLarge, EmptyDocument, InvalidRequest, NotFound, UnsupportedFormat,
)
from core.models import Job
from core.store.jobs import JobStore
from core.store.leases import abandoned, hold, let_go, owner_token

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

    def __init__(self, store: JobStore, handlers: dict[str, Handler], *, max_queued: int | None = None,
                 lease_s: float = 60.0):
        self.store = store
        self._handlers = handlers
        self._max_queued = max_queued
        self._lease_s = lease_s
        self._owner = owner_token()  # this runner, as the owner of its jobs' rows (held while it runs)
        hold(self._owner)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending = 0  # submitted or resumed, not yet finished
        self._typical_s = 30.0  # how long a job took lately, for an honest Retry-After
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._takes_over = False  # set by resume(): a service watches for other replicas' lapsed jobs
        self._closing = False

    @property
    def pending(self) -> int:
        """Jobs waiting or running in this process."""
        return self._pending

    def check_room(self, jobs: int = 1) -> None:
        """Busy when ``jobs`` more would not fit: call before storing what a job would read."""
        with self._lock:
            self._refuse_if_full(jobs)

    def _refuse_if_full(self, jobs: int = 1) -> None:
        if self._max_queued is not None and self._pending + jobs > self._max_queued:
            wait = max(5, min(3600, int(self._typical_s * (self._pending - self._max_queued + 1))))
            raise Busy(f"{self._pending} jobs are already waiting or running; try again in {wait} s", wait)

    def submit(self, kind: str, scope: str, source: str, *, params: dict[str, Any],
               doc_id: str | None = None) -> Job:
        if kind not in self._handlers:
            raise ValueError(f"no handler for jobs of kind {kind!r}")
        with self._lock:
            self._refuse_if_full()
            self._pending += 1  # the place is taken before the job exists, so two callers cannot both take the last
        try:
            job = self.store.create(kind, scope, source, doc_id=doc_id, params=params, owner=self._owner,
                                    owner_until=self._until())
        except BaseException:
            with self._lock:
                self._pending -= 1
            raise
        self._enqueue(job.job_id, counted=True)
        return job

    def resume(self) -> int:
        """Queue again the unfinished jobs no live runner holds (a previous run's, a stopped replica's), and
        from now on keep this runner's claims alive and take over lapsed ones; returns how many were taken."""
        taken = self._take_over()
        self._takes_over = True
        self._start_watch()
        return taken

    def _start_watch(self) -> None:
        with self._lock:
            if self._watcher is None and not self._stop.is_set():
                self._watcher = threading.Thread(target=self._watch, name="imp-jobs-watch", daemon=True)
                self._watcher.start()

    def _take_over(self) -> int:
        now = _now()
        taken = 0
        for job in self.store.unfinished():
            if job.owner == self._owner or self._closing:
                continue
            lapsed = job.owner is None or job.owner_until is None or job.owner_until < now or abandoned(job.owner)
            if not lapsed or not self.store.claim(job, self._owner, self._until()):
                continue
            taken += 1
            if job.kind in self._handlers:
                self._enqueue(job.job_id, counted=False)  # closing meanwhile: its claim lapses for another runner
            else:
                self.store.finish(job.job_id, result=None, error=f"interrupted, and jobs of kind {job.kind!r} "
                                  "cannot be resumed by this version")
        if taken:
            log.warning("resuming %d unfinished job(s) whose service stopped", taken)
        return taken

    def _watch(self) -> None:
        """Renew this runner's claims (and, once resuming, take over lapsed ones) every third of the lease."""
        while not self._stop.wait(self._lease_s / 3):
            try:
                self.store.renew(self._owner, self._until())
                if self._takes_over:
                    self._take_over()
            except Exception:  # the database may be away for a while; the next round tries again
                log.warning("could not renew or take over background jobs", exc_info=True)

    def _until(self) -> datetime:
        return _now() + timedelta(seconds=self._lease_s)

    def _enqueue(self, job_id: str, *, counted: bool) -> None:
        with self._lock:
            if self._closing and not counted:
                return
            if not counted:
                self._pending += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="imp-jobs")
            self._executor.submit(self._run, job_id)
        self._start_watch()

    def _run(self, job_id: str) -> None:
        started = time.monotonic()
        try:
            self._run_one(job_id)
        finally:
            with self._lock:
                self._pending -= 1
                self._typical_s = 0.8 * self._typical_s + 0.2 * (time.monotonic() - started)

    def _run_one(self, job_id: str) -> None:
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
        """Finish the queued jobs (their claims renewed meanwhile) and stop the worker; take over nothing more."""
        with self._lock:
            self._closing = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._stop.set()
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join()
        # What this runner owned is abandoned from now on; used again (a service restarted within one
        # process), it starts afresh under a new name and takes over what the old one left.
        let_go(self._owner)
        with self._lock:
            self._owner = owner_token()
            hold(self._owner)
            self._stop = threading.Event()
            self._takes_over = False
            self._closing = False


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
