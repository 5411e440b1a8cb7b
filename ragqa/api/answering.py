"""One answer for one caller, as the UI and `ragqa ask` produce it (Answerer.prepare, stream,
finish), with what an HTTP server adds around it: the trace, the metrics, the audit entry with
the key's account. Prepared eagerly (`start`), so that a bad request fails before a stream starts."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from llm.generator import Piece
from rag.answer import Answer, Collected, Draft
from rag.audit import answer_detail, record
from rag.followup import Exchange
from rag.keys import Caller
from rag.retrieval import Scope
from ragqa.api.tracing import TracedGenerator, TracedRetriever


@dataclass(frozen=True)
class Ask:
    question: str
    history: Sequence[Exchange]
    scope: Scope
    reasoning: str
    via: str  # the endpoint, for the audit log


class AnswerRun:
    def __init__(self, parts: Any, caller: Caller, ask: Ask) -> None:
        from ragqa import wiring

        self.parts, self.caller, self.ask_ = parts, caller, ask
        self.started = time.perf_counter()
        self.first_at: float | None = None
        self.span = parts.tracer.start_span("answer", attributes={
            "ragqa.user": caller.principal.name, "ragqa.key": caller.key_id, "ragqa.reasoning": ask.reasoning,
            "ragqa.history": len(ask.history), "ragqa.via": ask.via})
        parent = trace.set_span_in_context(self.span)
        retriever = TracedRetriever(parts.retriever, parts.tracer, parent)
        generator = TracedGenerator(parts.generator, parts.tracer, parent)
        self.answerer = wiring.answerer(parts.settings, cast(Any, retriever), cast(Any, generator))
        self.collected = Collected()
        self.draft: Draft | None = None
        self.answer: Answer | None = None

    def start(self) -> AnswerRun:
        """Rewrite a follow-up, retrieve, build the prompt; errors (an unknown collection) raise here."""
        try:
            self.draft = self.answerer.prepare(self.ask_.question, history=self.ask_.history, scope=self.ask_.scope,
                                               reasoning=self.ask_.reasoning)
        except BaseException as exc:
            self._failed(exc)
            raise
        return self

    def pieces(self) -> Iterator[Any]:
        """The generator's pieces as they come (reasoning and final)."""
        assert self.draft is not None, "start() first"
        try:
            for piece in self.answerer.stream(self.draft, self.collected):
                if self.first_at is None and isinstance(piece, Piece):  # a token, not a tool step
                    self.first_at = time.perf_counter()
                    self.parts.metrics.first_token_seconds.observe(self.first_at - self.started)
                yield piece
        except BaseException as exc:
            self._failed(exc)
            raise

    def finish(self) -> Answer:
        """Check the citations, count, audit, end the trace."""
        assert self.draft is not None, "start() first"
        try:
            answer = self.answerer.finish(self.draft, self.collected)
            record(self.parts.store.engine, self.caller.principal.name, "ask", via=self.ask_.via,
                   key=self.caller.key_id, **answer_detail(answer))
        except BaseException as exc:
            self._failed(exc)
            raise
        self._count(answer)
        self.span.set_attribute("ragqa.answered", answer.answered)
        self.span.set_attribute("ragqa.sources", len(answer.sources))
        self.span.end()
        self.answer = answer
        return answer

    def run(self) -> Answer:
        self.start()
        for _ in self.pieces():
            pass
        return self.finish()

    def tokens(self, answer: Answer) -> int:
        text = answer.text + answer.reasoning
        return int(self.parts.generator.count_tokens(text)) if text else 0

    def _count(self, answer: Answer) -> None:
        m, now = self.parts.metrics, time.perf_counter()
        m.answer_seconds.observe(now - self.started)
        m.answers.labels("answered" if answer.answered else "unanswered").inc()
        tokens = self.tokens(answer)
        m.tokens.inc(tokens)
        if self.first_at is not None and tokens and now > self.first_at:
            m.tokens_per_second.observe(tokens / (now - self.first_at))

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, GeneratorExit):  # the client went away mid-stream
            self.span.set_attribute("ragqa.abandoned", True)
            self._audit_abandoned()
        else:
            self.parts.metrics.answers.labels("failed").inc()
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self.span.end()

    def _audit_abandoned(self) -> None:
        """A stream the client left: part of the answer was shown, so what it drew on is recorded."""
        if self.draft is None:
            return
        passages = self.draft.passages
        try:
            record(self.parts.store.engine, self.caller.principal.name, "ask", via=self.ask_.via,
                   key=self.caller.key_id, abandoned=True, question=self.draft.question,
                   searched_for=self.draft.search_query or self.draft.question,
                   chunks=sorted(c for p in passages for c in p.chunk_ids),
                   documents=sorted({p.document_id for p in passages}))
        except Exception:  # a closing stream has no one to tell; the log has it
            import logging

            logging.getLogger("ragqa.api").exception("could not audit an abandoned answer")
