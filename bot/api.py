"""The FastAPI application factory: REST routes, error mapping, auth and metrics.

``create_app`` receives a built Engine; it never reads settings itself.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.metrics import Metrics
from bot.slack.app import SlackBot
from bot.slack.http import slack_router
from bot.routers import ask, documents, feedback, health, jobs, minutes, search
from core.engine import Engine
from core.errors import (
    BackendError,
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    ImpError,
    InvalidRequest,
    NotFound,
    UnsupportedFormat,
)

log = logging.getLogger(__name__)

_STATUS: dict[type[ImpError], int] = {
    NotFound: 404,
    InvalidRequest: 400,
    UnsupportedFormat: 422,
    CorruptDocument: 422,
    EmptyDocument: 422,
    DocumentTooLarge: 413,
    BackendError: 503,
}


def _error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status, headers=headers)


def _bearer(token: SecretStr | None):
    scheme = HTTPBearer(auto_error=False)

    def check(creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if token is None:
            return
        given = creds.credentials if creds else ""
        if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return check


def _route_template(request: Request) -> str:
    """The matched route with its parameters as placeholders, so ids never become label values."""
    if request.scope.get("route") is None:
        return "unmatched"
    path = request.url.path
    for name, value in request.scope.get("path_params", {}).items():
        path = path.replace(str(value), "{" + name + "}")
    return path


def create_app(engine: Engine, *, api_token: SecretStr | None = None, slack: SlackBot | None = None) -> FastAPI:
    """The REST API; with ``slack``, also Slack's event, command and interaction endpoints."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.recover_jobs()
        if slack is not None:
            slack.start()
        yield
        if slack is not None:
            slack.close()
        engine.close()

    app = FastAPI(title="IMP", version="0.1.0", lifespan=lifespan,
                  description="Ingest company documents and recordings and search them, with citations.")
    metrics = Metrics()
    app.state.engine = engine
    app.state.metrics = metrics

    auth = [Depends(_bearer(api_token))]
    app.include_router(documents.router, prefix="/v1", dependencies=auth)
    app.include_router(search.router, prefix="/v1", dependencies=auth)
    app.include_router(ask.router, prefix="/v1", dependencies=auth)
    app.include_router(jobs.router, prefix="/v1", dependencies=auth)
    app.include_router(minutes.router, prefix="/v1", dependencies=auth)
    app.include_router(feedback.router, prefix="/v1", dependencies=auth)
    app.include_router(health.router)
    if slack is not None:
        app.include_router(slack_router(slack.app))  # Slack signs its requests; no bearer token

    @app.middleware("http")
    async def _count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        metrics.observe_request(request.method, _route_template(request), response.status_code,
                                time.perf_counter() - started)
        return response

    @app.exception_handler(ImpError)
    async def _imp_error(_: Request, e: ImpError) -> JSONResponse:
        status = next((s for cls, s in _STATUS.items() if isinstance(e, cls)), 500)
        if status >= 500:
            log.error("request failed: %s", e.detail)
        return _error(status, e.code, e.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        return _error(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal_error", "internal error; the server log has details")

    return app
