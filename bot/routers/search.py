"""POST /v1/search: scope-filtered hybrid search, in the scopes the token opens."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends

from bot.auth import Grant, grant_of
from bot.routers.deps import EngineDep, MetricsDep
from bot.schemas import HitOut, SearchIn, SearchOut, errors

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchOut, responses=errors(403))
def search(body: SearchIn, engine: EngineDep, metrics: MetricsDep,
           grant: Annotated[Grant, Depends(grant_of)]) -> SearchOut:
    """The passages that best match ``query`` in ``scopes`` (403 for a scope the token does not open)."""
    started = time.perf_counter()
    hits = engine.search(body.query, body.k, grant.require(body.scopes))
    metrics.search_seconds.observe(time.perf_counter() - started)
    return SearchOut(hits=[HitOut.of(h) for h in hits])
