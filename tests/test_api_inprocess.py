"""The HTTP API in this process (FastAPI's TestClient) where a test needs to look inside: the trace
of an answer, the rate limit, the keys' store, the footnotes of a stream, the generator's queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm.generator import FakeGenerator
from rag.access import Accounts
from rag.errors import ConfigError, NotFoundError
from rag.keys import ApiKeys, KeyRefusedError, digest, parse_expiry
from tests.helpers import Library

TOWER = ("The Eiffel Tower\n\nThe Eiffel Tower stands in Paris. It was built between 1887 and 1889 for the "
         "World's Fair.")


@pytest.fixture
def keyed(library: Library, store) -> dict[str, str]:
    library({"tower.txt": TOWER}, collection="public")
    Accounts(store.engine).add("alice", "reader", ("staff",))
    return {"alice": ApiKeys(store.engine).create("alice")[1], "other": ApiKeys(store.engine).create("alice")[1]}


def client(settings: Any, **kw: Any) -> Any:
    from fastapi.testclient import TestClient

    from ragqa.api.app import create_app

    return TestClient(create_app(settings.model_copy(update={"generator": "extractive"}), **kw))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CHAT = {"model": "library", "messages": [{"role": "user", "content": "When was the Eiffel Tower built?"}]}


def test_a_trace_of_one_answer_has_retrieval_and_generation_spans(keyed, settings) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    api = client(settings, span_exporter=exporter)
    assert api.post("/v1/chat/completions", json=CHAT, headers=bearer(keyed["alice"])).status_code == 200
    spans: dict[str, Any] = {s.name: s for s in exporter.get_finished_spans()}
    assert {"answer", "retrieval", "generation"} <= set(spans)
    root = spans["answer"]
    for child in ("retrieval", "generation"):
        assert spans[child].parent is not None and spans[child].parent.span_id == root.context.span_id
        assert spans[child].context.trace_id == root.context.trace_id
    assert root.attributes["ragqa.user"] == "alice" and root.attributes["ragqa.answered"] is True
    assert spans["generation"].attributes["ragqa.backend"] == "extractive"
    # A streamed answer is traced the same way, though its pieces are read from several threads.
    exporter.clear()
    assert api.post("/v1/chat/completions", json={**CHAT, "stream": True},
                    headers=bearer(keyed["alice"])).status_code == 200
    assert {"answer", "retrieval", "generation"} <= {s.name for s in exporter.get_finished_spans()}


def test_tracing_is_off_unless_configured(settings) -> None:
    from opentelemetry.trace import NoOpTracer

    from ragqa.api.tracing import tracer_for

    assert isinstance(tracer_for("")[0], NoOpTracer)
    assert tracer_for("console")[1] is not None
    with pytest.raises(ConfigError, match="RAGQA_TRACES"):
        tracer_for("somewhere")


def test_the_rate_limit_is_per_key(keyed, settings) -> None:
    api = client(settings.model_copy(update={"api_rate_limit": 2}))
    codes = [api.get("/v1/models", headers=bearer(keyed["alice"])).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = api.get("/v1/models", headers=bearer(keyed["alice"]))
    assert "rate limit" in refused.json()["error"]["message"] and int(refused.headers["Retry-After"]) >= 1
    assert api.get("/v1/models", headers=bearer(keyed["other"])).status_code == 200  # another key, its own bucket
    assert api.get("/healthz").status_code == 200  # no key, no limit


def test_openapi_describes_the_endpoints_and_the_key(settings) -> None:
    spec = client(settings).get("/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/v1/search", "/v1/ask", "/v1/documents",
            "/v1/documents/{document_id}", "/healthz", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_keys_are_hashed_expire_and_revoke(store) -> None:
    Accounts(store.engine).add("bob", "editor", ("hr",))
    keys = ApiKeys(store.engine)
    info, key = keys.create("bob")
    with store.engine.connect() as c:
        stored = c.exec_driver_sql("SELECT key_hash FROM api_keys").scalar()
    assert stored == digest(key) and key not in stored
    caller = keys.authenticate(key)
    assert (caller.principal.name, caller.principal.role, caller.principal.groups, caller.key_id) == \
        ("bob", "editor", ("hr",), info.id)
    _, old = keys.create("bob", datetime.now(UTC) - timedelta(seconds=1))
    for bad, reason in ((None, "no API key"), ("", "no API key"), (key + "x", "unknown"), ("Basic x", "unknown"),
                        (old, "expired")):
        with pytest.raises(KeyRefusedError, match=reason):
            keys.authenticate(bad)
    keys.revoke(info.id)
    with pytest.raises(KeyRefusedError, match="revoked"):
        keys.authenticate(key)
    with pytest.raises(ConfigError, match="already revoked"):
        keys.revoke(info.id)
    with pytest.raises(NotFoundError):
        keys.create("nobody")
    _, orphan = keys.create("bob")
    Accounts(store.engine).remove("bob")
    with pytest.raises(KeyRefusedError, match="no longer exists"):
        keys.authenticate(orphan)
    assert [k.state() for k in keys.list("bob")] == ["revoked", "expired", "active"]


def test_expiry_dates() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert parse_expiry("2026-06-30", now) == datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
    assert parse_expiry("2026-06-02T08:00", now) == datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
    for bad in ("2026-05-31", "next week"):
        with pytest.raises(ConfigError):
            parse_expiry(bad, now)


def test_citations_become_footnote_references_across_stream_pieces() -> None:
    from ragqa.api.chat import Footnotes

    notes = Footnotes()
    pieces = ["Built in 1889 [", "1", "] and painted [2, ", "3]. See [a] and [", "4"]
    out = "".join(notes.feed(p) for p in pieces) + notes.flush()
    assert out == "Built in 1889 [^1] and painted [^2][^3]. See [a] and [4"


def test_earlier_messages_become_the_conversation() -> None:
    from ragqa.api.chat import ChatMessage, conversation
    from ragqa.api.errors import ApiError

    messages = [ChatMessage(role="system", content="Be brief."),
                ChatMessage(role="user", content="When was the Eiffel Tower built?"),
                ChatMessage(role="assistant", content="In 1889 [^1].\n\n[^1]: The Eiffel Tower, p. 1"),
                ChatMessage(role="user", content=[{"type": "text", "text": "Who designed it?"}]),
                ChatMessage(role="assistant", content="Koechlin [^1]."),
                ChatMessage(role="user", content="and when?")]
    question, history = conversation(messages)
    assert question == "and when?"
    assert [(h.question, h.answer) for h in history] == [("When was the Eiffel Tower built?", "In 1889 ."),
                                                        ("Who designed it?", "Koechlin .")]
    assert "Eiffel" in history[1].search_query  # the chain keeps its subject
    with pytest.raises(ApiError, match="last message"):
        conversation(messages[:-1])


class QueuedGenerator(FakeGenerator):
    class Scheduler:
        def queue_length(self) -> int:
            return 3

    scheduler = Scheduler()


def test_the_generators_queue_is_a_metric_when_it_has_one(settings) -> None:
    from ragqa.api.metrics import queue_length

    assert queue_length(QueuedGenerator()) == 3 and queue_length(FakeGenerator()) is None
    with_queue = client(settings, generator=QueuedGenerator()).get("/metrics").text
    assert "ragqa_generator_queue_length 3.0" in with_queue
    assert "ragqa_generator_queue_length" not in client(settings).get("/metrics").text


def test_the_status_page_shows_the_apis_figures(library: Library, store, settings, monkeypatch) -> None:
    """The Status page reads the API's own /metrics: the same figures a Prometheus scrape sees."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ragqa.api.metrics import Metrics

    library({"tower.txt": TOWER}, collection="public")
    metrics = Metrics(store, QueuedGenerator())
    for seconds in (0.3, 0.6):
        metrics.answer_seconds.observe(seconds)
        metrics.first_token_seconds.observe(seconds / 3)
        metrics.answers.labels("answered").inc()
    metrics.tokens_per_second.observe(40)
    metrics.requests.labels("/v1/chat/completions", "POST", "200").inc(2)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            payload = metrics.text()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for key, value in {"RAGQA_HOME": str(settings.home), "RAGQA_DATABASE_URL": settings.database_url,
                       "RAGQA_GENERATOR": "fake", "RAGQA_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
                       "RAGQA_CHUNK_TOKENS": "64", "RAGQA_CHUNK_OVERLAP": "8"}.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(Path(__file__).parents[1] / "ragqa" / "ui_app.py"), default_timeout=120)
        at.run()
        at.switch_page("../app/pages/status.py").run()
        assert not at.exception, at.exception
        shown = {m.label: m.value for m in at.metric}
        assert shown["Answers"] == "2" and shown["Tokens/s (mean)"] == "40.0"
        assert shown["Answer time p50 / p95"].endswith(" s")
        assert any("Generator queue: 3" in m.value for m in at.markdown)
        assert any("1 documents" in m.value for m in at.markdown)
        assert any(list(df.value["endpoint"]) == ["/v1/chat/completions"] for df in at.dataframe)
    finally:
        st.cache_resource.clear()
        server.shutdown()


