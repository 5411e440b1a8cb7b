"""Version 4: each document's chunking recipe, so that changed chunk settings re-chunk it."""

from __future__ import annotations

from sqlalchemy import Connection

from rag import schema


def upgrade(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=list(schema.VERSION_4_TABLES))
