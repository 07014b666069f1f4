"""The follow-up worker: carries long Slack tasks from request to posted result, across restarts.

A task (index a shared file, write minutes of a recording) is stored when it is
asked for. This worker fetches the file from Slack, hands it to an engine job,
keeps the status message up to date with the job's progress, and posts the
result: what was indexed, or the minutes (Block Kit, owners as mentions) with the
full Markdown uploaded in their thread. Tasks and jobs are both stored, so a
restarted service picks up where the previous one stopped.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError

from bot.slack.blocks import escape, indexed_text, minutes_blocks, minutes_text, progress_text, unmarked
from bot.slack.deps import reason
from bot.slack.files import fetch
from core.errors import NotFound
from core.formats.minutes import from_dict as minutes_from_dict
from core.formats.minutes import to_markdown
from core.models import Job, JobStatus, Minutes
from core.store.chat import ChatTask

if TYPE_CHECKING:
    from bot.slack.deps import SlackDeps

log = logging.getLogger(__name__)

MIN_UPDATE_S = 5.0  # Slack's chat.update is rate limited; progress needs no more


class FollowUps:
    def __init__(self, deps: SlackDeps, *, poll_s: float = 2.0):
        self._deps = deps
        self._poll = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown: dict[str, tuple[str | None, float]] = {}  # task -> (status text shown, when tried)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="imp-slack-followups", daemon=True)
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
                for task in self._deps.state.open_tasks():
                    if self._stop.is_set():
                        break
                    self._advance(task)
            except Exception:  # the worker must outlive any one bad task or outage
                log.exception("follow-up round failed")
            self._wake.wait(self._poll)
            self._wake.clear()

    def _advance(self, task: ChatTask) -> None:
        try:
            if task.state == "new":
                self._submit(task)
            else:
                self._watch(task)
        except Exception as e:
            if _rate_limited(e):  # still limited after the client's own retries: the next round tries again
                log.warning("Slack is rate limiting task %s; trying again on the next round", task.task_id)
                return
            self._fail(task, e)

    # -- new: fetch the file and hand it to the engine ----------------------------------------

    def _submit(self, task: ChatTask) -> None:
        engine = self._deps.engine
        if task.kind == "minutes" and task.data.get("doc_id"):
            job = engine.submit_minutes(doc_id=task.data["doc_id"], scope=task.channel)
        else:
            assert task.file_id is not None
            folder = Path(tempfile.mkdtemp(prefix="imp-slack-"))
            try:
                _, path = fetch(self._deps, task.file_id, folder)
                with open(path, "rb") as stream:
                    if task.kind == "ingest":
                        job = engine.submit_upload(path.name, stream, task.channel,
                                                   source=f"slack:{task.file_id}/{path.name}")
                    else:
                        job = engine.submit_minutes(filename=path.name, stream=stream, scope=task.channel)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        self._deps.state.update_task(task.task_id, state="submitted", job_id=job.job_id)

    # -- submitted: show progress, then post the result -----------------------------------------

    def _watch(self, task: ChatTask) -> None:
        try:
            job = self._deps.engine.job(task.job_id or "")
        except NotFound:
            self._fail(task, RuntimeError("its job was lost"))
            return
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            verb = "Indexing" if task.kind == "ingest" else "Writing minutes of"
            self._status(task, progress_text(verb, task.file_name or "the file", job.stage, job.done, job.total))
            return
        if task.kind == "ingest":
            self._finish_ingest(task, job)
        else:
            self._finish_minutes(task, job)

    def _status(self, task: ChatTask, text: str, *, force: bool = False) -> None:
        last = self._shown.get(task.task_id)
        now = time.monotonic()
        if not force and last is not None and (last[0] == text or now - last[1] < MIN_UPDATE_S):
            return
        shown: str | None = text
        if task.status_ts:
            try:
                self._deps.client.chat_update(channel=task.channel, ts=task.status_ts, text=text)
            except SlackApiError as e:  # progress is a courtesy; the task goes on
                log.warning("could not show progress of task %s: %s", task.task_id, e.response.get("error"))
                shown = None  # not on screen: show it again once the interval has passed
        self._shown[task.task_id] = (shown, time.monotonic())

    def _finish_ingest(self, task: ChatTask, job: Job) -> None:
        name = task.file_name or "the file"
        result = job.result or {}
        if job.status == JobStatus.FAILED or result.get("status") == "failed":
            why = result.get("error") or job.error or "unknown error"
            text = f":warning: I could not index *{escape(name)}*: {escape(why)}"
            self._done(task, text, failed=True)
        elif result.get("status") == "unchanged":
            self._done(task, f":white_check_mark: *{escape(name)}* was indexed before; nothing changed.")
        elif self._deleted_meanwhile(task):  # file_deleted came while the job ran: keep nothing of it
            self._deps.engine.delete(result["doc_id"])
            self._done(task, f":wastebasket: *{escape(name)}* was deleted in Slack before I finished; I kept nothing.")
        else:
            self._done(task, indexed_text(self._deps.engine.document(result["doc_id"]), name))

    def _deleted_meanwhile(self, task: ChatTask) -> bool:
        try:
            self._deps.client.files_info(file=task.file_id)
        except SlackApiError as e:
            if e.response.get("error") in ("file_not_found", "file_deleted"):
                return True
            raise
        return False

    def _finish_minutes(self, task: ChatTask, job: Job) -> None:
        name = task.file_name or "the recording"
        if job.status == JobStatus.FAILED or not job.result:
            self._done(task, f":warning: I could not write minutes of *{escape(name)}*: "
                             f"{escape(job.error or 'unknown error')}", failed=True)
            return
        minutes = minutes_from_dict(job.result)
        blocks = minutes_blocks(minutes, source=name, owners=self._owners(task.channel, minutes),
                                requested_by=task.user)
        client = self._deps.client
        if task.status_ts:
            client.chat_update(channel=task.channel, ts=task.status_ts, text=minutes_text(minutes, name),
                               blocks=blocks)
            thread = task.status_ts
        else:
            thread = client.chat_postMessage(channel=task.channel, text=minutes_text(minutes, name),
                                             blocks=blocks)["ts"]
            # Should the upload have to wait for a later round, that round updates this message, not a new one.
            task = self._deps.state.update_task(task.task_id, status_ts=thread)
        stem = unmarked(Path(name).stem) or "meeting"
        try:
            # A file's name and title are shown as they are, never read as markup (bot.slack.blocks.unmarked).
            client.files_upload_v2(channel=task.channel, thread_ts=thread, content=to_markdown(minutes),
                                   filename=f"minutes-{stem}.md", title=unmarked(f"Minutes: {minutes.title}"),
                                   initial_comment="The full minutes, with the quote and moment behind every item.")
        except SlackApiError as e:
            if _rate_limited(e):
                raise  # the next round posts the minutes again (an update: no duplicate) with their file
            client.chat_postMessage(channel=task.channel, thread_ts=thread,
                                    text=f":warning: I could not attach the full minutes: {escape(reason(e))}")
        self._deps.state.update_task(task.task_id, state="done")
        self._shown.pop(task.task_id, None)

    def _owners(self, channel: str, minutes: Minutes) -> dict[str, str]:
        """Action-item owners whose name matches exactly one channel member, mapped to that member."""
        names = {a.owner for a in minutes.action_items if a.owner}
        if not names:
            return {}
        people: dict[str, set[str]] = {}
        try:
            for user_id in self._deps.scopes.members_of(channel, limit=500):
                user = self._deps.client.users_info(user=user_id)["user"]
                if user.get("is_bot") or user.get("deleted"):
                    continue
                profile = user.get("profile") or {}
                full = profile.get("real_name") or user.get("real_name") or ""
                keys = {full, profile.get("display_name") or "", user.get("name") or "", full.split(" ")[0]}
                for key in filter(None, keys):
                    people.setdefault(key.casefold(), set()).add(user_id)
        except SlackApiError as e:
            log.warning("could not read the members of %s to name owners: %s", channel, e.response.get("error"))
        found = {}
        for name in names:
            ids = people.get(name.casefold(), set())
            if len(ids) == 1:
                found[name] = next(iter(ids))
        return found

    # -- endings ------------------------------------------------------------------------------

    def _done(self, task: ChatTask, text: str, *, failed: bool = False) -> None:
        if task.status_ts:
            self._deps.client.chat_update(channel=task.channel, ts=task.status_ts, text=text)
        else:
            self._deps.client.chat_postMessage(channel=task.channel, thread_ts=task.thread_ts, text=text)
        self._deps.state.update_task(task.task_id, state="failed" if failed else "done",
                                     error=text if failed else None)
        self._shown.pop(task.task_id, None)

    def _fail(self, task: ChatTask, e: Exception) -> None:
        what = "index" if task.kind == "ingest" else "write minutes of"
        try:
            self._done(task, f":warning: I could not {what} *{escape(task.file_name or 'the file')}*: "
                             f"{escape(reason(e))}", failed=True)
        except SlackApiError as told:
            if _rate_limited(told):  # never silent: the task stays open and the next round tells them
                log.warning("Slack is rate limiting the failure report of task %s; trying again", task.task_id)
                return
            log.exception("could not report the failure of task %s", task.task_id)
            self._deps.state.update_task(task.task_id, state="failed", error=str(e))


def _rate_limited(e: Exception) -> bool:
    """Slack answered 429 (``ratelimited``) even after the Web API client waited out its Retry-After."""
    if not isinstance(e, SlackApiError) or e.response is None:
        return False
    return e.response.status_code == 429 or e.response.get("error") == "ratelimited"
