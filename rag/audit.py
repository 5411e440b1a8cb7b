"""The audit log: who asked what and which chunks they were shown, who added or removed which
documents, who signed in. One row per event, in the same database as the library."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from rag import schema as s


def record(engine: Engine, user: str, action: str, **detail: Any) -> None:
    with engine.begin() as conn:
        conn.execute(s.audit_log.insert().values(at=datetime.now(UTC), user_name=user, action=action, detail=detail))


def entries(engine: Engine, user: str | None = None, since: datetime | None = None,
            limit: int = 1000) -> list[dict[str, Any]]:
    a = s.audit_log.c
    q = select(a.id, a.at, a.user_name, a.action, a.detail).order_by(a.id.desc()).limit(limit)
    if user:
        q = q.where(a.user_name == user)
    if since:
        q = q.where(a.at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
    with engine.connect() as conn:
        return [{"id": r.id, "at": r.at.isoformat() if r.at else None, "user": r.user_name, "action": r.action,
                 "detail": r.detail} for r in conn.execute(q)][::-1]


def answer_detail(answer: Any) -> dict[str, Any]:
    """What an answer showed: the question, every chunk and document given as a source (the tool
    calls' passages are sources too), and each tool call the model made."""
    detail = {"question": answer.question, "searched_for": getattr(answer, "search_query", "") or answer.question,
              "backend": answer.backend,
              "chunks": sorted({c for src in answer.sources for c in src.passage.chunk_ids}),
              "documents": sorted({src.passage.document_id for src in answer.sources}),
              "cited": [src.number for src in answer.sources if src.cited]}
    steps = getattr(answer, "steps", ())
    if steps:
        detail["tool_calls"] = [st.as_json() for st in steps]
    if getattr(answer, "notes", ()):
        detail["notes"] = list(answer.notes)
    return detail
