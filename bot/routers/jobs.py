"""Job routes: the progress and outcome of background ingestion."""

from __future__ import annotations

from fastapi import APIRouter, Request

from bot.schemas import ErrorOut, JobOut

router = APIRouter(tags=["jobs"])


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}})
def get_job(job_id: str, request: Request) -> JobOut:
    return JobOut.of(request.app.state.engine.job(job_id))
