"""Document routes: upload (multipart, now or in the background), list, delete, transcript.

Every route stays inside the scopes the request's token opens: uploads only into them
(403), listings only of them, and a document outside them is 404 like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from bot.auth import Grant, grant_of
from bot.routers.deps import EngineDep, MetricsDep
from bot.schemas import DocumentOut, DocumentsOut, IngestOut, IngestResultOut, JobOut, JobsOut, Scope, errors, no_empty_fields
from core.models import DEFAULT_SCOPE, SCOPE_PATTERN
from core.formats.transcripts import render, to_dict

router = APIRouter(tags=["documents"])

_SUBTITLE_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}


@router.post("/documents", response_model=IngestOut | JobsOut,
             responses={202: {"model": JobsOut}} | errors(403, 429), dependencies=[Depends(no_empty_fields("scope"))])
def upload(
    engine: EngineDep,
    metrics: MetricsDep,
    grant: Annotated[Grant, Depends(grant_of)],
    files: Annotated[list[UploadFile], File(description="One or more files", min_length=1)],
    scope: Annotated[str, Form(description="Access label, e.g. a Slack channel id", pattern=SCOPE_PATTERN,
                               max_length=200)] = DEFAULT_SCOPE,
    background: Annotated[bool, Query(description="Answer 202 at once with jobs to follow at /v1/jobs/{id}; "
                                      "for recordings, which take minutes to transcribe")] = False,
):
    """Ingest uploaded files. Each file gets its own status; one bad file never fails the others.

    A file above its size limit (IMP_INGEST__MAX_FILE_MB for documents, IMP_SPEECH__MAX_FILE_MB
    for recordings) fails with ``too_large``, and nothing of a failed upload is kept.
    """
    grant.require([scope])
    if background:
        engine.check_job_room(len(files))  # all of them or none: 429 before any is stored
        jobs = [JobOut.of(engine.submit_upload(f.filename or "", f.file, scope)) for f in files]
        return JSONResponse(JobsOut(jobs=jobs).model_dump(), status_code=202)
    results = []
    for f in files:
        r = engine.ingest_upload(f.filename or "", f.file, scope)
        metrics.ingested.labels(r.status.value).inc()
        results.append(IngestResultOut.of(r))
    return IngestOut(documents=results)


@router.get("/documents", response_model=DocumentsOut, responses=errors(403))
def list_documents(
    engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)],
    scope: Annotated[list[Scope] | None, Query(description="Only these scopes", max_length=1000)] = None,
) -> DocumentsOut:
    """Documents in the scopes the token opens (or in ``scope``, each of which it must open)."""
    scopes = grant.require(scope) if scope else grant.visible
    return DocumentsOut(documents=[DocumentOut.of(d) for d in engine.documents(scopes)])


@router.delete("/documents/{doc_id}", response_model=DocumentOut, responses=errors(404))
def delete_document(doc_id: str, engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)]) -> DocumentOut:
    return DocumentOut.of(engine.delete(doc_id, scopes=grant.visible))


@router.get("/documents/{doc_id}/transcript", responses=errors(404) | {200: {"content": {
    "application/json": {}, "text/vtt": {}, "application/x-subrip": {}}}})
def transcript(
    doc_id: str, engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)],
    format: Annotated[Literal["json", "vtt", "srt"], Query(description="json, vtt or srt")] = "json",
):
    """The transcript of an indexed recording: segments with times, speakers and words, or subtitles."""
    t = engine.transcript(doc_id, scopes=grant.visible)
    if format == "json":
        return JSONResponse(to_dict(t))
    return PlainTextResponse(render(t, format), media_type=_SUBTITLE_TYPES[format])
