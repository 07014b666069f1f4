"""Document routes: upload (multipart), list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from bot.schemas import DocumentOut, DocumentsOut, ErrorOut, IngestOut, IngestResultOut
from core.models import DEFAULT_SCOPE

router = APIRouter(tags=["documents"])


@router.post("/documents", response_model=IngestOut, responses={400: {"model": ErrorOut}})
def upload(
    request: Request,
    files: Annotated[list[UploadFile], File(description="One or more files")],
    scope: Annotated[str, Form(description="Access label, e.g. a Slack channel id")] = DEFAULT_SCOPE,
) -> IngestOut:
    """Ingest uploaded files. Each file gets its own status; one bad file never fails the others."""
    engine = request.app.state.engine
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
