"""OpenAI-compatible endpoints: `POST /v1/chat/completions` (streamed or not) and `GET /v1/models`.

A model is what the answer may draw on: `library` (every collection the caller may read) or one
collection. The earlier messages are the conversation, as on the Ask page (a follow-up is searched
for as a standalone query). The answer's `[n]` citations become Markdown footnote references
`[^n]`, with the cited sources as footnotes at the end, so that any chat client shows them; the
sources also come as data in an extra `sources` field (the last chunk of a stream)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from llm.generator import Piece
from rag.answer import Answer
from rag.citations import CITATION
from rag.followup import Exchange, standalone_query
from rag.keys import Caller
from rag.retrieval import Scope
from ragqa.api.answering import AnswerRun, Ask
from ragqa.api.errors import ApiError, describe
from ragqa.api.parts import CallerDep, Parts, parts_of

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

#: OpenAI's reasoning efforts -> the library's reasoning levels.
EFFORTS = {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens...: accepted, the library decides
    model: str = Field(description="`library` or a collection the caller may read (GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    reasoning_effort: str | None = Field(None, description="low, medium or high (minimal: low).")
    stream_options: dict[str, Any] | None = None


@router.get("/models")
def models(request: Request, caller: CallerDep) -> dict[str, Any]:
    """The models this key may use: `library` and each collection its account may read."""
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "ragqa"}
                                       for m in parts_of(request).models(caller)]}


@router.post("/chat/completions", response_model=None)
def chat_completions(req: ChatRequest, request: Request, caller: CallerDep) -> dict[str, Any] | StreamingResponse:
    """The library's answer to the last user message, with citations; earlier messages are the conversation."""
    parts = parts_of(request)
    run = AnswerRun(parts, caller, Ask(*conversation(req.messages), scope=scope_for(parts, caller, req.model),
                                       reasoning=effort(req.reasoning_effort, parts.settings.reasoning),
                                       via="chat.completions")).start()
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if req.stream:
        usage = bool((req.stream_options or {}).get("include_usage"))
        return StreamingResponse(_events(run, ident, created, req.model, usage), media_type="text/event-stream")
    answer = run.run()
    message: dict[str, Any] = {"role": "assistant", "content": with_footnotes(answer)}
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    return {"id": ident, "object": "chat.completion", "created": created, "model": req.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": _usage(run, answer), **extra(answer)}


def effort(value: str | None, default: str) -> str:
    if value is None:
        return default
    if value.lower() not in EFFORTS:
        raise ApiError(400, f"reasoning_effort {value!r}: use low, medium or high", "invalid_reasoning_effort")
    return EFFORTS[value.lower()]


def scope_for(parts: Parts, caller: Caller, model: str) -> Scope:
    readable = parts.readable(caller)
    if model == "library":
        return Scope(readable=readable)
    if model not in parts.models(caller):  # unreadable and missing alike: names are not to be probed
        raise ApiError(404, f"no model {model!r}: use library or a collection you may read (GET /v1/models)",
                       "model_not_found")
    return Scope((model,), readable=readable)


def text_of(message: ChatMessage) -> str:
    if isinstance(message.content, list):  # content parts: the text ones
        return "".join(str(p.get("text", "")) for p in message.content if p.get("type") in ("text", "input_text"))
    return message.content or ""


_DEFINITION = re.compile(r"^\[\^\d+\]:.*$\n?", re.M)
_REFERENCE = re.compile(r"\[\^\d+\]")


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Exchange]]:
    """The question (the last message, a user's) and the earlier exchanges: each user message
    followed by an assistant message, its footnotes removed. System messages are ignored: the
    library's instructions are its own. Each earlier question's search query is rebuilt with the
    same rule the extractive backend uses, so that a chain of follow-ups keeps its subject."""
    if messages[-1].role != "user" or not text_of(messages[-1]).strip():
        raise ApiError(400, "the last message must be the user's question")
    turns = [m for m in messages[:-1] if m.role in ("user", "assistant")]
    history: list[Exchange] = []
    for asked, answered in zip(turns, turns[1:]):
        if asked.role == "user" and answered.role == "assistant":
            question = text_of(asked).strip()
            answer = _REFERENCE.sub("", _DEFINITION.sub("", text_of(answered))).strip()
            history.append(Exchange(question, answer, standalone_query(question, history)))
    return text_of(messages[-1]).strip(), history


