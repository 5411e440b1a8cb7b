"""Version 1: the first schema. Frozen: it creates the tables as they were at version 1."""

from __future__ import annotations

from sqlalchemy import Connection

from rag import schema


def upgrade(conn: Connection) -> None:
    # At version 1 the current schema *is* version 1. When a later step changes a table, copy the
    # version-1 definitions here first so this step keeps building what it built.
    schema.metadata.create_all(conn)
    conn.execute(schema.index_state.insert().values(id=1, generation=0, chunk_count=0))
