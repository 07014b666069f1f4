"""The Teams side of long tasks (bot/chat/tasks.py): fetch the dropped file, show progress in a card
updated in place, post what came of it (what was indexed, or the minutes as an Adaptive Card).

A task remembers where to post (``data["where"]``: service URL, conversation, thread) and, for a file,
its short-lived download link (``data["download_url"]``, a file sent in a 1:1 chat) or its place in
SharePoint/OneDrive (``data["shared_url"]``, a file posted in a channel or group chat), which Microsoft
Graph turns into a fresh download link right before the download (bot/teams/graph.py), with where Teams
keeps that conversation's files (``data["place"]``): a file kept anywhere else is refused before any byte
is downloaded (bot/teams/file_places.py). Teams throttles
with 429 (and 412); the connector already waits those out a few times, and a task still throttled stays
open for the next round.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from bot.chat.replies import reason
from bot.chat.owners import match_owners, owner_names
from bot.chat.state import ChatState, ChatTask
from bot.chat.tasks import (
    INGEST,
    DeletedMeanwhile,
    Failed,
    Indexed,
    MinutesReady,
    Outcome,
    Unchanged,
)
from bot.teams.cards import Mention, minutes_card, neutral, progress_card
from bot.teams.connector import ConnectorClient, ConnectorError
from bot.teams.events import SharedFile
from bot.teams.file_links import human
from bot.teams.file_places import PLACE, FilePlaces
from bot.teams.files import FileGone, FileTooLarge, TeamsFile, TeamsFiles
from bot.teams.graph import GraphFiles, GraphUnavailable
from bot.teams.outbox import Where, card_activity, post, say, text_activity
from core.formats.documents import extent
from core.models import DocumentRecord, Job, Minutes

log = logging.getLogger(__name__)

PLATFORM = "teams"


def verb_of(task: ChatTask) -> str:
    return "Indexing" if task.kind == INGEST else "Writing minutes of"


def indexed_text(record: DocumentRecord, name: str) -> str:
    return f"✅ Indexed {name} ({extent(record)}). Members of this conversation can now ask me about it."


def platform_reason(e: Exception) -> str | None:
    if isinstance(e, ConnectorError):
        if e.status in (403, 404):
            return "Teams would not let me post there; an admin may need to add me to this team or chat again."
        return "Teams is not answering me right now; please try again in a minute."
    return None


class TeamsTaskHost:
    platform = PLATFORM

    def __init__(self, connector: ConnectorClient, files: TeamsFiles, state: ChatState,
                 graph: GraphFiles | None = None):
        self._connector = connector
        self._files = files
        self._graph = graph
        self._places = FilePlaces(graph) if graph is not None else None  # kept: it caches drive ids
        self._state = state

    def fetch(self, task: ChatTask, folder: Path) -> Path:
        name = task.file_name or task.file_id or "file"
        if task.data.get("shared_url") and task.file_id:
            url = self._resolve(task, name)
        else:
            url = task.data.get("download_url")
        if not url or not task.file_id:
            raise FileGone("the file's download link is no longer known; share it again")
        try:  # the task's file id, never Graph's item id: the document's source must stay what it was
            staged = self._files.fetch(TeamsFile.shared_link(url, name, task.file_id))
        finally:  # the link is a credential: kept no longer than needed
            if "download_url" in task.data:
                self._state.update_task(task.task_id,
                                        data={k: v for k, v in task.data.items() if k != "download_url"})
        try:
            target = folder / staged.name
            shutil.move(staged.path, target)
            return target
        finally:
            staged.discard()

    def _resolve(self, task: ChatTask, name: str) -> str:
        """A fresh download link for a file shared in a channel or group chat, from Microsoft Graph."""
        if self._graph is None or self._places is None:
            raise GraphUnavailable("files shared in channels and group chats need Microsoft Graph, which is not "
                                   "configured for this Teams bot")
        found = self._graph.resolve(SharedFile(name, task.data["shared_url"], task.file_id or "", ""))
        # the app may read every file of the tenant: only one kept where this conversation keeps its files is read
        self._places.check(found, task.data.get(PLACE), name)
        if found.size is not None and found.size > self._files.max_bytes:
            raise FileTooLarge(f"{name} is {human(found.size)}, more than the {human(self._files.max_bytes)} "
                               "IMP accepts")
        return found.download_url

    def progress_text(self, task: ChatTask, job: Job) -> str:
        """The progress card as JSON: the worker compares it with the one shown and hands it back to show."""
        card = progress_card(verb_of(task), task.file_name or "the file", job.stage, job.done, job.total)
        return json.dumps(card, sort_keys=True)

    def show_progress(self, task: ChatTask, text: str) -> None:
        where = Where.from_data(task.data["where"])
        self._connector.update(where.service_url, where.conversation_id, task.status or "",
                               card_activity(json.loads(text)))

    def file_gone(self, task: ChatTask) -> bool:
        return False  # Teams tells no bot when a file is deleted from SharePoint; deleting its message is the signal

    def finish(self, task: ChatTask, outcome: Outcome) -> None:
        where = Where.from_data(task.data["where"])
        name = task.file_name or ("the recording" if task.kind != INGEST else "the file")
        if isinstance(outcome, MinutesReady):
            members = self._members(where)
            asked_by = task.data.get("requested_by")
            card = minutes_card(outcome.minutes, source=name, owners=_owners(members, outcome.minutes),
                                requested_by=next((m for m in members if m.id == asked_by), None))
            activity = card_activity(card, f"Minutes of {name}")
            if task.status:
                self._connector.update(where.service_url, where.conversation_id, task.status, activity)
            else:
                message_id = post(self._connector, where, activity)
                self._state.update_task(task.task_id, status=message_id)
            return
        if isinstance(outcome, Indexed):
            text = indexed_text(outcome.document, name)
        elif isinstance(outcome, Unchanged):
            text = f"✅ {name} was indexed before; nothing changed."
        elif isinstance(outcome, DeletedMeanwhile):
            text = f"🗑️ {name} was deleted in Teams before I finished; I kept nothing."
        else:
            assert isinstance(outcome, Failed)
            what = "index" if task.kind == INGEST else "write minutes of"
            text = f"⚠️ I could not {what} {name}: {outcome.why}"
        if task.status:
            self._connector.update(where.service_url, where.conversation_id, task.status,
                                   text_activity(neutral(text)))
        else:
            say(self._connector, where, text)

    def _members(self, where: Where) -> list[Mention]:
        try:
            return [Mention(m.id, m.name) for m in self._connector.members(where.service_url,
                                                                           where.conversation_id) if m.id and m.name]
        except ConnectorError as e:
            log.warning("could not list the members of a Teams conversation to name owners: %s", e.detail)
            return []

    def throttled(self, e: Exception) -> bool:
        return isinstance(e, ConnectorError) and e.status in (429, 412)

    def reason(self, e: Exception) -> str:
        return reason(e, platform_reason, where="Teams")


def _owners(members: list[Mention], minutes: Minutes) -> dict[str, Mention]:
    """Action-item owners whose name matches exactly one member of the conversation, as mentions."""
    names = owner_names(minutes)
    if not names:
        return {}
    by_id = {m.id: m for m in members}
    found = match_owners(names, [(m.id, [m.name]) for m in members])
    return {name: by_id[member_id] for name, member_id in found.items()}
