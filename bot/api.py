"""The FastAPI application factory: REST routes, error mapping, the edge checks and metrics.

``create_app`` receives a built Engine and what the edge enforces (tokens and their
scopes, the Host names to answer); it never reads settings itself. Every error a client
sees is ``{code, detail}``; a 5xx detail is a reference to the log line, never the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.admission import AdmissionMiddleware, Gate
from bot.auth import MULTIPART_OVERHEAD, Edge, Tokens
from bot.dashboard import dashboard_router
from bot.dashboard.registry import RegistryVersion, RegistryView
from bot.metrics import Metrics, RequestMetrics
from bot.routers import ask, documents, feedback, health, jobs, minutes, search
from bot.schemas import errors, public_error
from bot.slack.app import SlackBot
from bot.slack.http import slack_router
from bot.teams.bot import TeamsBot
from bot.teams.route import teams_router
from core.engine import Engine
from core.errors import Busy, ImpError

# Routes whose work is CPU-bound, by admission gate (see bot.admission); the rest are cheap reads.
_GATED = {("POST", "/v1/search"): "search", ("POST", "/v1/ask"): "answer", ("POST", "/v1/ask/stream"): "answer"}


def _gate_of(method: str, path: str, query: bytes) -> str | None:
    if method == "POST" and path == "/v1/documents":
        # Background uploads only store the file; the job queue bounds the work behind them.
        return None if b"background=true" in query.lower() else "ingest"
    return _GATED.get((method, path))


_HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large"}


def _error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status, headers=headers)


def create_app(engine: Engine, *, api_token: SecretStr | None = None,
               tokens: Mapping[str, Collection[str] | None] | None = None,
               allowed_hosts: Collection[str] | None = None, upload_limit: int | None = None,
               gates: Mapping[str, Gate] | None = None, slack: SlackBot | None = None, teams: TeamsBot | None = None,
               metrics: Metrics | None = None,
               model_registry: Callable[[], Sequence[RegistryVersion]] | None = None) -> FastAPI:
    """The REST API; with ``slack``, also Slack's event, command and interaction endpoints; with ``teams``,
    Bot Framework's POST /api/messages.

    ``tokens`` maps each bearer token to the scopes it opens (None or ["*"]: all);
    ``api_token`` is one more all-scopes token. With neither, /v1 is open (loopback use).
    ``allowed_hosts``: the Host names to answer (None: any). ``upload_limit``: the cap on
    an upload request's body (default: the engine's largest file plus multipart overhead).
    ``gates``: admission gates by class of work ("search", "answer", "ingest"); a request whose
    gate is full gets 503 with Retry-After. None or a missing class: not gated.
    ``metrics``: where /metrics counts (default: a registry of this app's own); it observes the
    engine while the app runs, so answers, ratings and documents are counted whichever door they came in by.
    ``model_registry``: reads the registry's versions for the dashboard (in the background, every 5 minutes).
    """
    registry = RegistryView(model_registry) if model_registry is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.recover_jobs()
        if slack is not None:
            slack.start()
        if teams is not None:
            teams.start()
        if registry is not None:
            registry.start()
        yield
        if registry is not None:
            registry.stop()
        if slack is not None:
            slack.close()
        if teams is not None:
            teams.close()
        engine.remove_observer(metrics.observer)
        engine.close()

    app = FastAPI(title="IMP", version="0.1.0", lifespan=lifespan,
                  description="Ingest company documents and recordings and search them, with citations.")
    metrics = metrics if metrics is not None else Metrics()
    engine.add_observer(metrics.observer)  # answers, ratings, documents and stage timings, from every front door
    metrics.watch_models(engine.served_models)
    metrics.watch_drift(engine.drift_summary)
    app.state.engine = engine
    app.state.metrics = metrics

    v1 = errors(400, 401, 413, 422, 500, 503)
    for router in (documents.router, search.router, ask.router, jobs.router, minutes.router, feedback.router):
        app.include_router(router, prefix="/v1", responses=v1)
    app.include_router(health.router, responses=errors(400, 500))
    if slack is not None:
        app.include_router(slack_router(slack.app))  # Slack signs its requests; no bearer token
    if teams is not None:
        app.include_router(teams_router(teams))  # Bot Framework's own token, checked by the route

    gates = dict(gates or {})
    metrics.watch_gates(gates)
    metrics.watch_jobs(lambda: engine.pending_jobs)
    if slack is not None:
        metrics.watch_slack(lambda: slack.waiting)
    if gates:  # inside the edge: an unauthenticated request never takes a place in a queue
        app.add_middleware(AdmissionMiddleware, gates=gates, classify=_gate_of,
                           on_shed=lambda name: metrics.shed.labels(name).inc())
    grants = dict(tokens or {})
    if api_token is not None:
        grants[api_token.get_secret_value()] = None
    # HTML for people: bearer token or a session cookie
    app.include_router(dashboard_router(grants, registry=registry))
    app.add_middleware(Edge, tokens=Tokens(grants), allowed_hosts=allowed_hosts,
                       upload_limit=upload_limit or engine.max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: refusals at the edge are counted too

    @app.exception_handler(ImpError)
    async def _imp_error(_: Request, e: ImpError) -> JSONResponse:
        headers = {"retry-after": str(e.retry_after)} if isinstance(e, Busy) else None
        return _error(*public_error(e), headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code >= 500:
            return _error(*public_error(e))
        return _error(e.status_code, _HTTP_CODES.get(e.status_code, "http_error"), str(e.detail),
                      getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        return _error(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        return _error(*public_error(e))

    return app
