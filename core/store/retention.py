"""Retention: what is older than a cut-off goes (answers, feedback, transcripts, stored upload
originals, finished jobs), except what belongs to a scope under legal hold or what running work needs.

Rows go in bounded batches, one short transaction each, so a large purge never holds the
database; every write transaction starts with its write statement (see core.store.registry).
A file goes only after the rows that pointed at it are committed as no longer doing so, so
no row ever points at a missing file. Running it again removes nothing more: it is idempotent.
A document whose original goes stays searchable (its chunks stay); only ``stored_path`` is cleared.
Every real purge is recorded in ``retention_runs`` and logged with counts only, never content.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.errors import BackendError, InvalidRequest, NotFound
from core.models import SCOPE_PATTERN, JobStatus
from core.store.database import Database
from core.store.schema import (
    AnswerRow,
    DocumentRow,
    FeedbackRow,
    JobRow,
    LegalHoldRow,
    RetentionRunRow,
    TranscriptRow,
)

log = logging.getLogger(__name__)

# What a purge counts, in this order (a bounded set: safe as a metric label).
KINDS = ("answers", "chat_posts", "feedback", "transcripts", "uploads", "jobs", "files")
BATCH = 500  # rows per transaction
MAX_DAYS = 36500
MAX_REASON = 500
_SCOPE_RE = re.compile(SCOPE_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FINISHED = (JobStatus.DONE.value, JobStatus.FAILED.value)
_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_STAGING = ".staging-"  # core.uploads.STAGING (core.uploads sits above the store)


class RetentionParticipant(Protocol):
    """State kept above core (the chat layer's message links and tasks) that points at answers, jobs and
    documents: a purge keeps what it still needs and removes its links to what goes, in the same session."""

    kind: str  # what its removals are counted as (one of KINDS)

    def in_use(self, s: Session) -> tuple[set[str], set[str]]:
        """Job ids and document ids its unfinished work still needs."""
        ...

    def carried_in(self, s: Session, answer_ids: list[str], channels: list[str]) -> set[str]:
        """Which of these answers it posted in one of these channels (scopes)."""
        ...

    def forget_answers(self, s: Session, answer_ids: list[str], dry_run: bool) -> int:
        """Drop (dry: count) what refers to these answers; how many."""
        ...


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def check_hold_scope(scope: str) -> str:
    if not isinstance(scope, str) or not _SCOPE_RE.fullmatch(scope):
        raise InvalidRequest(f"invalid scope {scope!r}: use letters, digits and _ . : @ - (at most 200)")
    return scope


@dataclass(frozen=True, slots=True)
class LegalHold:
    """A scope whose answers, feedback, transcripts and uploads retention keeps."""

    scope: str
    reason: str
    since: datetime

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "reason": self.reason, "since": self.since.isoformat()}


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one purge removed (or, dry, would remove): counts per kind, never content."""

    ran_at: datetime
    cutoff: datetime
    days: int
    dry_run: bool
    purged: dict[str, int]
    held: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.purged.values())

    def to_json(self) -> dict[str, Any]:
        return {"ran_at": self.ran_at.isoformat(), "cutoff": self.cutoff.isoformat(), "days": self.days,
                "dry_run": self.dry_run, "purged": dict(self.purged), "held": list(self.held)}


@dataclass(slots=True)
class _Pass:
    """One purge in progress: the cut-off, what is kept, and the counts so far."""

    cutoff: datetime
    now: datetime
    dry_run: bool
    held: frozenset[str]
    busy_docs: frozenset[str]  # documents a queued or running job (or chat task) reads
    busy_jobs: frozenset[str]  # jobs a chat task still waits on
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