def test_compose_runs_the_api_beside_the_ui_on_the_same_store() -> None:
    from pathlib import Path

    import yaml

    s = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())["services"]
    for api, ui in (("api", "app"), ("api-gpu", "app-gpu")):
        assert s[api]["command"][:1] == ["serve"] and s[api]["profiles"] == s[ui]["profiles"]
        assert s[api]["ports"] == ["${RAGQA_API_BIND:-127.0.0.1}:${RAGQA_API_PORT:-8000}:8000"]
        assert s[api]["environment"]["RAGQA_DATABASE_URL"] == s[ui]["environment"]["RAGQA_DATABASE_URL"]
        assert "ragqa-data:/data" in s[api]["volumes"] and "/healthz" in " ".join(s[api]["healthcheck"]["test"])
        assert s[ui]["environment"]["RAGQA_API_URL"] == f"http://{api}:8000"
    assert s["api-gpu"]["environment"]["RAGQA_GENERATOR"] == "native"


def test_the_native_engines_scheduler_queue_is_found_without_loading_the_model() -> None:
    from ragqa.api.metrics import queue_length

    class Scheduler:
        def active(self) -> tuple[int, int]:
            return 4, 2  # running, waiting

    class Native:
        _loaded: tuple[Any, ...] | None = None

    native = Native()
    assert queue_length(native) is None  # not loaded yet: no queue, and nothing is loaded for the metric
    native._loaded = (Scheduler(), None, None)
    assert queue_length(native) == 2


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(keyed, settings) -> None:
    api = client(settings.model_copy(update={"api_max_body_mb": 1}))

    def body() -> Any:
        yield b'{"model": "library", "messages": [{"role": "user", "content": "'
        for _ in range(4):
            yield b"x" * 2**19
        yield b'"}]}'

    refused = api.post("/v1/chat/completions", content=body(), headers={**bearer(keyed["alice"]),
                                                                         "Content-Type": "application/json"})
    assert refused.status_code == 413 and "1 MB limit" in refused.json()["error"]["message"], refused.json()
    assert api.post("/v1/chat/completions", json=CHAT, headers=bearer(keyed["alice"])).status_code == 200


def test_an_image_upload_with_ocr_off_is_refused_as_the_ui_refuses_it(store, settings) -> None:
    Accounts(store.engine).add("ed", "editor", ())
    key = ApiKeys(store.engine).create("ed")[1]
    api = client(settings.model_copy(update={"ocr": "off"}))
    refused = api.post("/v1/documents", headers=bearer(key), data={"collection": "uploads"},
                       files={"files": ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")})
    assert refused.status_code == 400
    assert "RAGQA_OCR is off" in refused.json()["error"]["message"]
