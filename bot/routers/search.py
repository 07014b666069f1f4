"""POST /v1/search: scope-filtered hybrid search, in the scopes the token opens."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from bot.auth import Grant, grant_of
from bot.schemas import HitOut, SearchIn, SearchOut, errors

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchOut, responses=errors(403))
def search(body: SearchIn, request: Request, grant: Annotated[Grant, Depends(grant_of)]) -> SearchOut:
    """The passages that best match ``query`` in ``scopes`` (403 for a scope the token does not open)."""
    started = time.perf_counter()
    hits = request.app.state.engine.search(body.query, body.k, grant.require(body.scopes))
    request.app.state.metrics.search_seconds.observe(time.perf_counter() - started)
    return SearchOut(hits=[HitOut.of(h) for h in hits])
