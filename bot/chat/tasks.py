"""The follow-up worker: carries long chat tasks from request to posted result, across restarts, on every platform.

A task (index a dropped file, write minutes of a recording) is stored when it is asked for
(bot/chat/state.py). This worker has its platform's ``TaskHost`` fetch the file, hands it to an engine
job, has the host keep the status message up to date with the job's progress, and, when the job ends,
hands the host what came of it (``Outcome``) to post: what was indexed, or the minutes. Tasks and jobs
are both stored, so a restarted service picks up where the previous one stopped. A platform that is
throttling IMP (``TaskHost.throttled``) leaves the task open for the next round; any other failure is
told to the user where the task was asked for (never silent) and closes it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.chat.state import DONE, FAILED, NEW, SUBMITTED, ChatState, ChatTask
from core.engine import Engine
from core.errors import NotFound
from core.formats.minutes import from_dict as minutes_from_dict
from core.models import DocumentRecord, Job, JobStatus, Minutes

log = logging.getLogger(__name__)

MIN_UPDATE_S = 5.0  # platforms rate-limit message edits; progress needs no more

INGEST, MINUTES = "ingest", "minutes"


@dataclass(frozen=True)
class Indexed:
    document: DocumentRecord


@dataclass(frozen=True)
class Unchanged:
    pass


@dataclass(frozen=True)
class DeletedMeanwhile:
    pass


@dataclass(frozen=True)
class Failed:
    why: str


@dataclass(frozen=True)
class MinutesReady:
    minutes: Minutes


Outcome = Indexed | Unchanged | DeletedMeanwhile | Failed | MinutesReady


class TaskHost(Protocol):
    """What one platform does for the worker."""

    platform: str

    def fetch(self, task: ChatTask, folder: Path) -> Path:
        """Download the task's file into ``folder``; its path (the name is the file's, made safe)."""
        ...

    def progress_text(self, task: ChatTask, job: Job) -> str: ...

    def show_progress(self, task: ChatTask, text: str) -> None:
        """Put ``text`` in the task's status message (raises when it could not)."""
        ...

    def file_gone(self, task: ChatTask) -> bool:
        """Whether the task's file was deleted on the platform (checked before keeping what was indexed)."""
        ...

    def finish(self, task: ChatTask, outcome: Outcome) -> None:
        """Post what came of the task where it was asked for."""
        ...

    def throttled(self, e: Exception) -> bool: ...

    def reason(self, e: Exception) -> str: ...


class FollowUps:
    def __init__(self, engine: Engine, state: ChatState, host: TaskHost, *, poll_s: float = 2.0):
        self._engine = engine
        self._state = state
        self._host = host
        self._poll = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown: dict[str, tuple[str | None, float]] = {}  # task -> (status text shown, when tried)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"imp-{self._host.platform}-followups",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for task in self._state.open_tasks(self._host.platform):
                    if self._stop.is_set():
                        break
                    self.advance(task)
            except Exception:  # the worker must outlive any one bad task or outage
                log.exception("follow-up round failed")
            self._wake.wait(self._poll)
            self._wake.clear()

    def advance(self, task: ChatTask) -> None:
        try:
            if task.state == NEW:
                self._submit(task)
            elif task.state == SUBMITTED:
                self._watch(task)
        except Exception as e:
            if self._host.throttled(e):  # still throttled after the client's own retries: next round
                log.warning("%s is throttling task %s; trying again on the next round", self._host.platform,
                            task.task_id)
                return
            self._fail(task, e)

    # -- new: fetch the file and hand it to the engine ----------------------------------------

    def _submit(self, task: ChatTask) -> None:
        engine = self._engine
        if task.kind == MINUTES and task.data.get("doc_id"):
            job = engine.submit_minutes(doc_id=task.data["doc_id"], scope=task.channel)
        else:
            if task.file_id is None:
                raise NotFound("the task names no file")
            folder = Path(tempfile.mkdtemp(prefix=f"imp-{self._host.platform}-"))
            try:
                path = self._host.fetch(task, folder)
                with open(path, "rb") as stream:
                    if task.kind == INGEST:
                        job = engine.submit_upload(path.name, stream, task.channel,
                                                   source=f"{self._host.platform}:{task.file_id}/{path.name}")
                    else:
                        job = engine.submit_minutes(filename=path.name, stream=stream, scope=task.channel)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        self._state.update_task(task.task_id, state=SUBMITTED, job_id=job.job_id)

    # -- submitted: show progress, then post the result -----------------------------------------

    def _watch(self, task: ChatTask) -> None:
        try:
            job = self._engine.job(task.job_id or "")
        except NotFound:
            self._fail(task, RuntimeError("its job was lost"))
            return
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            self._status(task, self._host.progress_text(task, job))
            return
        outcome = self._ingested(task, job) if task.kind == INGEST else self._minutes(job)
        self._host.finish(task, outcome)
        self._state.update_task(task.task_id, state=FAILED if isinstance(outcome, Failed) else DONE,
                                error=outcome.why if isinstance(outcome, Failed) else None)
        self._shown.pop(task.task_id, None)

    def _status(self, task: ChatTask, text: str) -> None:
        last = self._shown.get(task.task_id)
        now = time.monotonic()
        if last is not None and (last[0] == text or now - last[1] < MIN_UPDATE_S):
            return
        shown: str | None = text
        if task.status:
            try:
                self._host.show_progress(task, text)
            except Exception as e:  # progress is a courtesy; the task goes on
                log.warning("could not show progress of task %s: %s", task.task_id, type(e).__name__)
                shown = None  # not on screen: show it again once the interval has passed
        self._shown[task.task_id] = (shown, time.monotonic())

    def _ingested(self, task: ChatTask, job: Job) -> Outcome:
        result = job.result or {}
        if job.status == JobStatus.FAILED or result.get("status") == "failed":
            return Failed(result.get("error") or job.error or "unknown error")
        if result.get("status") == "unchanged":
            return Unchanged()
        if self._host.file_gone(task):  # deleted while the job ran: keep nothing of it
            self._engine.delete(result["doc_id"])
            return DeletedMeanwhile()
        return Indexed(self._engine.document(result["doc_id"]))

    @staticmethod
    def _minutes(job: Job) -> Outcome:
        if job.status == JobStatus.FAILED or not job.result:
            return Failed(job.error or "unknown error")
        return MinutesReady(minutes_from_dict(job.result))

    # -- failures -------------------------------------------------------------------------------

    def _fail(self, task: ChatTask, e: Exception) -> None:
        why = self._host.reason(e)
        try:
            self._host.finish(task, Failed(why))
        except Exception as told:
            if self._host.throttled(told):  # never silent: the task stays open and the next round tells them
                log.warning("throttled reporting the failure of task %s; trying again", task.task_id)
                return
            log.exception("could not report the failure of task %s", task.task_id)
        self._state.update_task(task.task_id, state=FAILED, error=why)
        self._shown.pop(task.task_id, None)
