"""Typed dependencies of the routes: the Engine and the metrics the app was built with.

``create_app`` (bot/api.py) keeps both on ``app.state``; routes take them as parameters
(``engine: EngineDep``) rather than reading ``request.app.state`` themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bot.metrics import Metrics
from core.engine import Engine


# async: a plain attribute read, so FastAPI calls it on the event loop instead of in a worker thread.
async def engine_of(request: Request) -> Engine:
    """The Engine of the app serving this request."""
    return request.app.state.engine


async def metrics_of(request: Request) -> Metrics:
    """The Prometheus metrics of the app serving this request."""
    return request.app.state.metrics


EngineDep = Annotated[Engine, Depends(engine_of)]
MetricsDep = Annotated[Metrics, Depends(metrics_of)]
