"""`imp ingest --ray`: files prepared on Ray workers, committed by this process.

Each worker is a Ray actor holding one ``Preparer`` (core.ingest.prepare), built from the
same Settings by the composition root's builders, so its models (speech, embedder) load
once and serve every file it is given. A worker prepares one file at a time: reads it in
the loader sandbox or transcribes it, chunks and embeds it, and sends the result back.

This process (the driver) opens each file just before handing it out (an attempt taken,
its content hash checked: an unchanged file never reaches a worker) and commits every
result through ``IngestPipeline.commit``, the same commit a plain ingest uses. Why here:
the embedded defaults (a Chroma PersistentClient and SQLite in the data folder) are not
safe to write from many processes, and one committer keeps the commit atomic and
idempotent exactly as today. With servers (Postgres at IMP_DB__URL, Chroma at
IMP_CHROMA__URL) committing here is still right: a commit is a few small writes next to
seconds or minutes of preparing, the writer lease and attempt ordering stay in one place,
and workers need no database or index credentials.

A file that fails on a worker is reported with its reason and the others go on; a worker
that dies (out of memory, killed) fails the file it held with a plain reason and is
replaced. On a real cluster every worker must see the files at the path the driver
names (a shared volume) and run the same image.

Ray is imported inside the functions that use it (a plain ingest never loads it).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import BackendError
from core.ingest.prepare import EmbedderSpec, FileJob, PreparedDocument, PrepareFailed, Preparer, StepProgress
from core.models import IngestResult, IngestStatus

if TYPE_CHECKING:
    from core.ingest.pipeline import IngestPipeline, Progress

log = logging.getLogger(__name__)

WORKER_DIED = "worker_died"
# How long the first worker may take to start (a joined cluster may be busy or scaling up).
_START_TIMEOUT_S = 300.0
_POLL_S = 0.25  # how often the driver looks at step progress while files are being prepared
_STEP_EVERY_S = 1.0  # a worker sends step progress at most this often


@dataclass(frozen=True)
class RayIngestOptions:
    """How to fan out: where Ray is, how many workers, what each holds.

    ``build`` runs inside each worker with its share of CPUs and returns the worker's
    Preparer (the front door passes the composition root's wiring; it must pickle).
    ``session`` opens Ray for the run, ``session(address, num_cpus=...)``, as a context
    manager whose value has ``cpus`` (training.raycluster.ray_session fits).
    """

    build: Callable[[int], Preparer]
    session: Callable[..., AbstractContextManager[Any]]
    address: str | None = None
    workers: int = 1
    cpus_per_worker: int = 0  # 0: the cluster's CPUs split among the workers
    use_gpu: bool = False


def local_cpus(workers: int, cpus_per_worker: int) -> int:
    """CPUs a local cluster starts with: what the workers ask for, or this machine's cores split among them."""
    if cpus_per_worker:
        return workers * cpus_per_worker
    return max(workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def cpu_share(cluster_cpus: float, workers: int, cpus_per_worker: int) -> int:
    """Each worker's CPUs: the setting, or the cluster's CPUs split evenly (at least one)."""
    return cpus_per_worker or max(1, int(cluster_cpus // workers))


class _Worker:
    """A Ray actor's body: one Preparer, one file at a time."""

    def __init__(self, build: Callable[[int], Preparer], cpus: int):
        self._preparer = build(cpus)

    def ready(self) -> int:
        return os.getpid()

    def prepare(self, job: FileJob, specs: Sequence[EmbedderSpec], steps: Any) -> PreparedDocument | PrepareFailed:
        return self._preparer.prepare_or_fail(job, specs, _step_sender(steps))


def _step_sender(steps: Any) -> StepProgress | None:
    """Step progress (transcription) to the driver through a Ray queue, at most once a second, and the end."""
    if steps is None:
        return None
    last = [0.0]

    def send(what: str, done: float, total: float) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < _STEP_EVERY_S:
            return
        last[0] = now
        try:
            steps.put_nowait((what, done, total))
        except Exception:  # progress is a courtesy: never fail a file over it
            log.debug("could not send step progress", exc_info=True)

    return send


class RayIngest:
    """Ingests files with Ray workers preparing them and this process committing them."""

    def __init__(self, options: RayIngestOptions):
        if options.workers < 1:
            raise ValueError("workers must be at least 1")
        self._options = options

    def __call__(self, pipeline: IngestPipeline, files: Sequence[Path], scope: str,
                 on_result: Progress | None = None, on_step: StepProgress | None = None) -> list[IngestResult]:
        o = self._options
        num_cpus = None if o.address else local_cpus(o.workers, o.cpus_per_worker)
        with o.session(o.address, num_cpus=num_cpus) as session:
            share = cpu_share(session.cpus, o.workers, o.cpus_per_worker)
            if o.workers * share > session.cpus:
                log.warning("%d workers of %d CPUs ask for more than the cluster's %g CPUs: some wait",
                            o.workers, share, session.cpus)
            log.info("ingesting %d files on %d Ray workers of %d CPUs each", len(files), o.workers, share)
            run = _Run(pipeline, scope, o, share, on_result, on_step)
            try:
                results = run.all(files)
            finally:
                run.stop()
        # One rebuild for the whole batch, so the next search does not pay for it.
        if any(r.status == IngestStatus.INDEXED for r in results):
            pipeline.refresh_keywords()
        return results


class _Run:
    """One fan-out: workers started as files need them, each file opened, handed out, committed."""

    def __init__(self, pipeline: IngestPipeline, scope: str, options: RayIngestOptions, share: int,
                 on_result: Progress | None, on_step: StepProgress | None):
        import ray

        self._ray = ray
        self._pipeline = pipeline
        self._scope = scope
        self._options = options
        self._on_result = on_result
        self._on_step = on_step
        self._actor_class = ray.remote(num_cpus=share, num_gpus=1 if options.use_gpu else 0, max_restarts=0,
                                       max_task_retries=0)(_Worker)
        self._share = share
        self._idle: list[Any] = []
        self._started = 0  # workers alive or starting
        self._steps = None
        if on_step is not None:
            from ray.util.queue import Queue

            self._steps = Queue(actor_options={"num_cpus": 0})
        self._specs = pipeline.embedder_specs()

    def all(self, files: Sequence[Path]) -> list[IngestResult]:
        results: dict[int, IngestResult] = {}
        waiting = deque(enumerate(files))
        flying: dict[Any, tuple[int, FileJob, Any, float]] = {}  # ref -> (index, job, worker, when opened)
        while waiting or flying:
            self._hand_out(waiting, flying, results)
            if not flying:
                continue
            ready, _ = self._ray.wait(list(flying), num_returns=1, timeout=_POLL_S)
            self._relay_steps()
            collected = []
            for ref in ready:
                i, job, worker, started = flying.pop(ref)
                collected.append((i, started, self._collect(ref, job, worker)))
            self._hand_out(waiting, flying, results)  # a freed worker takes its next file before the commits
            for i, started, prepared in collected:
                result = self._pipeline.commit(prepared)
                kind = prepared.kind if isinstance(prepared, PrepareFailed) else prepared.loaded.kind
                self._finish(results, i, result, kind, started)
        self._relay_steps()
        return [results[i] for i in range(len(files))]

    def _hand_out(self, waiting: deque, flying: dict, results: dict[int, IngestResult]) -> None:
        """Open the next files, while a worker is free, and give each one that needs preparing to a worker."""
        while waiting and (self._idle or self._started < self._options.workers):
            i, path = waiting.popleft()
            started = time.perf_counter()
            job, done = self._pipeline.open(path, self._scope)
            if done is not None:  # unchanged, or refused before any work: no worker needed
                self._finish(results, i, done, job.kind, started)
                continue
            worker = self._worker()
            flying[worker.prepare.remote(job, self._specs, self._steps)] = (i, job, worker, started)

    def _finish(self, results: dict[int, IngestResult], i: int, result: IngestResult, kind: str,
                started: float) -> None:
        results[i] = result
        self._pipeline.observed(result, kind, time.perf_counter() - started)
        if self._on_result:
            self._on_result(result)

    def _worker(self) -> Any:
        if self._idle:
            return self._idle.pop()
        worker = self._actor_class.remote(self._options.build, self._share)
        first = self._started == 0
        self._started += 1
        if first:  # a worker that cannot even start (bad settings, no image) stops the run with the reason
            try:
                self._ray.get(worker.ready.remote(), timeout=_START_TIMEOUT_S)
            except self._ray.exceptions.GetTimeoutError as e:
                raise BackendError(f"no Ray worker started within {_START_TIMEOUT_S:.0f} s: does the cluster have "
                                   f"{self._share} free CPUs?") from e
            except self._ray.exceptions.RayError as e:
                raise BackendError(f"the Ray workers cannot start: {_cause(e)}") from e
        return worker

    def _collect(self, ref: Any, job: FileJob, worker: Any) -> PreparedDocument | PrepareFailed:
        """The worker's answer; a worker that died fails this file (and is replaced), never the run."""
        ray = self._ray
        try:
            prepared = ray.get(ref)
        except ray.exceptions.RayError as e:
            self._started -= 1  # not returned to the idle list: the next file starts a fresh worker
            died = isinstance(e, ray.exceptions.RayActorError)
            if not died:  # alive but in an unknown state: not trusted with another file
                ray.kill(worker, no_restart=True)
            if isinstance(e, ray.exceptions.OutOfMemoryError) or "out of memory" in str(e).lower():
                reason = "the Ray worker preparing this file ran out of memory"
            elif died:
                reason = "the Ray worker preparing this file stopped (it crashed or was killed)"
            else:
                reason = "the Ray worker preparing this file failed"
            log.error("a Ray worker failed on %s: %s", job.source, e)
            return PrepareFailed(job, WORKER_DIED, reason)
        self._idle.append(worker)
        return prepared

    def _relay_steps(self) -> None:
        if self._steps is None or self._on_step is None:
            return
        try:
            pending = self._steps.qsize()
            items = self._steps.get_nowait_batch(pending) if pending else []
        except Exception:
            log.debug("could not read step progress", exc_info=True)
            return
        for what, done, total in items:
            self._on_step(what, done, total)

    def stop(self) -> None:
        """End the workers (a joined cluster keeps running; a local one ends with the session)."""
        for worker in self._idle:
            try:
                self._ray.kill(worker, no_restart=True)
            except Exception:
                log.debug("could not end a Ray worker", exc_info=True)
        self._idle.clear()
        if self._steps is not None:
            try:
                self._steps.shutdown(force=True)
            except Exception:
                log.debug("could not end the progress queue", exc_info=True)


def _cause(e: BaseException) -> str:
    """The first line of a Ray error worth showing: the exception its worker raised, when there is one."""
    cause = getattr(e, "cause", None)
    text = str(cause) if cause is not None else str(e)
    return text.strip().splitlines()[-1][:300] if text.strip() else type(e).__name__
