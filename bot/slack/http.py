"""Slack's HTTP endpoints in the FastAPI app: events, slash commands and interactions.

Bolt verifies each request's signature and timestamp (401 for unsigned, forged or
stale ones) and acks; the dispatch runs in a worker thread so a slow database
write never holds the event loop while other requests wait for their ack.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

PATHS = ("/slack/events", "/slack/commands", "/slack/interactions")


def slack_router(app: App) -> APIRouter:
    router = APIRouter(tags=["slack"], include_in_schema=False)

    async def dispatch(request: Request) -> Response:
        body = await request.body()
        response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(response)

    for path in PATHS:
        router.add_api_route(path, dispatch, methods=["POST"])
    return router
