"""JSON shapes of the public interfaces, shared by the REST API and the CLI's --json output.

Field names are a contract other tools rely on; change them only with care.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any, Literal

from fastapi import Request
from pydantic import BaseModel, Field

from bot.auth import Forbidden
from core.errors import (
    BackendError, Busy, CorruptDocument, DocumentTooLarge, EmptyDocument, ImpError, InvalidRequest, NotFound,
    UnsupportedFormat,
)
from core.formats.locations import locator
from core.models import DEFAULT_SCOPE, SCOPE_PATTERN, Answer, Chunk, DocumentRecord, Feedback, Hit, IngestResult, Job, Message

log = logging.getLogger(__name__)

# Error codes whose detail may hold server paths, SQL or library text: clients see a generic line.
INTERNAL_CODES = frozenset({"internal_error", "backend_error", "imp_error"})


# An access label (a channel id, "default"): the same rule the engine enforces, so the schema says it too.
Scope = Annotated[str, Field(pattern=SCOPE_PATTERN, min_length=1, max_length=200)]

def _located(c: Chunk) -> dict:
    """The fields that say where a chunk is, shared by hits and citations."""
    return {"doc_id": c.doc_id, "source": c.source, "text": c.text, "page": c.page_start, "start": c.start,
            "end": c.end, "speaker": ", ".join(c.speakers) if c.speakers else None, "scope": c.scope,
            "location": locator(c)}


class HitOut(BaseModel):
    rank: int
    doc_id: str
    source: str
    text: str
    score: float
    page: int | None = None
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    scope: str
    location: str = Field(description='Where, as people cite it: "call.mp4 [12:31–12:58] Speaker 2", "report.pdf, p. 4"')

    @classmethod
    def of(cls, hit: Hit) -> HitOut:
        return cls(rank=hit.rank, score=round(hit.score, 6), **_located(hit.chunk))


class SearchOut(BaseModel):
    hits: list[HitOut]


class SearchIn(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=5, ge=1, le=100)
    scopes: list[Scope] = Field(default_factory=lambda: [DEFAULT_SCOPE], min_length=1, max_length=1000)


class IngestResultOut(BaseModel):
    doc_id: str
    source: str
    status: str
    chunks: int
    error: str | None = None

    @classmethod
    def of(cls, r: IngestResult) -> IngestResultOut:
        return cls(doc_id=r.doc_id, source=r.source, status=r.status.value, chunks=r.chunks, error=r.error)


class IngestOut(BaseModel):
    documents: list[IngestResultOut]


class DocumentOut(BaseModel):
    doc_id: str
    source: str
    scope: str
    status: str
    kind: str | None = None
    title: str | None = None
    chunks: int
    pages: int | None = None
    duration: float | None = None
    size_bytes: int
    embedding_model: str | None = None
    error: str | None = None
    updated_at: str

    @classmethod
    def of(cls, d: DocumentRecord) -> DocumentOut:
        error = d.error
        if error and d.extra.get("error_code") in INTERNAL_CODES and "(ref " not in error:
            error = "internal error while indexing; the server log has the details"
        return cls(doc_id=d.doc_id, source=d.source, scope=d.scope, status=d.status.value, kind=d.kind,
                   title=d.title, chunks=d.chunks, pages=d.pages, duration=d.duration, size_bytes=d.size_bytes,
                   embedding_model=d.embedding_model, error=error, updated_at=d.updated_at.isoformat() + "Z")


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


class ErrorOut(BaseModel):
    """Every error the API answers: a stable machine-readable code and a reason for people."""

    code: str = Field(description="e.g. not_found, forbidden, unauthorized, too_large, invalid_request")
    detail: str


_ERROR_TEXT = {
    400: "Malformed request, or a Host this server does not answer for",
    401: "Missing or wrong bearer token",
    403: "The token does not open a scope the request names",
    404: "No such object, or none the token may see",
    413: "Request body or file above the size limit",
    429: "Too many background jobs are waiting; try again after Retry-After seconds",
    422: "The request does not match the schema, or a file cannot be read",
    500: "Internal error; the detail holds a reference to the server log line",
    503: "A backend (model, index, LLM server) is unavailable, or the server is busy (then with Retry-After)",
}


_STATUS: dict[type[ImpError], int] = {
    NotFound: 404,
    InvalidRequest: 400,
    Forbidden: 403,
    UnsupportedFormat: 422,
    CorruptDocument: 422,
    EmptyDocument: 422,
    DocumentTooLarge: 413,
    BackendError: 503,
    Busy: 429,
}


def public_error(e: Exception) -> tuple[int, str, str]:
    """(status, code, detail) to show a client. A 5xx is logged here with a reference the client gets,
    never its cause: backend and unexpected errors can hold server paths, SQL or library text."""
    status = next((s for cls, s in _STATUS.items() if isinstance(e, cls)), 500)
    if isinstance(e, ImpError) and status < 500:
        return status, e.code, e.detail
    ref = secrets.token_hex(4)
    if isinstance(e, ImpError):
        log.error("request failed (ref %s): %s: %s", ref, e.code, e.detail)
        if status == 503:
            return status, e.code, f"a backend is unavailable (ref {ref}); try again later"
        return status, "internal_error", f"internal error (ref {ref})"
    log.error("unhandled error (ref %s)", ref, exc_info=e)
    return 500, "internal_error", f"internal error (ref {ref})"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all of the ErrorOut shape."""
    return {s: {"model": ErrorOut, "description": _ERROR_TEXT[s]} for s in statuses}


