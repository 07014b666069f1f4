"""Domain types passed between stages. Typed dataclasses, never bare dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

DEFAULT_SCOPE = "default"
# What a scope (an access label, e.g. a Slack channel id) may be made of: settings and the engine check it.
SCOPE_PATTERN = r"^[A-Za-z0-9_.:@-]{1,200}$"
# A token's scope list holding this opens every scope.
ALL_SCOPES = "*"


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a document's text with where it came from.

    Loaders yield segments in reading order. ``page`` is a PDF page or a
    presentation slide (1-based); ``start``/``end`` are seconds into a recording.
    """

    text: str
    page: int | None = None
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    section: str | None = None


@dataclass(frozen=True, slots=True)
class Word:
    """A recognised word with its time span (seconds) and the recogniser's confidence (0–1)."""

    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """A stretch of recognised speech: a sentence or a phrase, one speaker.

    Times are seconds from the start of the recording. ``speaker`` is None
    when the speaker is unknown (mono recording, diarization off or unsure).
    """

    start: float
    end: float
    text: str
    speaker: str | None = None
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a recording said: its duration, language and ordered segments."""

    duration: float
    language: str | None
    segments: list[SpeechSegment]
    model: str = ""
    # How speakers were assigned: "channels", "diarization", or "none" (and why, in notes).
    speakers: str = "none"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Turn:
    """One speaker turn of a meeting, numbered from 1 in order.

    ``start``/``end`` are seconds when the meeting was recorded or its transcript
    is timed (WebVTT, SRT, ``imp transcribe`` JSON); None for a plain text transcript.
    """

    index: int
    speaker: str | None
    text: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True, slots=True)
class Meeting:
    """A meeting transcript ready for minutes: its turns, and what is known about it."""

    turns: list[Turn]
    title: str | None = None
    date: str | None = None  # ISO 8601 (YYYY-MM-DD) when known from metadata
    source: str | None = None

    @property
    def timed(self) -> bool:
        return bool(self.turns) and all(t.start is not None for t in self.turns)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Words of the transcript that support a minutes item, copied verbatim from one turn.

    ``start``/``end`` are seconds for a timed meeting, else the turn number (both the same).
    """

    quote: str
    turn: int
    start: float | None
    end: float | None
    speaker: str | None


@dataclass(frozen=True, slots=True)
class Topic:
    title: str
    start: float | None  # seconds, or the first turn number for an untimed meeting
    end: float | None  # seconds, or the last turn number


@dataclass(frozen=True, slots=True)
class Decision:
    text: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class ActionItem:
    task: str
    owner: str | None
    due: str | None  # ISO 8601 date when a due date was stated and could be resolved
    due_text: str | None  # the words that stated it ("by Friday")
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class OpenQuestion:
    text: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Minutes:
    """Structured minutes. Every decision, action item and open question has evidence."""

    title: str
    date: str | None
    attendees: list[str]
    summary: str
    topics: list[Topic]
    decisions: list[Decision]
    action_items: list[ActionItem]
    open_questions: list[OpenQuestion]
    timed: bool  # evidence and topics are in seconds (True) or turn numbers (False)
    model: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """What a loader produced from one file's bytes."""

    kind: str  # "pdf", "docx", … "vtt", "srt", "audio", "video"
    segments: list[Segment]
    title: str | None = None
    transcript: Transcript | None = None  # audio and video: what the recogniser produced


