"""Version 4: each document's chunking recipe, so that changed chunk settings re-chunk it.
Self-contained: the table is defined here as it was at version 4."""

from __future__ import annotations

from sqlalchemy import Column, Connection, ForeignKey, Integer, MetaData, String, Table

_md = MetaData()
# Only what the foreign key below refers to; version 1 created the table.
Table("documents", _md, Column("id", Integer, primary_key=True))

_document_chunking = Table(
    "document_chunking", _md,
    Column("document_id", Integer, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    Column("recipe", String(200), nullable=False),
)


def upgrade(conn: Connection) -> None:
    _md.create_all(conn, tables=[_document_chunking])