class Retention:
    """Legal holds, and the purge of what is older than a number of days."""

    def __init__(self, database: Database, files_dir: Path, *, batch: int = BATCH,
                 clock: Callable[[], datetime] = _now, participants: Iterable[RetentionParticipant] = ()):
        self._db = database
        self._participants = tuple(participants)
        self._files = Path(os.path.abspath(files_dir))
        self._batch = max(1, batch)
        self._clock = clock

    def _session(self) -> Session:
        return self._db.session()

    # -- legal holds -----------------------------------------------------------------

    def hold(self, scope: str, reason: str = "") -> LegalHold:
        """Put ``scope`` under legal hold (again: the reason is updated, the date it began kept)."""
        check_hold_scope(scope)
        reason = _CONTROL.sub(" ", reason or "").strip()
        if len(reason) > MAX_REASON:
            raise InvalidRequest(f"a reason is at most {MAX_REASON} characters")
        values = {"scope": scope, "reason": reason, "since": self._clock()}
        with self._session() as s, s.begin():
            dialect = s.get_bind().dialect.name
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite_insert if dialect == "sqlite" else pg_insert
                q = insert(LegalHoldRow.__table__).values(values)
                s.execute(q.on_conflict_do_update(index_elements=["scope"], set_={"reason": q.excluded.reason}))
            elif (row := s.get(LegalHoldRow, scope)) is None:
                s.add(LegalHoldRow(**values))
            else:
                row.reason = reason
        with self._session() as s:
            row = s.get(LegalHoldRow, scope)
            log.info("legal hold placed on scope %s", scope)
            return LegalHold(row.scope, row.reason, row.since)

    def release(self, scope: str) -> LegalHold:
        """Lift the hold on ``scope``; NotFound when it has none."""
        check_hold_scope(scope)
        with self._session() as s, s.begin():
            row = s.get(LegalHoldRow, scope)
            if row is None:
                raise NotFound(f"scope {scope!r} is not under legal hold")
            hold = LegalHold(row.scope, row.reason, row.since)
            s.delete(row)
        log.info("legal hold lifted from scope %s", scope)
        return hold

    def holds(self) -> list[LegalHold]:
        with self._session() as s:
            rows = s.scalars(select(LegalHoldRow).order_by(LegalHoldRow.scope))
            return [LegalHold(r.scope, r.reason, r.since) for r in rows]

    def runs(self, limit: int = 20) -> list[PurgeReport]:
        """The recorded purges, newest first."""
        with self._session() as s:
            rows = s.scalars(select(RetentionRunRow).order_by(RetentionRunRow.ran_at.desc(), RetentionRunRow.id.desc())
                             .limit(max(1, min(limit, 1000))))
            return [PurgeReport(r.ran_at, r.cutoff, (r.ran_at - r.cutoff).days, False,
                                {k: int((r.purged or {}).get(k, 0)) for k in KINDS}) for r in rows]

    # -- the purge ---------------------------------------------------------------------

    def purge(self, days: int, *, dry_run: bool = False) -> PurgeReport:
        """Remove what is older than ``days`` days (with ``dry_run``, only count it).

        BackendError when the database fails; what went before that stays gone (each batch
        is committed on its own) and is logged.
        """
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise InvalidRequest(f"days is a whole number from 1 to {MAX_DAYS}")
        now = _naive_utc(self._clock())
        run = None
        try:
            run = self._start(now - timedelta(days=days), now, dry_run)
            for step in (self._answers, self._feedback, self._transcripts, self._jobs, self._uploads):
                step(run)
        except SQLAlchemyError as e:
            if run is not None and not dry_run:
                log.error("retention purge stopped by a database error after %s", _counts(run.counts))
            raise BackendError(f"the retention purge failed on the database ({type(e).__name__})") from e
        report = PurgeReport(now, run.cutoff, days, dry_run, dict(run.counts), tuple(sorted(run.held)))
        if dry_run:
            log.info("retention dry run (cut-off %s): would purge %s", run.cutoff.isoformat(), _counts(run.counts))
            return report
        try:
            with self._session() as s, s.begin():
                s.add(RetentionRunRow(ran_at=now, cutoff=run.cutoff, purged=dict(run.counts)))
        except SQLAlchemyError as e:
            raise BackendError(f"the retention purge ran but could not be recorded ({type(e).__name__})") from e
        log.info("retention purge (cut-off %s, %d scopes held): %s", run.cutoff.isoformat(), len(run.held),
                 _counts(run.counts))
        return report

    def _start(self, cutoff: datetime, now: datetime, dry_run: bool) -> _Pass:
        """What stays whatever its age: held scopes, and what queued or running work needs."""
        with self._session() as s:
            held = frozenset(s.scalars(select(LegalHoldRow.scope)))
            docs: set[str] = set()
            jobs: set[str] = set()
            for doc_id, params in s.execute(select(JobRow.doc_id, JobRow.params).where(JobRow.status.in_(_UNFINISHED))):
                docs.update(d for d in (doc_id, _get(params, "doc_id")) if isinstance(d, str))
            for participant in self._participants:
                needed_jobs, needed_docs = participant.in_use(s)
                jobs.update(needed_jobs)
                docs.update(needed_docs)
        return _Pass(cutoff, now, dry_run, held, frozenset(docs), frozenset(jobs))

    def _answers(self, run: _Pass) -> None:
        """Answers older than the cut-off, with the messages that carried them and every rating of them."""
        after: tuple[datetime, str] | None = None
        while True:
            q = select(AnswerRow.answer_id, AnswerRow.created_at, AnswerRow.scopes).where(
                AnswerRow.created_at < run.cutoff)
            if after is not None:
                q = q.where(or_(AnswerRow.created_at > after[0],
                                and_(AnswerRow.created_at == after[0], AnswerRow.answer_id > after[1])))
            with self._session() as s:
                rows = s.execute(q.order_by(AnswerRow.created_at, AnswerRow.answer_id).limit(self._batch)).all()
                if not rows:
                    return
                after = (rows[-1].created_at, rows[-1].answer_id)
                held = _held_answers(s, {r.answer_id: r.scopes for r in rows}, run.held, self._participants)
            ids = [r.answer_id for r in rows if r.answer_id not in held]
            if ids:
                with self._session() as s, s.begin():
                    run.counts["feedback"] += _remove(s, FeedbackRow, [FeedbackRow.answer_id.in_(ids)], run.dry_run)
                    for participant in self._participants:
                        run.counts[participant.kind] += participant.forget_answers(s, ids, run.dry_run)
                    run.counts["answers"] += _remove(s, AnswerRow, [AnswerRow.answer_id.in_(ids),
                                                                    AnswerRow.created_at < run.cutoff], run.dry_run)

    def _feedback(self, run: _Pass) -> None:
        """Ratings older than the cut-off, unless given in a held scope or of an answer that is held."""
        after = 0
        while True:
            q = (select(FeedbackRow.id, FeedbackRow.answer_id, FeedbackRow.channel)
                 .where(FeedbackRow.created_at < run.cutoff, FeedbackRow.id > after)
                 .order_by(FeedbackRow.id).limit(self._batch))
            with self._session() as s:
                rows = s.execute(q).all()
                if not rows:
                    return
                after = rows[-1].id
                answers = {a.answer_id: a for a in s.execute(
                    select(AnswerRow.answer_id, AnswerRow.scopes, AnswerRow.created_at)
                    .where(AnswerRow.answer_id.in_(sorted({r.answer_id for r in rows}))))}
                held = _held_answers(s, {a: r.scopes for a, r in answers.items()}, run.held, self._participants)
            # A dry run left the old answers in place: their ratings were counted with them already.
            counted = {a for a, r in answers.items() if run.dry_run and r.created_at < run.cutoff and a not in held}
            ids = [r.id for r in rows
                   if r.channel not in run.held and r.answer_id not in held and r.answer_id not in counted]
            if ids:
                with self._session() as s, s.begin():
                    run.counts["feedback"] += _remove(s, FeedbackRow, [FeedbackRow.id.in_(ids)], run.dry_run)

    def _transcripts(self, run: _Pass) -> None:
        """Transcripts older than the cut-off, unless their document is in a held scope or a job needs it."""
        after: tuple[str, str] | None = None
        while True:
            q = (select(TranscriptRow.doc_id, TranscriptRow.version, DocumentRow.scope)
                 .outerjoin(DocumentRow, DocumentRow.doc_id == TranscriptRow.doc_id)
                 .where(TranscriptRow.created_at < run.cutoff))
            if after is not None:
                q = q.where(or_(TranscriptRow.doc_id > after[0],
                                and_(TranscriptRow.doc_id == after[0], TranscriptRow.version > after[1])))
            with self._session() as s:
                rows = s.execute(q.order_by(TranscriptRow.doc_id, TranscriptRow.version).limit(self._batch)).all()
            if not rows:
                return
            after = (rows[-1].doc_id, rows[-1].version)
            versions: dict[str, list[str]] = {}
            for r in rows:
                if r.scope not in run.held and r.doc_id not in run.busy_docs:
                    versions.setdefault(r.doc_id, []).append(r.version)
            if versions:
                with self._session() as s, s.begin():
                    for doc_id, vs in versions.items():  # a document has one or two versions: one statement each
                        run.counts["transcripts"] += _remove(s, TranscriptRow, [
                            TranscriptRow.doc_id == doc_id, TranscriptRow.version.in_(vs),
                            TranscriptRow.created_at < run.cutoff], run.dry_run)

    def _jobs(self, run: _Pass) -> None:
        """Finished jobs last updated before the cut-off, then any upload a crash left behind for them."""
        after = ""
        while True:
            q = (select(JobRow.job_id, JobRow.scope, JobRow.params)
                 .where(JobRow.status.in_(_FINISHED), JobRow.updated_at < run.cutoff, JobRow.job_id > after)
                 .order_by(JobRow.job_id).limit(self._batch))
            with self._session() as s:
                rows = s.execute(q).all()
            if not rows:
                return
            after = rows[-1].job_id
            gone = [r for r in rows if r.scope not in run.held and r.job_id not in run.busy_jobs]
            if not gone:
                continue
            with self._session() as s, s.begin():
                run.counts["jobs"] += _remove(s, JobRow, [JobRow.job_id.in_([r.job_id for r in gone]),
                                                          JobRow.status.in_(_FINISHED)], run.dry_run)
            # The rows that named these files are committed gone: now the files may go.
            folders = [f for r in gone if (f := self._job_folder(_get(r.params, "path"))) is not None]
            run.counts["files"] += _remove_folders(folders, run.dry_run)

    def _uploads(self, run: _Pass) -> None:
        """Stored originals of documents unchanged since before the cut-off; the document stays searchable."""
        after = ""
        while True:
            q = (select(DocumentRow.doc_id, DocumentRow.scope, DocumentRow.stored_path)
                 .where(DocumentRow.stored_path.is_not(None), DocumentRow.updated_at < run.cutoff,
                        DocumentRow.pending_version.is_(None),  # being re-indexed: its upload settles it
                        or_(DocumentRow.writer.is_(None), DocumentRow.writer_until < run.now),
                        DocumentRow.doc_id > after)
                 .order_by(DocumentRow.doc_id).limit(self._batch))
            with self._session() as s:
                rows = s.execute(q).all()
            if not rows:
                return
            after = rows[-1].doc_id
            gone = [(r.doc_id, r.stored_path, folder) for r in rows
                    if r.scope not in run.held and r.doc_id not in run.busy_docs
                    and (folder := self._upload_folder(r.doc_id, r.stored_path)) is not None]
            if not gone:
                continue
            if run.dry_run:
                run.counts["uploads"] += len(gone)
                run.counts["files"] += _remove_folders([f for *_, f in gone], dry_run=True)
                continue
            cleared = []
            with self._session() as s, s.begin():
                for doc_id, stored, folder in gone:
                    # Only if it still points there: a new version committed meanwhile keeps its own file.
                    q = (update(DocumentRow).where(DocumentRow.doc_id == doc_id, DocumentRow.stored_path == stored,
                                                   DocumentRow.pending_version.is_(None))
                         .values(stored_path=None))
                    if s.execute(q).rowcount:
                        cleared.append(folder)
            run.counts["uploads"] += len(cleared)
            run.counts["files"] += _remove_folders(cleared, dry_run=False)

    # -- which files are ours to remove -------------------------------------------------

    def _upload_folder(self, doc_id: str, stored: str | None) -> Path | None:
        """The folder an upload of ``doc_id`` was placed in (``files/<doc_id>/<id>/<name>``), or None
        when ``stored`` is anywhere else: retention removes only what IMP itself stored."""
        if not stored:
            return None
        folder = Path(os.path.abspath(stored)).parent
        if folder.parent != self._files / doc_id or folder.name.startswith((_STAGING, ".")):
            return None
        return folder

    def _job_folder(self, path: Any) -> Path | None:
        """A finished job's own upload folder if a crash left it behind: a staged upload
        (``files/<doc_id>/.staging-<id>``) or a minutes input (``files/minutes/<id>``); never a
        placed upload, which is a document's original."""
        if not isinstance(path, str) or not path:
            return None
        folder = Path(os.path.abspath(path)).parent
        if folder.parent.parent != self._files or folder.name in ("", ".", ".."):
            return None
        if folder.parent.name == "minutes" or folder.name.startswith(_STAGING):
            return folder
        return None


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={counts.get(k, 0)}" for k in KINDS)


