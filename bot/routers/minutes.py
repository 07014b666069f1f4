"""Minutes route: write minutes of an uploaded recording or transcript, or of an ingested document, as a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse

from bot.auth import Grant, grant_of
from bot.routers.deps import EngineDep
from bot.schemas import JobOut, errors, no_empty_fields
from core.models import DEFAULT_SCOPE, SCOPE_PATTERN

router = APIRouter(tags=["minutes"])


# Exactly one of the two: FastAPI cannot say so from the parameters, so the schema says it here.
_ONE_SOURCE = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "oneOf": [{"required": ["file"]}, {"required": ["doc_id"]}]}}}}}


@router.post("/minutes", status_code=202, response_model=JobOut, responses=errors(403, 404, 429),
             openapi_extra=_ONE_SOURCE, dependencies=[Depends(no_empty_fields("scope", "doc_id"))])
def start_minutes(
    engine: EngineDep,
    grant: Annotated[Grant, Depends(grant_of)],
    # Not "UploadFile | None": the schema would say anyOf[file, null], and clients then send the part
    # without a filename, which is not a file upload at all. Absent means None all the same.
    file: Annotated[UploadFile, File(description="A recording or transcript")] = None,  # type: ignore[assignment]
    doc_id: Annotated[str | None, Form(description="Or the id of an ingested recording or transcript",
                                       min_length=1, max_length=64)] = None,
    scope: Annotated[str, Form(description="The scope the document (and the job) belongs to", pattern=SCOPE_PATTERN,
                               max_length=200)] = DEFAULT_SCOPE,
):
    """Start writing minutes; follow the job at /v1/jobs/{id}, whose result is the minutes JSON.

    An uploaded file is deleted when the job ends. A ``doc_id`` outside ``scope`` is 404.
    """
    grant.require([scope])
    if file is not None:  # the engine refuses a file and a doc_id together
        job = engine.submit_minutes(filename=file.filename or "", stream=file.file, doc_id=doc_id, scope=scope)
    else:
        job = engine.submit_minutes(doc_id=doc_id, scope=scope)
    return JSONResponse(JobOut.of(job).model_dump(), status_code=202)
