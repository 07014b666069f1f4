"""Prometheus metrics of one app instance (own registry, so tests and apps never collide).

``Metrics.observer`` is the engine's observer (core.observe): answers, ratings, ingested
documents and stage timings are counted where the engine does the work, so every
front door sharing the engine (REST, Slack) is counted. Drift scores and served
models are read when Prometheus scrapes, through the callables the app hands in.

Label values are bounded: route templates, stage names, model names from settings or
the registry, signal names of the drift check; never a user, a question or a file name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.models import Answer, ServedModel

log = logging.getLogger(__name__)

# Request latency: fine below a second, where the 500 ms p95 objective sits; uploads and answers on CPU above it.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Stages run from a query embedding (milliseconds) to transcribing a recording (up to hours).
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                 3600.0)
STAGES = ("embed", "retrieve", "generate", "transcribe", "ingest", "minutes")  # core.observe.Stage
_MAX_LABEL = 128  # a model name longer than this is cut: a label value, however configured, stays small

# (scores by signal, alerts raised by signal), read at scrape time
DriftReader = Callable[[], tuple[Mapping[str, float], Mapping[str, int]]]
ModelsReader = Callable[[], Iterable[ServedModel]]


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
        self._slack_waiting = Gauge("imp_slack_waiting", "Slack questions and commands waiting for an answer worker "
                                    "(IMP_SLACK__WORKERS)", registry=self.registry)

        self.request_duration = Histogram(
            "imp_request_duration_seconds", "HTTP request duration, by route template, method and status",
            ["route", "method", "status"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.answers = Counter("imp_answers_total", "Questions answered, by whether IMP abstained (the documents "
                               "did not answer them) and by the answering model", ["abstained", "model"],
                               registry=self.registry)
        self.feedback = Counter("imp_feedback_total", "Ratings given to answers (up: 👍, down: 👎), by the model "
                                "that answered", ["rating", "model"], registry=self.registry)
        self.stage_duration = Histogram(
            "imp_stage_duration_seconds", "Time spent in each stage of work: embed (one call of an embedding model: "
            "a query, or a batch of chunks while ingesting), retrieve (a search), generate (writing an answer's "
            "draft), transcribe (a recording), ingest (a whole document), minutes (drafting minutes)",
            ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        for stage in STAGES:  # every stage has a series from the start, so rates and alerts see zeros, not gaps
            self.stage_duration.labels(stage)
        self.ingest_documents = Counter(
            "imp_ingest_documents_total", "Documents ingested, by outcome (indexed, unchanged, failed) and kind "
            "(pdf, docx, ..., audio, video; media: a recording not transcribed; unknown: refused before it was read)",
            ["status", "kind"], registry=self.registry)
        self._scraped = _ReadAtScrape()
        self.registry.register(self._scraped)
        self.observer = EngineCounts(self)  # what the engine is told to report to (Engine.add_observer)

    # -- read at scrape time ------------------------------------------------------

    def watch_drift(self, read: DriftReader) -> None:
        """Report the drift check's scores and alert counts (``read`` returns them by signal)."""
        self._scraped.drift = read

    def watch_models(self, read: ModelsReader) -> None:
        """Report the served models (``read`` returns them, as ``Engine.served_models`` does)."""
        self._scraped.models = read

    def watch_gates(self, gates: dict) -> None:
        """Report each admission gate's running and waiting requests (read at scrape time)."""
        for name, gate in gates.items():
            self._in_flight.labels(name).set_function(lambda g=gate: g.running)
            self._queued.labels(name).set_function(lambda g=gate: g.waiting)

    def watch_jobs(self, pending) -> None:  # noqa: ANN001 - a callable returning the number of pending jobs
        self._jobs.set_function(pending)

    def watch_slack(self, waiting) -> None:  # noqa: ANN001 - a callable returning the Slack queue's length
        self._slack_waiting.set_function(waiting)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        self.request_duration.labels(route, method, str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class EngineCounts:
    """The engine's observer (core.observe.Observer) that counts into ``metrics``."""

    def __init__(self, metrics: Metrics):
        self._m = metrics

    def stage(self, name: str, seconds: float) -> None:
        self._m.stage_duration.labels(name).observe(seconds)

    def answered(self, answer: Answer) -> None:
        self._m.answers.labels("true" if answer.abstained else "false", _bounded(answer.model)).inc()

    def rated(self, rating: int, model: str) -> None:
        self._m.feedback.labels("up" if rating > 0 else "down", _bounded(model)).inc()

    def ingested(self, status: str, kind: str) -> None:
        self._m.ingest_documents.labels(_bounded(status), _bounded(kind)).inc()


class _ReadAtScrape:
    """Drift and served-model metrics, read from the database each time Prometheus scrapes.

    A read that fails is logged and its metrics are left empty: a scrape never fails.
    """

    def __init__(self) -> None:
        self.drift: DriftReader | None = None
        self.models: ModelsReader | None = None

    def describe(self) -> list[Metric]:  # the names, for the registry's check against duplicates
        return [_drift_score(), _drift_alerts(), _model_info()]

    def collect(self) -> Iterator[Metric]:
        score, alerts, info = _drift_score(), _drift_alerts(), _model_info()
        if self.drift is not None:
            try:
                scores, raised = self.drift()
                for signal, value in scores.items():
                    score.add_metric([_bounded(signal)], float(value))
                for signal, count in raised.items():
                    alerts.add_metric([_bounded(signal)], float(count))
            except Exception:
                log.warning("cannot read the drift state for /metrics", exc_info=True)
        if self.models is not None:
            try:
                for m in self.models():
                    info.add_metric([_bounded(m.name), _bounded(m.version), _bounded(m.slot)], 1.0)
            except Exception:
                log.warning("cannot read the served models for /metrics", exc_info=True)
        yield from (score, alerts, info)


def _drift_score() -> GaugeMetricFamily:
    return GaugeMetricFamily("imp_drift_score", "The latest drift check's score, by signal", labels=["signal"])


def _drift_alerts() -> CounterMetricFamily:
    return CounterMetricFamily("imp_drift_alerts", "Drift alerts raised (incidents opened), by signal",
                               labels=["signal"])


def _model_info() -> GaugeMetricFamily:
    return GaugeMetricFamily("imp_model_info", "Models in service (1 each): registry name, version, and alias "
                             "(champion answers; challenger takes a canary share)", labels=["name", "version", "alias"])


def _bounded(value: object) -> str:
    return str(value)[:_MAX_LABEL]


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
