"""The Teams front door: a thin adapter over the chat layer (bot/chat), built from an Engine and chat state.

``TeamsBot.receive`` takes one POST to /api/messages: the Bot Framework token is checked first
(bot/teams/auth.py: a missing, forged, expired or wrong-audience token is refused and nothing runs), the
activity is read into a checked event (bot/teams/activity.py), its service URL must be one IMP may call,
and a repeated delivery of the same activity is answered without running it again. Then it answers at
once and does the work on its worker threads, as Bot Framework expects an answer within seconds:

- a message to IMP (an @mention in a channel or group chat, any message in a 1:1 chat) is a question,
  answered in its thread with an Adaptive Card (bot/chat/questions.py), from the scopes its asker may see
  (bot/chat/scopes.py over bot/teams/directory.py);
- ``minutes`` (the manifest's command, or the word first in a message) writes minutes of the latest
  recording dropped in the conversation, or of one attached to the command;
- files attached to a message are indexed in the conversation's scope by the follow-up worker, with a
  progress card updated in place (bot/chat/tasks.py over bot/teams/tasks.py): a file sent in a 1:1 chat
  from its download link, one posted in a channel or group chat through Microsoft Graph (bot/teams/graph.py);
- 👍/👎 on an answer rate it (bot/chat/feedback.py); the share button posts a private answer where it is
  pressed when everyone there may see its sources;
- IMP added to a team or chat greets it and remembers it (the 1:1 chat's scopes come from those), and
  forgets it when removed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.chat.feedback import react_to_answer
from bot.chat.files import forget_file, human_size, indexed_meeting, is_recording_type
from bot.chat.questions import Asked, NotShareable, Said, answer_question, recall_answers, shareable, turns
from bot.chat.recent import RecentEvents
from bot.chat.scopes import ScopePolicy
from bot.chat.state import DONE, ChatState
from bot.chat.tasks import FollowUps
from bot.teams.activity import parse_activity, scope_key, scope_of
from bot.teams.auth import BotFrameworkAuthenticator
from bot.teams.cards import answer_card, progress_card
from bot.teams.connector import ConnectorClient
from bot.teams.directory import MemberLists, TeamsDirectory, members_conversation
from bot.teams.events import (
    CardAction, Conversation, FileAttachment, Ignored, MembersChanged, Message, MessageDeleted, Reaction, SharedFile,
)
from bot.teams.file_places import PLACE, place_of
from bot.teams.files import TeamsFiles
from bot.teams.graph import GraphFiles
from bot.teams.outbox import Where, card_activity, post, say, typing
from bot.teams.tasks import PLATFORM, TeamsTaskHost, platform_reason
from bot.chat.replies import reason
from core.engine import Engine
from core.models import Answer

log = logging.getLogger(__name__)

USAGE = ("Ask me about the documents and recordings shared in your teams and chats, for example "
         "“@IMP what did we decide about the launch date?”")
GREETING = ("Hi! I answer questions about the documents and recordings shared here, with numbered sources — the "
            "page, or the minute and second of a recording. Mention me with a question, drop a file to have it "
            "indexed, or send “minutes” for the minutes of the latest recording.")
BUSY = ("I have more questions than I can answer right now, so I did not get to this one in time. "
        "Please ask again in a minute.")
MINUTES_USAGE = ("Send “minutes” in the conversation where a recording was shared (the latest one), or attach a "
                 "recording to the message that says “minutes”.")
NO_RECORDING = "I found no recording indexed in this conversation yet. " + MINUTES_USAGE
HISTORY_TURNS = 20  # remembered per conversation thread, for follow-up questions
MEETING_TRANSCRIPTS = ("vtt", "srt")  # minutes can be written from these as from a recording


def _meeting(file_type: str) -> bool:
    return is_recording_type(None, file_type) or file_type in MEETING_TRANSCRIPTS


@dataclass(frozen=True)
class TeamsOptions:
    app_id: str
    tenant_id: str | None = None
    company_scopes: list[str] = field(default_factory=lambda: ["default"])
    max_file_bytes: int = 1 << 30
    poll_s: float = 2.0
    workers: int = 4
    max_wait_s: float = 120.0
    loopback_http: bool = False  # tests only: plain-http links to 127.0.0.1


class TeamsReplier:
    """The chat layer's Replier for one Teams conversation."""

    def __init__(self, connector: ConnectorClient, where: Where):
        self._connector = connector
        self._where = where
        self.posted: list[str] = []

    def usage(self) -> None:
        say(self._connector, self._where, USAGE)

    def busy(self) -> None:
        say(self._connector, self._where, BUSY)

    def working(self, on: bool) -> None:
        if on:
            try:
                typing(self._connector, self._where)
            except Exception as e:  # a courtesy: the answer matters, not the dots
                log.info("could not show typing in Teams: %s", type(e).__name__)

    def post_answer(self, answer: Answer) -> list[str]:
        message_id = post(self._connector, self._where, card_activity(answer_card(answer)))
        self.posted = [message_id] if message_id else []
        return self.posted

    def failed(self, what: str, e: Exception) -> None:
        try:
            say(self._connector, self._where, f"⚠️ {what}: {reason(e, platform_reason, where='Teams')}")
        except Exception:
            log.exception("could not tell a Teams user that %s", what)


