"""OpenTelemetry traces of answers: one `answer` span per answer with `retrieval` spans (every
search: the answer's own and any a tool round makes) and `generation` spans (every call to the
generator: the answer, a follow-up's query rewrite, each tool round) inside it.

Off by default: without RAGQA_TRACES the tracer is OpenTelemetry's no-op one and nothing is
recorded or sent. Spans are started with an explicit parent rather than made "current": the
generation span lives inside a generator that a streaming response advances from several threads,
and a context attached in one thread cannot be detached in another."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode, Tracer

from rag.errors import ConfigError


def tracer_for(setting: str, exporter: Any = None) -> tuple[Tracer, Any]:
    """(tracer, provider) for the setting: '' off, 'console', or an OTLP/HTTP URL. A given
    `exporter` (tests: an in-memory one) is used as it is, span by span."""
    if exporter is None and not setting.strip():
        return trace.NoOpTracer(), None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "ragqa"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif setting.strip() == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif setting.startswith(("http://", "https://")):
        try:  # an optional extra, so imported by name
            otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        except ImportError:
            raise ConfigError("RAGQA_TRACES is an OTLP URL but the OTLP exporter is not installed: "
                              "pip install 'ragqa[otlp]'") from None
        provider.add_span_processor(BatchSpanProcessor(otlp.OTLPSpanExporter(endpoint=setting.strip())))
    else:
        raise ConfigError(f"RAGQA_TRACES={setting!r}: use nothing (off), console, or an http(s) OTLP URL")
    return provider.get_tracer("ragqa"), provider


class TracedRetriever:
    """The retriever, with a `retrieval` span around each search."""

    def __init__(self, inner: Any, tracer: Tracer, parent: Context) -> None:
        self._inner, self._tracer, self._parent = inner, tracer, parent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def search(self, query: str, k: int = 10, mode: str = "hybrid", scope: Any = None) -> Any:
        span = self._tracer.start_span("retrieval", context=self._parent,
                                       attributes={"ragqa.query": query[:200], "ragqa.k": k, "ragqa.mode": mode})
        try:
            found = self._inner.search(query, k, mode, scope)
            span.set_attribute("ragqa.passages", len(found))
            return found
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()


class TracedGenerator:
    """The generator, with a `generation` span around each call; a call that ends in a tool call
    is renamed `tool round N`, a follow-up's query rewrite `query rewrite`."""

    def __init__(self, inner: Any, tracer: Tracer, parent: Context) -> None:
        self._inner, self._tracer, self._parent = inner, tracer, parent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def context_tokens(self) -> int:
        return int(self._inner.context_tokens)

    def stream(self, prompt: Any) -> Iterator[Any]:
        from rag.followup import REWRITE_INSTRUCTIONS

        steps = len(getattr(prompt, "steps", ()) or ())
        name = "query rewrite" if prompt.instructions == REWRITE_INSTRUCTIONS else "generation"
        span = self._tracer.start_span(name, context=self._parent, attributes={
            "ragqa.backend": str(getattr(self._inner, "name", "")), "ragqa.reasoning": str(prompt.reasoning),
            "ragqa.sources": len(prompt.sources), "ragqa.tool_rounds_before": steps})
        pieces = 0
        try:
            for piece in self._inner.stream(prompt):
                if hasattr(piece, "call_id"):  # a ToolCall: this round asked for a tool
                    span.update_name(f"tool round {steps + 1}")
                    span.set_attribute("ragqa.tool", str(getattr(piece, "name", "")))
                else:
                    pieces += 1
                yield piece
            span.set_attribute("ragqa.pieces", pieces)
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()
