"""Prometheus metrics of one app instance (own registry, so tests and apps never collide)."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("imp_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("imp_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry)
        self.ingested = Counter("imp_ingested_documents_total", "Documents ingested, by outcome", ["status"],
                                registry=self.registry)
        self.search_seconds = Histogram("imp_search_seconds", "Search latency",
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                        registry=self.registry)

        self.shed = Counter("imp_requests_shed_total", "Requests refused with 503 because their class of work "
                            "was at its limit and its queue full", ["gate"], registry=self.registry)
        self._in_flight = Gauge("imp_gate_running", "Requests running, by class of work", ["gate"],
                                registry=self.registry)
        self._queued = Gauge("imp_gate_waiting", "Requests waiting for a place, by class of work", ["gate"],
                             registry=self.registry)
        self._jobs = Gauge("imp_jobs_pending", "Background jobs waiting or running", registry=self.registry)

    def watch_gates(self, gates: dict) -> None:
        """Report each admission gate's running and waiting requests (read at scrape time)."""
        for name, gate in gates.items():
            self._in_flight.labels(name).set_function(lambda g=gate: g.running)
            self._queued.labels(name).set_function(lambda g=gate: g.waiting)

    def watch_jobs(self, pending) -> None:  # noqa: ANN001 - a callable returning the number of pending jobs
        self._jobs.set_function(pending)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware counting every request by method, route template and status.

    The route is the matched template (/v1/jobs/{job_id}), so ids never become label
    values; a request refused before routing, or matching nothing, is "unmatched".
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics):
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._metrics.observe_request(scope["method"], _template(scope), status, time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The matched route's template under its router's prefix: /v1 + /jobs/{job_id}."""
    route = getattr(scope.get("route"), "path", None)
    if not route:
        return "unmatched"
    prefix = scope["path"].rsplit("/", route.count("/"))[0]  # the part of the URL above the route's own path
    return prefix + route
