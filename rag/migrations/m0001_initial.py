"""Version 1: the first schema. Frozen: it creates the tables as they were at version 1."""

from __future__ import annotations

from sqlalchemy import Connection

from rag import schema


def upgrade(conn: Connection) -> None:
    # Only version 1's tables: later steps create theirs. When a later step changes one of these
    # tables, copy its version-1 definition here first so this step keeps building what it built.
    schema.metadata.create_all(conn, tables=list(schema.VERSION_1_TABLES))
    conn.execute(schema.index_state.insert().values(id=1, generation=0, chunk_count=0))