class History:
    """The last turns of each conversation thread, in memory (Teams gives a bot no message history)."""

    def __init__(self, threads: int = 5000):
        self._threads: OrderedDict[str, deque[Said]] = OrderedDict()
        self._max = threads
        self._lock = threading.Lock()  # the worker threads answer questions side by side

    def said(self, key: str) -> list[Said]:
        with self._lock:
            return list(self._threads.get(key, ()))

    def add(self, key: str, *said: Said) -> None:
        with self._lock:
            turns_ = self._threads.setdefault(key, deque(maxlen=HISTORY_TURNS))
            turns_.extend(said)
            self._threads.move_to_end(key)
            while len(self._threads) > self._max:
                self._threads.popitem(last=False)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class TeamsBot:
    def __init__(self, engine: Engine, state: ChatState, connector: ConnectorClient, files: TeamsFiles,
                 authenticator: BotFrameworkAuthenticator, options: TeamsOptions, graph: GraphFiles | None = None):
        self.engine = engine
        self.state = state
        self.connector = connector
        self.options = options
        self._auth = authenticator
        self._members = MemberLists(connector)
        self._executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="imp-teams")
        self._seen = RecentEvents(ttl_s=3600, max_events=100_000)
        self._history = History()
        self.graph = graph  # files posted in channels and group chats; without it they fail with a reason
        self.followups = FollowUps(engine, state, TeamsTaskHost(connector, files, state, graph),
                                   poll_s=options.poll_s)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return self._executor._work_queue.qsize()  # noqa: SLF001 - ThreadPoolExecutor exposes no public count

    def start(self) -> None:
        self.followups.start()

    def close(self) -> None:
        self.followups.stop()
        self._executor.shutdown(wait=True)
        self.connector.close()
        if self.graph is not None:
            self.graph.close()

    # -- one request -------------------------------------------------------------------------

    def receive(self, body: Any, authorization: str | None) -> dict[str, Any] | None:
        """Check and take one activity; the invoke response Teams waits for, or None (HTTP 200, empty).

        Raises TeamsAuthError (401/403) or an InvalidRequest (400/403) and runs nothing when refused.
        """
        fields = body if isinstance(body, dict) else {}
        service_url, channel = fields.get("serviceUrl"), fields.get("channelId")
        self._auth.validate(authorization, service_url=service_url if isinstance(service_url, str) else None,
                            channel_id=channel if isinstance(channel, str) else None)
        event = parse_activity(body, app_id=self.options.app_id, tenant_id=self.options.tenant_id,
                               loopback_http=self.options.loopback_http)
        if isinstance(event, Ignored):
            return {"status": 200} if event.invoke else None
        self.connector.check_service_url(event.conversation.service_url)
        # A messageDelete carries the id of the message it deletes: the event's kind is part of the key.
        delivery = f"{type(event).__name__}/{event.conversation.base_id}/{event.activity_id}"
        if event.activity_id and not self._seen.first_delivery(delivery):
            log.info("ignoring a repeated delivery of Teams activity %s", event.activity_id)
            return {"status": 200} if isinstance(event, CardAction) and event.invoke else None
        received = _now()
        if isinstance(event, Message):
            self._executor.submit(self._safely, self._on_message, event, received)
        elif isinstance(event, Reaction):
            self._executor.submit(self._safely, self._on_reaction, event)
        elif isinstance(event, CardAction):
            self._executor.submit(self._safely, self._on_share, event)
            if event.invoke:
                return {"status": 200, "body": {"statusCode": 200, "value": "Sharing the answer…",
                                                "type": "application/vnd.microsoft.activity.message"}}
        elif isinstance(event, MembersChanged):
            self._executor.submit(self._safely, self._on_members, event)
        elif isinstance(event, MessageDeleted):
            self._executor.submit(self._safely, self._on_deleted, event)
        return None

    @staticmethod
    def _safely(handler: Any, *args: Any) -> None:
        try:
            handler(*args)
        except Exception:  # a worker thread must survive any one activity
            log.exception("Teams activity handler %s failed", getattr(handler, "__name__", handler))

    # -- where things go --------------------------------------------------------------------

    @staticmethod
    def scope(conversation: Conversation) -> str:
        """The scope of what is dropped in ``conversation``: a channel's, a chat's, a 1:1 chat's own."""
        return scope_of(conversation) or scope_key(conversation.base_id)

    def _remember(self, conversation: Conversation) -> None:
        if conversation.kind == "personal":
            return
        self.state.seen(PLATFORM, self.scope(conversation), conversation.kind, {
            "service_url": conversation.service_url, "members_of": members_conversation(conversation),
            "conversation": conversation.base_id, "tenant": conversation.tenant_id,
            "channel_type": conversation.channel_type})

    def _policy(self, conversation: Conversation) -> ScopePolicy:
        directory = TeamsDirectory(self.state, self._members, conversation, tenant_id=self.options.tenant_id)
        return ScopePolicy(directory, self.options.company_scopes)

    def scopes_for(self, conversation: Conversation, user: str) -> list[str]:
        policy, scope = self._policy(conversation), self.scope(conversation)
        if conversation.kind == "personal":
            return policy.for_asker(scope, user, private=True, hint=conversation.tenant_id)
        return policy.for_message(scope, user, private=False, hint=conversation.tenant_id,
                                  shared_outside=conversation.channel_type == "shared")

    # -- messages ------------------------------------------------------------------------------

    def _on_message(self, m: Message, received: datetime) -> None:
        self._remember(m.conversation)
        where = Where(m.conversation.service_url, m.conversation.base_id, m.activity_id)
        for refused in m.refused:
            say(self.connector, where, f"⚠️ I could not index {refused.name}: {refused.reason}")
        if m.command == "minutes":
            self._minutes(m, where)
            return
        dropped = bool(m.files or m.shared_files)
        if dropped:
            self._drop_files(m, where)
        question = m.arguments if m.command == "ask" else m.text
        if m.addressed and (question or not dropped):
            self._answer(m, question, where, received)

    def _answer(self, m: Message, question: str, where: Where, received: datetime) -> None:
        channel, conversation = m.conversation.base_id, m.conversation
        thread = f"{channel}/{m.thread_root or ''}"
        recall = recall_answers(self.engine, self.state, channel)
        asked = Asked(question=question, channel=channel, user=m.user.id,
                      scopes=lambda: self.scopes_for(conversation, m.user.id),
                      history=lambda: turns(self._history.said(thread), recall),
                      waited_too_long=(_now() - received).total_seconds() > self.options.max_wait_s)
        replier = TeamsReplier(self.connector, where)
        if answer_question(self.engine, self.state, asked, replier) is not None:
            self._history.add(thread, Said(m.activity_id, question, mine=False),
                              *[Said(message_id, "", mine=True) for message_id in replier.posted])

    def _drop_files(self, m: Message, where: Where) -> None:
        for f in (*m.files, *m.shared_files):
            size = f.size if isinstance(f, FileAttachment) else None  # a shared file's: once Graph is asked
            if size is not None and size > self.options.max_file_bytes:
                say(self.connector, where, f"⚠️ I could not index {f.name}: it is {human_size(size)}, more than "
                                           f"the {human_size(self.options.max_file_bytes)} I accept")
                continue
            file_id, fetch = _fetch_of(m, f)
            self._start("ingest", "Indexing", m, where, file_id, f.name, {**fetch, "recording": _meeting(f.file_type)})

    def _minutes(self, m: Message, where: Where) -> None:
        scope = self.scope(m.conversation)
        data: dict[str, Any] = {"requested_by": m.user.id}
        attached = next((f for f in (*m.files, *m.shared_files) if _meeting(f.file_type)), None)
        if attached is not None:
            file_id, fetch = _fetch_of(m, attached)
            name = attached.name
            data.update(fetch)
        else:
            found = next((t for t in self.state.recent_tasks(scope, "ingest")
                          if t.state == DONE and t.data.get("recording") and t.file_id), None)
            doc_id = indexed_meeting(self.engine, PLATFORM, found.file_id, scope) if found else None
            if found is None or doc_id is None:
                say(self.connector, where, NO_RECORDING)
                return
            file_id, name = found.file_id, found.file_name or "the recording"
            data["doc_id"] = doc_id
        self._start("minutes", "Writing minutes of", m, where, file_id, name, data)

    def _start(self, kind: str, verb: str, m: Message, where: Where, file_id: str, name: str,
               data: dict[str, Any]) -> None:
        """Show a progress card in the thread and store the task the follow-up worker carries out."""
        status = post(self.connector, where, card_activity(progress_card(verb, name, "queued", 0, None)))
        self.state.add_task(kind, self.scope(m.conversation), m.user.id, thread=m.activity_id, status=status,
                            file_id=file_id, file_name=name, data={"where": where.as_data(), **data},
                            platform=PLATFORM)
        self.followups.wake()

    # -- reactions, shares, membership ---------------------------------------------------------

    def _on_reaction(self, r: Reaction) -> None:
        for change in r.changes:
            react_to_answer(self.engine, self.state, r.conversation.base_id, r.message_id, r.user.id, change.rating,
                            added=change.added, when=r.timestamp or _now(), source=PLATFORM)

    def _on_share(self, action: CardAction) -> None:
        where = Where(action.conversation.service_url, action.conversation.base_id)
        try:
            answer = shareable(self.engine, action.answer_id, self.scopes_for(action.conversation, action.user.id))
        except NotShareable as e:
            say(self.connector, where, f"⛔ {e.detail}")
            return
        message_id = post(self.connector, where, card_activity(answer_card(answer)))
        if message_id:
            self.state.link_answer(action.conversation.base_id, message_id, answer.answer_id)

    def _on_members(self, event: MembersChanged) -> None:
        if event.bot_removed:
            self.state.forget_place(PLATFORM, self.scope(event.conversation))
            return
        self._members.forget(members_conversation(event.conversation))
        if event.bot_added:
            self._remember(event.conversation)
            say(self.connector, Where(event.conversation.service_url, event.conversation.base_id), GREETING)

    def _on_deleted(self, event: MessageDeleted) -> None:
        """A deleted message takes the files it carried out of the conversation's scope."""
        scope = self.scope(event.conversation)
        for task in self.state.recent_tasks(scope, "ingest", limit=500):
            if task.thread == event.activity_id and task.file_id:
                forget_file(self.engine, PLATFORM, task.file_id, only_in=[scope])


def _fetch_of(m: Message, f: FileAttachment | SharedFile) -> tuple[str, dict[str, Any]]:
    """A dropped file's id and how the worker fetches it: its own download link (a file sent to IMP), or its
    place in SharePoint, resolved through Graph when the task runs (the link it gives is short-lived)."""
    if isinstance(f, SharedFile):
        return f.item_id, {"shared_url": f.url, PLACE: place_of(m.conversation, m.user)}
    return f.unique_id, {"download_url": f.download_url}