class Footnotes:
    """`[n]` citations -> Markdown footnote references `[^n]`, across the pieces of a stream: a
    piece ending inside a possible citation (`... [1`) is held back until it closes."""

    _OPEN = re.compile(r"\[[\d,; ]{0,16}$")

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, text: str) -> str:
        text = self.pending + text
        held = self._OPEN.search(text)
        self.pending = held.group(0) if held else ""
        return to_references(text[: len(text) - len(self.pending)])

    def flush(self) -> str:
        out, self.pending = to_references(self.pending), ""
        return out


def to_references(text: str) -> str:
    return CITATION.sub(lambda m: "".join(f"[^{n}]" for n in re.findall(r"\d+", m.group(1))), text)


def footnotes(answer: Answer) -> str:
    """The cited sources as Markdown footnote definitions."""
    lines = []
    for s in answer.sources:
        if s.cited:
            p = s.passage
            where = f"p. {p.pages}" if p.pages else p.path.replace("\\", "/").rsplit("/", 1)[-1]
            title = " ".join(p.title.split())
            lines.append(f"[^{s.number}]: {title}, {where} (collection {p.collection}, document {p.document_id})")
    return "\n\n" + "\n".join(lines) if lines else ""


def with_footnotes(answer: Answer) -> str:
    return to_references(answer.text) + footnotes(answer)


def extra(answer: Answer) -> dict[str, Any]:
    """The fields beyond OpenAI's: the sources as data, what was searched for, the check's verdict."""
    return {"sources": [s.as_json() for s in answer.sources], "searched_for": answer.search_query,
            "answered": answer.answered, "problems": list(answer.problems), "dropped": list(answer.dropped),
            "notes": list(getattr(answer, "notes", ()))}


def _usage(run: AnswerRun, answer: Answer) -> dict[str, int]:
    prompt = run.draft.prompt if run.draft is not None else None
    gen = run.parts.generator
    prompt_tokens = (sum(gen.count_tokens(t.text) for t in prompt.turns) + gen.count_tokens(prompt.instructions)
                     if prompt is not None else 0)
    completion = run.tokens(answer)
    return {"prompt_tokens": int(prompt_tokens), "completion_tokens": completion,
            "total_tokens": int(prompt_tokens) + completion}


def _events(run: AnswerRun, ident: str, created: int, model: str, usage: bool) -> Iterator[str]:
    def event(**fields: Any) -> str:
        head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        return f"data: {json.dumps({**head, **fields}, default=str)}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        return event(choices=[{"index": 0, "delta": delta, "finish_reason": finish}], **more)

    notes = Footnotes()
    # With tools the model cites in its own way until `finish` renumbers the sources of every round:
    # its final text is sent once finished, and only the reasoning streams live.
    live = run.draft is not None and not run.draft.prompt.tools
    try:
        yield chunk({"role": "assistant", "content": ""})
        for piece in run.pieces():
            if not isinstance(piece, Piece):  # a tool step: reported in the sources field at the end
                continue
            if piece.channel == "final":
                text = notes.feed(piece.text) if live else ""
                if text:
                    yield chunk({"content": text})
            else:
                yield chunk({"reasoning_content": piece.text})
        answer = run.finish()
        tail = (notes.flush() + footnotes(answer)) if live else with_footnotes(answer)
        if tail:
            yield chunk({"content": tail})
        yield chunk({}, "stop", **extra(answer))
        if usage:
            yield event(choices=[], usage=_usage(run, answer))
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error becomes its last event
        status, message = describe(exc, run.parts.settings.home)
        yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'code': status}})}\n\n"
    yield "data: [DONE]\n\n"
