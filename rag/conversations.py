"""Conversations of the staff UI, kept in the database: questions, answers (with their sources),
and thumbs up/down with a comment on an answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update

from rag import schema as s
from rag.errors import ConfigError, NotFoundError
from rag.followup import Exchange


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    updated_at: datetime


@dataclass(frozen=True)
class Message:
    id: int
    role: str
    content: str
    answer: dict[str, Any] | None
    rating: int | None  # latest feedback on this message, if any


def exchanges(messages: Sequence[Message]) -> list[Exchange]:
    """A conversation's questions with the answers that followed them, oldest first, as the
    history of its next question; a question left without an answer (it failed) is left out."""
    out = []
    for asked, answered in zip(messages, messages[1:], strict=False):
        if asked.role == "user" and answered.role == "assistant":
            query = (answered.answer or {}).get("searched_for") or ""
            out.append(Exchange(asked.content, answered.content, str(query)))
    return out


def _now() -> datetime:
    return datetime.now(UTC)


class Conversations:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self, first_question: str, user: str = "local") -> int:
        title = " ".join(first_question.split())[:80] or "New conversation"
        with self.engine.begin() as conn:
            return int(conn.execute(s.conversations.insert().values(
                title=title, user_name=user, created_at=_now(), updated_at=_now())
                .returning(s.conversations.c.id)).scalar_one())

    def recent(self, limit: int = 30, user: str = "local") -> list[Conversation]:
        c = s.conversations.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.id, c.title, c.updated_at).where(c.user_name == user)
                                .order_by(c.updated_at.desc(), c.id.desc()).limit(limit))
            return [Conversation(*r) for r in rows]

    def owner(self, conversation_id: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(s.conversations.c.user_name)
                                .where(s.conversations.c.id == conversation_id)).scalar()

    def messages(self, conversation_id: int) -> list[Message]:
        m, f = s.messages.c, s.feedback.c
        latest = (select(f.rating).where(f.message_id == m.id).order_by(f.id.desc()).limit(1)
                  .correlate(s.messages).scalar_subquery())
        with self.engine.connect() as conn:
            rows = conn.execute(select(m.id, m.role, m.content, m.answer, latest)
                                .where(m.conversation_id == conversation_id).order_by(m.id))
            return [Message(*r) for r in rows]

    def add(self, conversation_id: int, role: str, content: str, answer: dict[str, Any] | None = None) -> int:
        with self.engine.begin() as conn:
            found = conn.execute(update(s.conversations).where(s.conversations.c.id == conversation_id)
                                 .values(updated_at=_now())).rowcount
            if not found:
                raise NotFoundError(f"no conversation {conversation_id}")
            return int(conn.execute(s.messages.insert().values(
                conversation_id=conversation_id, role=role, content=content, answer=answer,
                created_at=_now()).returning(s.messages.c.id)).scalar_one())

    def rate(self, message_id: int, rating: int, comment: str = "") -> None:
        if rating not in (1, -1):
            raise ConfigError("a rating is +1 or -1")
        with self.engine.begin() as conn:
            if conn.execute(select(func.count()).where(s.messages.c.id == message_id)).scalar() == 0:
                raise NotFoundError(f"no message {message_id}")
            conn.execute(s.feedback.insert().values(message_id=message_id, rating=rating, comment=comment.strip(),
                                                    created_at=_now()))

    def feedback(self) -> list[dict[str, Any]]:
        f, m = s.feedback.c, s.messages.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(f.message_id, f.rating, f.comment, f.created_at, m.content)
                                .join(s.messages, m.id == f.message_id).order_by(f.id))
            return [dict(r._mapping) for r in rows]

    def remove(self, conversation_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(s.conversations).where(s.conversations.c.id == conversation_id))
