"""What the chat front doors (Slack, Teams) keep between requests and across restarts, in the database.

- which posted message carries which answer, so a reaction to it becomes feedback;
- long tasks (index a shared file, write minutes) from the request to the posted result;
- the conversations IMP has been seen in, so a 1:1 chat can be answered from those its asker is in.

Platform-neutral: conversations, users and message ids are opaque strings (a Slack channel id and a
message ``ts``, a Teams conversation id and activity id); what only one platform needs to find a place
again (Teams' service URL) rides in a task's ``data`` or a place's ``address``.

The tables are the chat layer's own (its own SQLAlchemy metadata), created on first use in the engine's
database. Their names and columns are those IMP has always used (``thread_ts``, ``status_ts``), so an
existing database keeps its tasks; only the Python names are neutral. Retention (core/store/retention.py)
reaches them through the ``RetentionParticipant`` methods at the end, never by importing this module.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import JSON, DateTime, String, Text, delete, func, inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from core.errors import NotFound

NEW, SUBMITTED, DONE, FAILED = "new", "submitted", "done", "failed"
OPEN = (NEW, SUBMITTED)


class Sessions(Protocol):
    """Where the engine's database hands out sessions (the engine's registry, or its database handle)."""

    def session(self) -> AbstractContextManager[Session]: ...


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class _Base(DeclarativeBase):
    pass


class PostRow(_Base):
    """A chat message that carries an answer."""

    __tablename__ = "chat_posts"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[str] = mapped_column(String(64), primary_key=True)
    answer_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class TaskRow(_Base):
    """Long chat work: ``state`` is new (file not yet fetched), submitted (an engine job runs), done or failed."""

    __tablename__ = "chat_tasks"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    thread: Mapped[str | None] = mapped_column("thread_ts", String(64), nullable=True)
    status: Mapped[str | None] = mapped_column("status_ts", String(64), nullable=True)
    file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    file_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class PlaceRow(_Base):
    """A conversation IMP was seen in (Teams: a channel or group chat; the 1:1 chat's scopes come from these)."""

    __tablename__ = "chat_places"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    channel: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    address: Mapped[dict] = mapped_column(JSON, default=dict)
    seen_at: Mapped[datetime] = mapped_column(DateTime, index=True)


@dataclass
class ChatTask:
    task_id: str
    kind: str  # "ingest" or "minutes"
    channel: str
    user: str
    thread: str | None  # the thread replies go to
    status: str | None  # the message that shows progress, when one was posted
    file_id: str | None
    file_name: str | None
    state: str  # new, submitted, done, failed
    job_id: str | None
    error: str | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> str:
        return str(self.data.get("platform") or "slack")  # tasks stored before Teams came are Slack's


@dataclass(frozen=True)
class Place:
    platform: str
    channel: str
    kind: str
    address: dict[str, Any]


def _task(r: TaskRow) -> ChatTask:
    return ChatTask(r.task_id, r.kind, r.channel, r.user, r.thread, r.status, r.file_id, r.file_name,
                    r.state, r.job_id, r.error, dict(r.data or {}))


class ChatState:
    def __init__(self, db: Sessions):
        self._db = db
        self._ready = False
        self._lock = threading.Lock()

    def _session(self) -> AbstractContextManager[Session]:
        self._ensure_tables()
        return self._db.session()

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            with self._db.session() as s:
                bind = s.get_bind()
            for table in _Base.metadata.sorted_tables:
                try:
                    table.create(bind, checkfirst=True)
                except DBAPIError:  # another process created it first
                    if not inspect(bind).has_table(table.name):
                        raise
            self._ready = True

    # -- answers posted ------------------------------------------------------------

    def link_answer(self, channel: str, ts: str, answer_id: str) -> None:
        with self._session() as s, s.begin():
            s.merge(PostRow(channel=channel, ts=ts, answer_id=answer_id, created_at=_now()))

    def answer_at(self, channel: str, ts: str) -> str | None:
        """The answer a posted message carries, or None for any other message."""
        with self._session() as s:
            row = s.get(PostRow, (channel, ts))
            return row.answer_id if row else None

    # -- long tasks ----------------------------------------------------------------

    def add_task(self, kind: str, channel: str, user: str, *, thread: str | None = None, status: str | None = None,
                 file_id: str | None = None, file_name: str | None = None, data: dict[str, Any] | None = None,
                 platform: str = "slack") -> ChatTask:
        now = _now()
        data = {**(data or {}), "platform": platform}
        row = TaskRow(task_id=uuid.uuid4().hex, kind=kind, channel=channel, user=user, thread=thread, status=status,
                      file_id=file_id, file_name=file_name, state=NEW, job_id=None, error=None, data=data,
                      created_at=now, updated_at=now)
        with self._session() as s, s.begin():
            s.add(row)
        return _task(row)

    def update_task(self, task_id: str, **changes: Any) -> ChatTask:
        with self._session() as s, s.begin():
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFound(f"no chat task {task_id!r}")
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = _now()
            return _task(row)

    def task(self, task_id: str) -> ChatTask:
        with self._session() as s:
            row = s.get(TaskRow, task_id)
            if row is None:
                raise NotFound(f"no chat task {task_id!r}")
            return _task(row)

    def open_tasks(self, platform: str | None = None) -> list[ChatTask]:
        """Tasks not yet done or failed, oldest first (only ``platform``'s when given)."""
        q = select(TaskRow).where(TaskRow.state.in_(OPEN)).order_by(TaskRow.created_at)
        with self._session() as s:
            tasks = [_task(r) for r in s.scalars(q)]
        return [t for t in tasks if platform is None or t.platform == platform]

    def recent_tasks(self, channel: str, kind: str, limit: int = 50) -> list[ChatTask]:
        """The newest tasks of ``kind`` in ``channel``, newest first (the files dropped there, for /minutes)."""
        q = (select(TaskRow).where(TaskRow.channel == channel, TaskRow.kind == kind)
             .order_by(TaskRow.created_at.desc()).limit(limit))
        with self._session() as s:
            return [_task(r) for r in s.scalars(q)]

    # -- places ----------------------------------------------------------------------

    def seen(self, platform: str, channel: str, kind: str, address: dict[str, Any]) -> None:
        with self._session() as s, s.begin():
            s.merge(PlaceRow(platform=platform, channel=channel, kind=kind, address=address, seen_at=_now()))

    def forget_place(self, platform: str, channel: str) -> None:
        with self._session() as s, s.begin():
            s.execute(delete(PlaceRow).where(PlaceRow.platform == platform, PlaceRow.channel == channel))

    def places(self, platform: str, limit: int = 5000) -> list[Place]:
        """The conversations last seen on ``platform``, most recent first."""
        q = select(PlaceRow).where(PlaceRow.platform == platform).order_by(PlaceRow.seen_at.desc()).limit(limit)
        with self._session() as s:
            return [Place(r.platform, r.channel, r.kind, dict(r.address or {})) for r in s.scalars(q)]

    # -- retention (core.store.retention.RetentionParticipant) ---------------------------

    kind = "chat_posts"

    def in_use(self, s: Session) -> tuple[set[str], set[str]]:
        """The jobs and documents open tasks still wait on: kept by a purge whatever their age."""
        self._ensure_tables()
        jobs: set[str] = set()
        docs: set[str] = set()
        for job_id, data in s.execute(select(TaskRow.job_id, TaskRow.data).where(TaskRow.state.in_(OPEN))):
            if job_id:
                jobs.add(job_id)
            doc = (data or {}).get("doc_id") if isinstance(data, dict) else None
            if isinstance(doc, str):
                docs.add(doc)
        return jobs, docs

    def carried_in(self, s: Session, answer_ids: list[str], channels: list[str]) -> set[str]:
        """Which of these answers were posted in one of ``channels``."""
        self._ensure_tables()
        q = select(PostRow.answer_id).where(PostRow.answer_id.in_(answer_ids), PostRow.channel.in_(channels))
        return set(s.scalars(q.distinct()))

    def forget_answers(self, s: Session, answer_ids: list[str], dry_run: bool) -> int:
        """Drop (dry: count) the links of messages to these answers; how many."""
        self._ensure_tables()
        where = PostRow.answer_id.in_(answer_ids)
        if dry_run:
            return int(s.scalar(select(func.count()).select_from(PostRow).where(where)) or 0)
        return int(s.execute(delete(PostRow).where(where)).rowcount or 0)
