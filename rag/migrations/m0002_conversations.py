"""Version 2: conversations, their messages, and feedback on answers (the staff UI).
Self-contained: the tables are defined here as they were at version 2."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Connection, DateTime, ForeignKey, Integer, MetaData, String, Table, Text

_md = MetaData()

_tables = [
    Table(
        "conversations", _md,
        Column("id", Integer, primary_key=True),
        Column("title", Text, nullable=False),
        Column("user_name", String(200), nullable=False, index=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    ),
    Table(
        "messages", _md,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False,
               index=True),
        Column("role", String(20), nullable=False),
        Column("content", Text, nullable=False),
        Column("answer", JSON),
        Column("created_at", DateTime(timezone=True), nullable=False),
    ),
    Table(
        "feedback", _md,
        Column("id", Integer, primary_key=True),
        Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("rating", Integer, nullable=False),
        Column("comment", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    ),
]


def upgrade(conn: Connection) -> None:
    _md.create_all(conn, tables=_tables)
