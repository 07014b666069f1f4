"""Job routes: the progress and outcome of background ingestion and minutes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from bot.auth import Grant, grant_of
from bot.routers.deps import EngineDep
from bot.schemas import JobOut, errors

router = APIRouter(tags=["jobs"])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=errors(404))
def get_job(job_id: str, engine: EngineDep, grant: Annotated[Grant, Depends(grant_of)]) -> JobOut:
    """A job in a scope the token opens; any other id is 404, whether or not it exists."""
    return JobOut.of(engine.job(job_id, scopes=grant.visible))
