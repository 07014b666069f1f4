"""Document routes: upload (multipart, now or in the background), list, delete, transcript."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from bot.schemas import DocumentOut, DocumentsOut, ErrorOut, IngestOut, IngestResultOut, JobOut, JobsOut
from core.models import DEFAULT_SCOPE
from core.speech.export import render, to_dict

router = APIRouter(tags=["documents"])

_SUBTITLE_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}


@router.post("/documents", response_model=IngestOut | JobsOut,
             responses={202: {"model": JobsOut}, 400: {"model": ErrorOut}})
def upload(
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more files")],
    scope: Annotated[str, Form(description="Access label, e.g. a Slack channel id")] = DEFAULT_SCOPE,
    background: Annotated[bool, Query(description="Answer 202 at once with jobs to follow at /v1/jobs/{id}; "
                                      "for recordings, which take minutes to transcribe")] = False,
):
    """Ingest uploaded files. Each file gets its own status; one bad file never fails the others."""
    engine = request.app.state.engine
    if background:
        jobs = [JobOut.of(engine.submit_upload(f.filename or "", f.file, scope)) for f in files]
        return JSONResponse(JobsOut(jobs=jobs).model_dump(), status_code=202)
    results = []
    for f in files:
        r = engine.ingest_upload(f.filename or "", f.file, scope)
        request.app.state.metrics.ingested.labels(r.status.value).inc()
        results.append(IngestResultOut.of(r))
    return IngestOut(documents=results)


@router.get("/documents", response_model=DocumentsOut)
def list_documents(
    request: Request, scope: Annotated[list[str] | None, Query(description="Only these scopes")] = None
) -> DocumentsOut:
    return DocumentsOut(documents=[DocumentOut.of(d) for d in request.app.state.engine.documents(scope)])


@router.delete("/documents/{doc_id}", response_model=DocumentOut, responses={404: {"model": ErrorOut}})
def delete_document(doc_id: str, request: Request) -> DocumentOut:
    return DocumentOut.of(request.app.state.engine.delete(doc_id))


@router.get("/documents/{doc_id}/transcript", responses={404: {"model": ErrorOut}})
def transcript(
    doc_id: str, request: Request,
    format: Annotated[Literal["json", "vtt", "srt"], Query(description="json, vtt or srt")] = "json",
):
    """The transcript of an indexed recording: segments with times, speakers and words, or subtitles."""
    t = request.app.state.engine.transcript(doc_id)
    if format == "json":
        return JSONResponse(to_dict(t))
    return PlainTextResponse(render(t, format), media_type=_SUBTITLE_TYPES[format])
