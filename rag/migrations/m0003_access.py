"""Version 3: staff accounts, reader groups per collection, and the audit log."""

from __future__ import annotations

from sqlalchemy import Connection

from rag import schema


def upgrade(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=list(schema.VERSION_3_TABLES))
