"""SQLAlchemy table definitions of IMP's relational state; their migrations are in core/store/migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    __tablename__ = "documents"

    doc_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The content hash whose chunks search may show. A new version becomes
    # visible only when this column changes, in one transaction.
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pending_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Embedder and chunking parameters the committed version was built with.
    index_signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    embedding_model: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    segments: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stored_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # Concurrent ingests of one document (see DocumentRegistry): each takes the next
    # attempt number; the newest attempt that succeeds is the visible version, and
    # ``status`` reports the newest attempt that got as far as reporting.
    attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    committed_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The one writer allowed to change this document's chunks and vectors, and until when.
    writer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    writer_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ChunkRow(Base):
    __tablename__ = "chunks"

    chunk_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    page_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    page_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    start: Mapped[float | None] = mapped_column(Float, nullable=True)
    end: Mapped[float | None] = mapped_column(Float, nullable=True)
    speakers: Mapped[list] = mapped_column(JSON, default=list)


class MetaRow(Base):
    """Small key/value facts, such as the generation counter of committed content."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AnswerRow(Base):
    """Every answer given, so feedback can attach to it later."""

    __tablename__ = "answers"

    answer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    search_query: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    abstained: Mapped[bool] = mapped_column(default=False)
    citations: Mapped[list] = mapped_column(JSON, default=list)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    model: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(Text, nullable=True)
    timings_ms: Mapped[dict] = mapped_column(JSON, default=dict)
    notes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # The served versions that produced it (core.index.serving): embedder that retrieved, answer adapter.
    embedder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    adapter: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Cosine similarity of the best retrieved chunk (monitoring: a falling best match is drift).
    best_similarity: Mapped[float | None] = mapped_column(Float, nullable=True)


class TranscriptRow(Base):
    """What a recording said, per document version (core.formats.transcripts's JSON shape)."""

    __tablename__ = "transcripts"

    doc_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class JobRow(Base):
    """Background work and its progress, so any front door (and a restarted one) can report it."""

    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    doc_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(Text, default="")
    done: Mapped[float] = mapped_column(Float, default=0.0)
    total: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the job needs to run again after a restart (stored file, scope, format).
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # The service process running it and until when its claim holds (renewed while it runs): replicas sharing
    # one database each run their own jobs, and take over another's only once its claim has lapsed.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    owner_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class FeedbackRow(Base):
    """A rating of an answer. A retracted rating keeps its row, with the time it was taken back."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_active", "answer_id", "user", "rating", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    rating: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32), default="slack")
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ScheduleClaimRow(Base):
    """One scheduled run of a job for one time window; the primary key lets a single replica claim it."""

    __tablename__ = "schedule_claims"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "2026-12-02" for a nightly job
    owner: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)


class ServedModelRow(Base):
    """Which model version each slot serves (core.store.served); every change bumps a generation counter."""

    __tablename__ = "served_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # "imp-embedder", "imp-answer-adapter"
    slot: Mapped[str] = mapped_column(String(16), primary_key=True)  # "champion" or "challenger"
    version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: the configured (base) model
    model_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    collection: Mapped[str | None] = mapped_column(String(64), nullable=True)
    since: Mapped[datetime] = mapped_column(DateTime)


class MonitorCheckRow(Base):
    """One run of the drift check (ops/monitor): every signal with its score, threshold and verdict."""

    __tablename__ = "monitor_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checked_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    window: Mapped[int] = mapped_column(Integer)
    # [{"name", "score", "threshold", "p_value", "drifted", "detail"}]
    signals: Mapped[list] = mapped_column(JSON, default=list)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AlertRow(Base):
    """One incident per signal: opened when the signal first trips, resolved when it clears."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signal: Mapped[str] = mapped_column(String(64), index=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    # Where the opening (and resolving) message went, or why it did not: "webhook", "channel", errors.
    delivered: Mapped[list] = mapped_column(JSON, default=list)


class LegalHoldRow(Base):
    """A scope under legal hold: retention never purges what belongs to it."""

    __tablename__ = "legal_holds"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime] = mapped_column(DateTime)


class RetentionRunRow(Base):
    """One purge: when, the cut-off, and how many of each kind were removed."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ran_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    cutoff: Mapped[datetime] = mapped_column(DateTime)
    purged: Mapped[dict] = mapped_column(JSON, default=dict)  # {"answers": n, "feedback": n, ...}
