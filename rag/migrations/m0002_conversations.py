"""Version 2: conversations, their messages, and feedback on answers (the staff UI)."""

from __future__ import annotations

from sqlalchemy import Connection

from rag import schema


def upgrade(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=list(schema.VERSION_2_TABLES))
