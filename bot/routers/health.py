"""Liveness and metrics routes (no auth: probes and scrapers call them)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz(request: Request) -> dict:
    """Liveness plus a cheap check that the registry answers."""
    engine = request.app.state.engine
    return {"status": "ok", "documents": len(engine.documents())}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
