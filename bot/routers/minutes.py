"""Minutes route: write minutes of an uploaded recording or transcript, or of an ingested document, as a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from bot.auth import Grant, grant_of
from bot.schemas import JobOut, errors
from core.models import DEFAULT_SCOPE

router = APIRouter(tags=["minutes"])


@router.post("/minutes", status_code=202, response_model=JobOut, responses=errors(403, 404))
def start_minutes(
    request: Request,
    grant: Annotated[Grant, Depends(grant_of)],
    file: Annotated[UploadFile | None, File(description="A recording or transcript")] = None,
    doc_id: Annotated[str | None, Form(description="Or the id of an ingested recording or transcript")] = None,
    scope: Annotated[str, Form(description="The scope the document (and the job) belongs to")] = DEFAULT_SCOPE,
):
    """Start writing minutes; follow the job at /v1/jobs/{id}, whose result is the minutes JSON.

    An uploaded file is deleted when the job ends. A ``doc_id`` outside ``scope`` is 404.
    """
    engine = request.app.state.engine
    grant.require([scope])
    if file is not None:
        job = engine.submit_minutes(filename=file.filename or "", stream=file.file, scope=scope)
    else:
        job = engine.submit_minutes(doc_id=doc_id, scope=scope)
    return JSONResponse(JobOut.of(job).model_dump(), status_code=202)
