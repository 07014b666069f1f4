"""Liveness and metrics routes (no auth: probes and scrapers call them).

Neither says anything about what is indexed: they are open to anyone who can reach the port.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from bot.routers.deps import EngineDep, MetricsDep

router = APIRouter(tags=["ops"])


class HealthOut(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", response_model=HealthOut)
def healthz(engine: EngineDep) -> HealthOut:
    """Liveness plus a cheap check that the registry's database answers (one row read)."""
    engine.registry.generation()
    return HealthOut(status="ok")


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}})
def metrics(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
