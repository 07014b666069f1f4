"""POST /v1/search: scope-filtered hybrid search."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from bot.schemas import ErrorOut, HitOut, SearchIn, SearchOut

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchOut, responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}})
def search(body: SearchIn, request: Request) -> SearchOut:
    started = time.perf_counter()
    hits = request.app.state.engine.search(body.query, body.k, body.scopes)
    request.app.state.metrics.search_seconds.observe(time.perf_counter() - started)
    return SearchOut(hits=[HitOut.of(h) for h in hits])
