"""The native JSON endpoints: search, ask, documents (list, upload, delete) and the health check.
Their objects are the CLI's `--json` objects (`ragqa search --json`, `ragqa ask --json`,
`ragqa docs --json`, `ragqa ingest --json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from rag.audit import record
from rag.keys import Caller
from rag.retrieval import Scope
from ragqa.api.answering import AnswerRun, Ask
from ragqa.api.errors import ApiError
from ragqa.api.parts import CallerDep, Parts, parts_of

_ONLY = "Only these collections (empty: all you may read)."
router = APIRouter(prefix="/v1", tags=["library"])
health = APIRouter(tags=["operations"])


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=200)
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    collections: list[str] = Field(default_factory=list, description=_ONLY)
    documents: list[int] = Field(default_factory=list, description="Only these document ids.")


class AskRequest(BaseModel):
    question: str = Field(min_length=1)
    reasoning: Literal["low", "medium", "high"] | None = None
    collections: list[str] = Field(default_factory=list, description=_ONLY)
    conversation: int | None = Field(None, description="Continue this stored conversation of the key's account "
                                     "(the Ask page's); the question and answer are added to it.")


@router.post("/search")
def search(req: SearchRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Ranked passages, as `ragqa search --json`; only what the key's account may read is searched."""
    parts = parts_of(request)
    scope = Scope(tuple(req.collections), tuple(req.documents), parts.readable(caller))
    passages = parts.retriever.search(req.query, req.k, req.mode, scope)
    record(parts.store.engine, caller.principal.name, "search", via="api", key=caller.key_id, query=req.query,
           chunks=sorted(c for p in passages for c in p.chunk_ids))
    return {"query": req.query, "mode": req.mode, "passages": [p.as_json() for p in passages]}


@router.post("/ask")
def ask(req: AskRequest, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The answer with checked citations, as `ragqa ask --json`."""
    from rag.conversations import Conversations, exchanges

    parts = parts_of(request)
    chats, history = None, []
    if req.conversation is not None:
        chats = Conversations(parts.store.engine)
        if chats.owner(req.conversation) != caller.principal.name:  # someone else's or missing: the same answer
            raise ApiError(404, f"no conversation {req.conversation} of {caller.principal.name}'s")
        history = exchanges(chats.messages(req.conversation))
    scope = Scope(tuple(req.collections), readable=parts.readable(caller))
    answer = AnswerRun(parts, caller, Ask(req.question, history, scope, req.reasoning or parts.settings.reasoning,
                                          "ask")).run()
    if chats is not None and req.conversation is not None:
        chats.add(req.conversation, "user", req.question.strip())
        chats.add(req.conversation, "assistant", answer.text, answer.as_json())
    return answer.as_json()


@router.get("/documents")
def documents(request: Request, caller: CallerDep, collection: str | None = None) -> list[dict[str, Any]]:
    """Documents with their status, in the collections the key's account may read."""
    parts = parts_of(request)
    readable = parts.readable(caller)
    return [d.as_json() for d in parts.store.documents(collection) if readable is None or d.collection in readable]


@router.post("/documents", status_code=201)
async def upload(request: Request, files: Annotated[list[UploadFile], File(description="One or more files.")],
                 caller: CallerDep, collection: Annotated[str, Form()] = "default") -> dict[str, Any]:
    """Add files to a collection (editors and admins; the same checks as the Library page's upload:
    size, type by content, a plain file name). All files are checked before any is stored."""
    parts = parts_of(request)
    collection = collection.strip() or "default"
    parts.accounts.require_write(caller.principal, collection)
    received = [(f.filename or "", await f.read()) for f in files]
    return await anyio.to_thread.run_sync(_ingest_uploads, parts, caller, collection, received)


def _ingest_uploads(parts: Parts, caller: Caller, collection: str, received: list[tuple[str, bytes]]) -> dict[str, Any]:
    from ingest.formats import skip_reason
    from ingest.uploads import check_upload, ingest_uploads, save_upload
    from ragqa import wiring

    cfg = parts.settings
    limit = int(min(cfg.max_file_mb, cfg.api_max_body_mb) * 2**20)
    for name, data in received:
        plain_name(name)
        reason = skip_reason(Path(name), ocr=cfg.ocr != "off")
        if reason is not None:
            raise ApiError(400, f"{name}: {reason}", "unsupported_file")
        if len(data) > limit:
            raise ApiError(413, f"{name}: larger than the {limit / 2**20:g} MB upload limit")
        check_upload(name, data, limit)  # LoadError -> 400 with its reason
    paths = [save_upload(cfg.home / "uploads", name, data, limit) for name, data in received]
    summary = ingest_uploads(paths, parts.store, cfg, wiring.embedding_ref(cfg), user=caller.principal.name,
                             collection=collection, files=[name for name, _ in received],
                             load_embedder=lambda: parts.retriever.embedder(), via="api", key=caller.key_id)
    return summary.as_json()


def plain_name(name: str) -> None:
    """A file name and nothing else: no folders, no '..', no control characters. The UI quietly
    keeps the last part of such a name; a program that sends one has a bug worth telling about."""
    if not name.strip():
        raise ApiError(400, "an uploaded file needs a file name")
    if "/" in name or "\\" in name or name.strip() in (".", "..") or any(ord(c) < 32 for c in name):
        raise ApiError(400, f"{name!r} is not a plain file name (no folders, '..' or control characters)",
                       "bad_file_name")


@router.delete("/documents/{document_id}")
def delete(document_id: int, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Remove a document from the store (editors of its collection and admins)."""
    from rag.writer import open_writer

    parts = parts_of(request)
    readable = parts.readable(caller)
    found = [d for d in parts.store.documents(ids=[document_id]) if readable is None or d.collection in readable]
    if not found:
        raise ApiError(404, f"no document {document_id}")
    parts.accounts.require_write(caller.principal, found[0].collection)
    with open_writer(parts.store) as w:
        w.remove(document_id)
    record(parts.store.engine, caller.principal.name, "remove", via="api", key=caller.key_id,
           documents=[{"id": document_id, "path": found[0].path}])
    return {"removed": [document_id]}


@health.get("/healthz")
def healthz(request: Request) -> dict[str, Any]:
    """200 when the server can read its store (no key needed: for health checks)."""
    parts = parts_of(request)
    try:
        state = parts.store.index_state()
    except Exception as exc:  # noqa: BLE001 - reported as unhealthy, not as a crash
        raise ApiError(503, f"the store cannot be read: {type(exc).__name__}") from None
    return {"status": "ok", "generation": state.generation}
