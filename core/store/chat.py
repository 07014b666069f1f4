"""State a chat front door (Slack, Teams) keeps between requests and across restarts.

- which posted message carries which answer, so reactions become feedback;
- long tasks (ingest a shared file, write minutes) from request to posted result.

Platform-neutral: channels, users and message timestamps are opaque strings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from core.errors import NotFound
from core.store.registry import DocumentRegistry
from core.store.schema import ChatPostRow, ChatTaskRow


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class ChatTask:
    task_id: str
    kind: str  # "ingest" or "minutes"
    channel: str
    user: str
    thread_ts: str | None
    status_ts: str | None  # the message that shows progress, when one was posted
    file_id: str | None
    file_name: str | None
    state: str  # new, submitted, done, failed
    job_id: str | None
    error: str | None
    data: dict[str, Any] = field(default_factory=dict)


def _task(r: ChatTaskRow) -> ChatTask:
    return ChatTask(r.task_id, r.kind, r.channel, r.user, r.thread_ts, r.status_ts, r.file_id, r.file_name,
                    r.state, r.job_id, r.error, dict(r.data or {}))


class ChatState:
    def __init__(self, registry: DocumentRegistry):
        self._registry = registry

    # -- answers posted ------------------------------------------------------------

    def link_answer(self, channel: str, ts: str, answer_id: str) -> None:
        with self._registry.session() as s, s.begin():
            s.merge(ChatPostRow(channel=channel, ts=ts, answer_id=answer_id, created_at=_now()))

    def answer_at(self, channel: str, ts: str) -> str | None:
        """The answer a posted message carries, or None for any other message."""
        with self._registry.session() as s:
            row = s.get(ChatPostRow, (channel, ts))
            return row.answer_id if row else None

    # -- long tasks ----------------------------------------------------------------

    def add_task(self, kind: str, channel: str, user: str, *, thread_ts: str | None = None,
                 status_ts: str | None = None, file_id: str | None = None, file_name: str | None = None,
                 data: dict[str, Any] | None = None) -> ChatTask:
        now = _now()
        row = ChatTaskRow(task_id=uuid.uuid4().hex, kind=kind, channel=channel, user=user, thread_ts=thread_ts,
                          status_ts=status_ts, file_id=file_id, file_name=file_name, state="new", job_id=None,
                          error=None, data=data or {}, created_at=now, updated_at=now)
        with self._registry.session() as s, s.begin():
            s.add(row)
        return _task(row)

    def update_task(self, task_id: str, **changes: Any) -> ChatTask:
        with self._registry.session() as s, s.begin():
            row = s.get(ChatTaskRow, task_id)
            if row is None:
                raise NotFound(f"no chat task {task_id!r}")
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = _now()
            return _task(row)

    def task(self, task_id: str) -> ChatTask:
        with self._registry.session() as s:
            row = s.get(ChatTaskRow, task_id)
            if row is None:
                raise NotFound(f"no chat task {task_id!r}")
            return _task(row)

    def open_tasks(self) -> list[ChatTask]:
        """Tasks not yet done or failed, oldest first."""
        with self._registry.session() as s:
            rows = s.scalars(select(ChatTaskRow).where(ChatTaskRow.state.in_(("new", "submitted")))
                             .order_by(ChatTaskRow.created_at))
            return [_task(r) for r in rows]
