"""Slack's side of long tasks: the ``TaskHost`` the chat layer's follow-up worker (bot.chat.tasks) drives.

The worker carries a task (index a shared file, write minutes of a recording) from request to
result, across restarts. What Slack does for it is here: fetch the file (bot.slack.downloads),
keep the status message up to date (chat.update), tell whether a file was deleted meanwhile,
and post what came of the task: what was indexed, a reason, or the minutes (Block Kit, owners
as mentions) with the full Markdown uploaded in their thread. A 429 that outlasts the Web API
client's own retries is "throttled": the worker leaves the task for its next round, which posts
again in place (an update of the same message: no duplicate).
"""

from __future__ import annotations

import logging
from pathlib import Path

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.chat.owners import match_owners, owner_names
from bot.chat.state import ChatState, ChatTask
from bot.chat.tasks import INGEST, DeletedMeanwhile, Failed, Indexed, MinutesReady, Outcome, Unchanged
from bot.slack.blocks import escape, indexed_text, minutes_blocks, minutes_text, progress_text, unmarked
from bot.slack.deps import reason as reason_for
from bot.slack.downloads import fetch
from bot.slack.scopes import ScopeResolver
from core.formats.minutes import to_markdown
from core.models import Job, Minutes

log = logging.getLogger(__name__)


class SlackTaskHost:
    """What Slack does for the follow-up worker (bot.chat.tasks.TaskHost)."""

    platform = "slack"

    def __init__(self, client: WebClient, state: ChatState, scopes: ScopeResolver, max_file_bytes: int):
        self._client = client
        self._state = state
        self._scopes = scopes
        self._max_bytes = max_file_bytes

    def fetch(self, task: ChatTask, folder: Path) -> Path:
        return fetch(self._client, task.file_id or "", folder, self._max_bytes)[1]

    def progress_text(self, task: ChatTask, job: Job) -> str:
        verb = "Indexing" if task.kind == INGEST else "Writing minutes of"
        return progress_text(verb, task.file_name or "the file", job.stage, job.done, job.total)

    def show_progress(self, task: ChatTask, text: str) -> None:
        self._client.chat_update(channel=task.channel, ts=task.status, text=text)

    def file_gone(self, task: ChatTask) -> bool:
        try:
            self._client.files_info(file=task.file_id)
        except SlackApiError as e:
            if e.response.get("error") in ("file_not_found", "file_deleted"):
                return True
            raise
        return False

    def throttled(self, e: Exception) -> bool:
        """Slack answered 429 (``ratelimited``) even after the Web API client waited out its Retry-After."""
        if not isinstance(e, SlackApiError) or e.response is None:
            return False
        return e.response.status_code == 429 or e.response.get("error") == "ratelimited"

    def reason(self, e: Exception) -> str:
        return reason_for(e)

    # -- results ----------------------------------------------------------------------------------

    def finish(self, task: ChatTask, outcome: Outcome) -> None:
        name = escape(task.file_name or "the file")
        if isinstance(outcome, MinutesReady):
            self._post_minutes(task, outcome.minutes)
        elif isinstance(outcome, Indexed):
            self._say(task, indexed_text(outcome.document, task.file_name or "the file"))
        elif isinstance(outcome, Unchanged):
            self._say(task, f":white_check_mark: *{name}* was indexed before; nothing changed.")
        elif isinstance(outcome, DeletedMeanwhile):
            self._say(task, f":wastebasket: *{name}* was deleted in Slack before I finished; I kept nothing.")
        elif isinstance(outcome, Failed):
            what = "index" if task.kind == INGEST else "write minutes of"
            self._say(task, f":warning: I could not {what} *{name}*: {escape(outcome.why)}")

    def _say(self, task: ChatTask, text: str) -> None:
        """The task's status message becomes ``text``; without one, ``text`` is posted in the task's thread."""
        if task.status:
            self._client.chat_update(channel=task.channel, ts=task.status, text=text)
        else:
            self._client.chat_postMessage(channel=task.channel, thread_ts=task.thread, text=text)

    def _post_minutes(self, task: ChatTask, minutes: Minutes) -> None:
        name = task.file_name or "the recording"
        blocks = minutes_blocks(minutes, source=name, owners=self._owners(task.channel, minutes),
                                requested_by=task.user)
        client = self._client
        if task.status:
            client.chat_update(channel=task.channel, ts=task.status, text=minutes_text(minutes, name), blocks=blocks)
            thread = task.status
        else:
            thread = client.chat_postMessage(channel=task.channel, text=minutes_text(minutes, name),
                                             blocks=blocks)["ts"]
            # Should the upload have to wait for a later round, that round updates this message, not a new one.
            task = self._state.update_task(task.task_id, status=thread)
        stem = unmarked(Path(name).stem) or "meeting"
        try:
            # A file's name and title are shown as they are, never read as markup (bot.slack.blocks.unmarked).
            client.files_upload_v2(channel=task.channel, thread_ts=thread, content=to_markdown(minutes),
                                   filename=f"minutes-{stem}.md", title=unmarked(f"Minutes: {minutes.title}"),
                                   initial_comment="The full minutes, with the quote and moment behind every item.")
        except SlackApiError as e:
            if self.throttled(e):
                raise  # the next round posts the minutes again (an update: no duplicate) with their file
            client.chat_postMessage(channel=task.channel, thread_ts=thread,
                                    text=f":warning: I could not attach the full minutes: {escape(reason_for(e))}")

    def _owners(self, channel: str, minutes: Minutes) -> dict[str, str]:
        """Action-item owners whose name matches exactly one channel member, mapped to that member."""
        names = owner_names(minutes)
        if not names:
            return {}
        members: list[tuple[str, list[str]]] = []
        try:
            for user_id in self._scopes.members_of(channel, limit=500):
                user = self._client.users_info(user=user_id)["user"]
                if user.get("is_bot") or user.get("deleted"):
                    continue
                profile = user.get("profile") or {}
                full = profile.get("real_name") or user.get("real_name") or ""
                members.append((user_id, [full, profile.get("display_name") or "", user.get("name") or ""]))
        except SlackApiError as e:
            log.warning("could not read the members of %s to name owners: %s", channel, e.response.get("error"))
        return match_owners(names, members)
