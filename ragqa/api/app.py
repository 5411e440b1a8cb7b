"""The FastAPI application of `ragqa serve`: built once per process from the settings, through
the same composition root as the CLI and the UI (ragqa/wiring.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from rag.access import Accounts
from rag.keys import ApiKeys
from rag.settings import Settings
from ragqa.api import chat, errors, native
from ragqa.api.guard import BodyLimit, KeyGuard, RateLimiter
from ragqa.api.metrics import CONTENT_TYPE, Metrics, RequestMetrics
from ragqa.api.parts import Parts
from ragqa.api.tracing import tracer_for

DESCRIPTION = """Question answering over the library, with citations, for other tools.

Every `/v1` request carries `Authorization: Bearer KEY` (`ragqa keys create USER`) and acts as that
account: it searches only the collections the account may read, writes only where its role allows,
and is recorded in the audit log under the account's name. `/v1/chat/completions` and `/v1/models`
speak the OpenAI API: the models are `library` and the collections the account may read. Errors are
JSON: `{"error": {"message": "...", "type": "...", "code": ...}}`."""


def create_app(settings: Settings, *, generator: Any = None, span_exporter: Any = None) -> FastAPI:
    """The app over the configured store and generator (`generator`: a given one, for tests;
    `span_exporter`: where traces go, for tests, whatever RAGQA_TRACES says)."""
    from ragqa import wiring

    store = wiring.open_store(settings)
    retriever = wiring.retriever(settings, store)
    gen = generator or wiring.generator(settings, retriever)
    tracer, provider = tracer_for(settings.traces, span_exporter)
    metrics = Metrics(store, gen)
    keys = ApiKeys(store.engine)
    app = FastAPI(title="ragqa", version="1", description=DESCRIPTION, docs_url=None, redoc_url=None)
    # No /docs page: Swagger UI would load its scripts from a CDN, and nothing here reaches the internet.
    app.state.parts = Parts(settings, store, retriever, gen, Accounts(store.engine), keys, metrics, tracer, provider)
    errors.install(app, settings.home)
    app.include_router(chat.router)
    app.include_router(native.router)
    app.include_router(native.health)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus(request: Request) -> Response:
        """Prometheus text format (no key needed: counts and timings only, no names or texts)."""
        return Response(metrics.text(), media_type=CONTENT_TYPE)

    # Outermost last: count every response, then refuse oversize bodies, then check the key.
    app.add_middleware(KeyGuard, keys=keys, limiter=RateLimiter(settings.api_rate_limit))
    app.add_middleware(BodyLimit, limit=int(settings.api_max_body_mb * 2**20))
    routes = [*chat.router.routes, *native.router.routes]  # what a request refused before routing was for
    app.add_middleware(RequestMetrics, metrics=metrics, routes=lambda: [*app.routes, *routes])
    return app
