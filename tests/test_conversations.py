"""Conversations and feedback kept in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from rag.conversations import Conversations
from rag.errors import ConfigError, NotFoundError


def test_conversations_keep_messages_answers_and_feedback(store) -> None:
    chats = Conversations(store.engine)
    first = chats.start("  What is the   leave policy?  ")
    second = chats.start("Where is the canteen?")
    chats.add(first, "user", "What is the leave policy?")
    answer_id = chats.add(first, "assistant", "25 days [1]", {"sources": [{"number": 1}], "backend": "extractive"})
    assert [c.id for c in chats.recent()] == [first, second]  # the one just used comes first
    assert chats.recent()[0].title == "What is the leave policy?"
    chats.rate(answer_id, -1, " wrong year ")
    chats.rate(answer_id, 1)
    messages = chats.messages(first)
    assert [(m.role, m.content) for m in messages] == [("user", "What is the leave policy?"),
                                                       ("assistant", "25 days [1]")]
    assert messages[1].answer == {"sources": [{"number": 1}], "backend": "extractive"} and messages[1].rating == 1
    assert [(f["rating"], f["comment"]) for f in chats.feedback()] == [(-1, "wrong year"), (1, "")]
    chats.remove(first)
    assert chats.messages(first) == [] and chats.feedback() == [] and [c.id for c in chats.recent()] == [second]


def test_bad_feedback_and_unknown_ids_are_refused(store) -> None:
    chats = Conversations(store.engine)
    with pytest.raises(NotFoundError):
        chats.add(999, "user", "hello")
    with pytest.raises(NotFoundError):
        chats.rate(999, 1)
    conv = chats.start("q")
    msg = chats.add(conv, "user", "q")
    with pytest.raises(ConfigError):
        chats.rate(msg, 5)
