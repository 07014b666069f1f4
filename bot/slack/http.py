"""Slack's HTTP endpoints in the FastAPI app: events, slash commands and interactions.

Bolt verifies each request's signature and timestamp (401 for unsigned, forged or
stale ones; a valid one sent a second time, a replay, is acked and ignored, see
bot.slack.app) and acks; the dispatch runs in a worker thread so a slow database
write never holds the event loop while other requests wait for their ack.

A request Slack cannot have sent (a timestamp that is not a number, a body that
is not UTF-8, does not parse or is not a JSON object) is refused here with the
same 401, before bolt: bolt would fail on it with a 500 and an error in the log,
and anyone could fill the log that way. A body larger than any Slack sends is
refused (413) without being read into memory.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

PATHS = ("/slack/events", "/slack/commands", "/slack/interactions")
MAX_BODY = 2 << 20  # Slack's payloads are far smaller; the body is read before its signature can be checked


async def _body(request: Request) -> bytes | None:
    """The request body, or None once it grows past MAX_BODY (without reading the rest into memory)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY:
            return None
        parts.append(part)
    return b"".join(parts)


def _refused() -> Response:
    return JSONResponse({"error": "invalid request"}, status_code=401)  # bolt's own answer to a bad signature


def _parse(request: Request, body: bytes) -> BoltRequest | None:
    """The request for bolt, or None when it is not shaped like anything Slack sends."""
    if not request.headers.get("x-slack-request-timestamp", "0").isdigit():
        return None
    try:
        return to_bolt_request(request, body)
    except (ValueError, TypeError, AttributeError):  # not UTF-8, JSON that does not parse, not an object
        return None


def slack_router(app: App) -> APIRouter:
    router = APIRouter(tags=["slack"], include_in_schema=False)

    async def dispatch(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return JSONResponse({"error": "request too large"}, status_code=413)
        bolt_request = _parse(request, body)
        if bolt_request is None:
            log.info("refused a malformed request to %s", request.url.path)
            return _refused()
        response = await run_in_threadpool(app.dispatch, bolt_request)
        return to_starlette_response(response)

    for path in PATHS:
        router.add_api_route(path, dispatch, methods=["POST"])
    return router