class TurnIn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=8000)


class AskIn(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    scopes: list[Scope] = Field(default_factory=lambda: [DEFAULT_SCOPE], min_length=1, max_length=1000)
    history: list[TurnIn] = Field(default_factory=list, max_length=50)

    def messages(self) -> list[Message]:
        return [Message(t.role, t.content) for t in self.history]


class CitationOut(BaseModel):
    n: int
    doc_id: str
    source: str
    text: str
    page: int | None = None
    start: float | None = None
    end: float | None = None
    speaker: str | None = None
    scope: str
    location: str


class TimingsOut(BaseModel):
    retrieve: float
    generate: float
    total: float


class AnswerOut(BaseModel):
    answer_id: str
    answer: str
    abstained: bool
    citations: list[CitationOut]
    model: str
    timings_ms: TimingsOut
    removed_sources: int = Field(0, description="Sources deleted, unshared or replaced since the answer was given; "
                                 "neither they nor the sentences resting on them are shown")
    embedder: str | None = Field(None, description='Embedder version that retrieved the sources ("base" or a '
                                 "registered version)")
    adapter: str | None = Field(None, description="Answer adapter version the generator ran with, if any")

    @classmethod
    def of(cls, a: Answer) -> AnswerOut:
        cites = [CitationOut(n=c.n, **_located(c.chunk)) for c in a.citations]
        return cls(answer_id=a.answer_id, answer=a.text, abstained=a.abstained, citations=cites, model=a.model,
                   timings_ms=TimingsOut(**a.timings_ms), removed_sources=a.removed_sources,
                   embedder=a.embedder, adapter=a.adapter)


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: str = Field(description="queued, running, done or failed")
    stage: str = Field(description='What it is doing, e.g. "transcribing call.mp4"')
    done: float
    total: float | None = Field(None, description="Units of the stage (seconds of audio while transcribing)")
    scope: str
    source: str
    doc_id: str | None = None
    result: dict | None = Field(None, description="ingest: the document's ingest result; minutes: the minutes JSON")
    error: str | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, j: Job) -> JobOut:
        return cls(job_id=j.job_id, kind=j.kind, status=j.status.value, stage=j.stage, done=round(j.done, 2),
                   total=round(j.total, 2) if j.total is not None else None, scope=j.scope, source=j.source,
                   doc_id=j.doc_id, result=j.result, error=j.error,
                   created_at=j.created_at.isoformat() + "Z", updated_at=j.updated_at.isoformat() + "Z")


class JobsOut(BaseModel):
    jobs: list[JobOut]


class FeedbackOut(BaseModel):
    answer_id: str
    user: str
    channel: str
    rating: int = Field(description="1 for 👍, -1 for 👎")
    created_at: str

    @classmethod
    def of(cls, f: Feedback) -> FeedbackOut:
        return cls(answer_id=f.answer_id, user=f.user, channel=f.channel, rating=f.rating,
                   created_at=f.created_at.isoformat() + "Z")


class FeedbackListOut(BaseModel):
    feedback: list[FeedbackOut]


def no_empty_fields(*names: str):
    """A dependency refusing a form field sent empty. FastAPI reads an empty form value as absent, so
    ``scope=`` would quietly become the default scope (company-wide) instead of the error it is."""

    async def check(request: Request) -> None:
        form = await request.form()  # parsed once: Starlette keeps it for the route
        for name in names:
            if any(value == "" for value in form.getlist(name)):
                raise InvalidRequest(f"{name} is empty; leave it out or give a value")

    return check