def _remove(s: Session, table: type, where: list, dry_run: bool) -> int:
    """Delete the rows of ``table`` matching ``where``, or (dry) count them; how many."""
    if dry_run:
        return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)
    return int(s.execute(delete(table).where(*where)).rowcount or 0)


def _remove_folders(folders: Iterable[Path], dry_run: bool) -> int:
    """Remove upload folders (or, dry, count those present); how many went."""
    removed = 0
    for folder in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():
                log.warning("could not remove an upload folder retention released: %s", folder.name)
                continue
        removed += 1
    return removed


def _held_answers(s: Session, scopes: dict[str, Any], held: frozenset[str],
                  participants: tuple[RetentionParticipant, ...]) -> set[str]:
    """Which of these answers belong to a held scope: answered from one, or carried or rated in one."""
    if not held or not scopes:
        return set()
    out = {a for a, sc in scopes.items() if isinstance(sc, list) and held.intersection(x for x in sc
                                                                                        if isinstance(x, str))}
    rest = [a for a in scopes if a not in out]
    if rest:
        q = select(FeedbackRow.answer_id).where(FeedbackRow.answer_id.in_(rest),
                                                FeedbackRow.channel.in_(sorted(held))).distinct()
        out.update(s.scalars(q))
        for participant in participants:
            out.update(participant.carried_in(s, rest, sorted(held)))
    return out
