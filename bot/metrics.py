"""Prometheus metrics of one app instance (own registry, so tests and apps never collide)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


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

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
