"""Prometheus metrics of the API process, in a registry of its own (`/metrics`): requests by
endpoint and status, answer latency, time to first token, tokens per second, the generator's queue
(when the backend has one) and what the store holds (read when scraped)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ragqa.api.guard import Asgi, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


def _schedulers(generator: Any) -> Iterator[Any]:
    """Where a backend may keep its scheduler: itself, an attribute, or the native engine's loaded
    parts (never loaded here: a model that has not answered yet has no queue)."""
    yield generator
    for name in ("scheduler", "_scheduler"):
        if getattr(generator, name, None) is not None:
            yield getattr(generator, name)
    loaded = getattr(generator, "_loaded", None)
    if isinstance(loaded, tuple) and loaded:
        yield loaded[0]


def queue_length(generator: Any) -> int | None:
    """Requests waiting for the generator's scheduler, where the backend has one (the native
    engine's batching scheduler: `active()` -> (running, waiting)); None for a backend without a
    queue. Read defensively: the attribute's name is the scheduler's business, not ours."""
    for holder in _schedulers(generator):
        for name in ("queue_length", "active"):
            value = getattr(holder, name, None)
            try:
                value = value() if callable(value) else value
            except Exception:  # noqa: BLE001 - a metric must never fail a scrape
                continue
            if name == "active" and isinstance(value, tuple) and len(value) == 2:
                value = value[1]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
    return None


class _Live(Collector):
    """Figures read at scrape time: the store's documents and chunks, the generator's queue."""

    def __init__(self, store: Any, generator: Any) -> None:
        self.store, self.generator = store, generator

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.counts()
        docs = GaugeMetricFamily("ragqa_store_documents", "Documents in the store, by status.", labels=["status"])
        for status, key in (("ready", "ready"), ("failed", "failed"), ("duplicate", "duplicates")):
            docs.add_metric([status], counts.get(key, 0))
        yield docs
        yield GaugeMetricFamily("ragqa_store_chunks", "Chunks in the store (searchable passages).",
                                value=counts.get("chunks", 0))
        queued = queue_length(self.generator)
        if queued is not None:
            yield GaugeMetricFamily("ragqa_generator_queue_length", "Generations waiting for the generator.",
                                    value=queued)


class Metrics:
    def __init__(self, store: Any, generator: Any) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("ragqa_api_requests", "HTTP requests, by endpoint (route), method and status.",
                                ["endpoint", "method", "status"], registry=r)
        self.request_seconds = Histogram("ragqa_api_request_seconds", "Time to the end of the response, by endpoint.",
                                         ["endpoint"], buckets=_SECONDS, registry=r)
        self.answer_seconds = Histogram("ragqa_answer_seconds", "Answers: question in, whole answer out.",
                                        buckets=_SECONDS, registry=r)
        self.first_token_seconds = Histogram("ragqa_answer_first_token_seconds",
                                             "Answers: question in, first generated token out (retrieval included).",
                                             buckets=_SECONDS, registry=r)
        self.tokens_per_second = Histogram("ragqa_answer_tokens_per_second",
                                           "Answers: generated tokens (reasoning included) per second of generation.",
                                           buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000), registry=r)
        self.tokens = Counter("ragqa_generated_tokens", "Generated tokens, reasoning included.", registry=r)
        self.answers = Counter("ragqa_answers", "Answers, by outcome (answered, unanswered, failed).", ["outcome"],
                               registry=r)
        r.register(_Live(store, generator))

    def text(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Counts every HTTP response by the route that served it (its template, e.g.
    /v1/documents/{document_id}, never the raw path: ids are not labels) and its status."""

    def __init__(self, app: Asgi, metrics: Metrics, routes: Any) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            endpoint = self._endpoint(scope)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            self.metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)

    def _endpoint(self, scope: Scope) -> str:
        """The route's template; for a request refused before routing (401, 413, 429), the route
        it was addressed to."""
        route = scope.get("route") or _find(self.routes(), scope)
        return str(getattr(route, "path", None) or "unmatched")


def _find(routes: Any, scope: Scope) -> Any:
    """The endpoint route that would serve `scope` (routes without a path template are skipped)."""
    from starlette.routing import Match

    return next((r for r in routes if getattr(r, "path", None) and r.matches(scope)[0] == Match.FULL), None)