@dataclass(frozen=True, slots=True)
class Chunk:
    """A unit of retrieval: consecutive segments packed to the embedder's window."""

    chunk_id: str
    doc_id: str
    version: str  # content hash of the document version this chunk belongs to
    ordinal: int
    source: str
    scope: str
    text: str
    page_start: int | None = None
    page_end: int | None = None
    start: float | None = None
    end: float | None = None
    speakers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk returned by search, with its fused score and 1-based rank.

    ``similarity`` is the cosine similarity of query and chunk when the dense
    retriever found the chunk; it is comparable across queries, unlike ``score``.
    """

    chunk: Chunk
    score: float
    rank: int
    similarity: float | None = None


class DocStatus(str, Enum):
    INDEXING = "indexing"
    INDEXED = "indexed"
    FAILED = "failed"


class IngestStatus(str, Enum):
    INDEXED = "indexed"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome of ingesting one file, as the CLI and REST API report it."""

    doc_id: str
    source: str
    status: IngestStatus
    chunks: int = 0
    error: str | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A document as the registry knows it."""

    doc_id: str
    source: str
    scope: str
    status: DocStatus
    kind: str | None
    version: str | None  # the committed (searchable) content hash
    chunks: int
    pages: int | None
    duration: float | None
    size_bytes: int
    embedding_model: str | None
    error: str | None
    updated_at: datetime
    title: str | None = None
    segments: int = 0
    extra: dict = field(default_factory=dict)


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Job:
    """Background work (ingesting an upload, writing minutes) whose progress a front door can show.

    ``done``/``total`` count the current stage's units (seconds of audio while
    transcribing, windows while drafting minutes). ``result`` is the outcome as
    the API shows it (an ingest result, or minutes), set when the job ends.
    """

    job_id: str
    kind: str
    scope: str
    source: str
    doc_id: str | None
    status: JobStatus
    stage: str
    done: float
    total: float | None
    result: dict | None
    error: str | None
    params: dict
    created_at: datetime
    updated_at: datetime
    # The service process that runs it and until when its claim holds (core/store/jobs.py); internal, never shown.
    owner: str | None = None
    owner_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn: role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Citation:
    """A numbered source that supports part of an answer."""

    n: int
    chunk: Chunk


@dataclass(frozen=True, slots=True)
class Answer:
    """A validated answer: every [n] in ``text`` names one of ``citations``."""

    answer_id: str
    question: str
    text: str
    abstained: bool
    citations: list[Citation]
    scopes: list[str]
    model: str
    timings_ms: dict[str, float]
    created_at: datetime
    notes: list[str] = field(default_factory=list)
    # Sources deleted, unshared or replaced since the answer was given: read back, it no longer shows
    # them nor the sentences that rested on them (core.answer.redaction).
    removed_sources: int = 0
    # Which served models produced it (core.index.serving): the embedder version that retrieved
    # ("base" or a registry version such as "3"), and the answer adapter's version (None: no adapter in play).
    embedder: str | None = None
    adapter: str | None = None
    # Cosine similarity of the best retrieved chunk (None: keyword search only, or nothing retrieved).
    best_similarity: float | None = None


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model version in service: the champion answers; a challenger takes a share of questions (a canary).

    ``name`` is the registry name ("imp-embedder", "imp-answer-adapter"); version "base" is the
    configured or bundled model (``path`` None). ``collection`` is the embedder's vector collection.
    """

    name: str
    slot: str  # "champion" or "challenger"
    version: str
    path: str | None
    model_id: str | None
    since: datetime | None
    collection: str | None = None


@dataclass(frozen=True, slots=True)
class SwitchReport:
    """What serving a model version did: vectors embedded and deleted to bring its collection up to date."""

    name: str
    slot: str
    version: str
    previous_version: str | None
    embedded: int
    deleted: int
    seconds: float
    collection: str | None
    restart_required: bool = False  # the answer adapter is loaded at start: a restart applies it


@dataclass(frozen=True, slots=True)
class Feedback:
    """A person's rating of an answer: 1 (👍) or -1 (👎), given in a channel."""

    answer_id: str
    user: str
    channel: str
    rating: int
    created_at: datetime
    source: str = "slack"


@dataclass(frozen=True, slots=True)
class RatedAnswer:
    """An answer people rated, as training data sees it: no user, no channel.

    ``passages`` are the cited chunk texts in citation order; ``ups``/``downs`` count
    the ratings in force; ``rated_at`` is the latest of them (UTC, naive as stored);
    ``embedder`` is the model that retrieved the passages, when the log kept it.
    """

    answer_id: str
    question: str
    passages: tuple[str, ...]
    ups: int
    downs: int
    rated_at: datetime
    embedder: str | None = None
