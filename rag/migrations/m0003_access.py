"""Version 3: staff accounts, reader groups per collection, and the audit log.
Self-contained: the tables are defined here as they were at version 3."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Connection, DateTime, ForeignKey, Integer, MetaData, String, Table, Text

_md = MetaData()
# Only what the foreign key below refers to; version 1 created the table.
Table("collections", _md, Column("id", Integer, primary_key=True))

_tables = [
    Table(
        "users", _md,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("password_hash", Text),
        Column("role", String(20), nullable=False),
        Column("groups", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    ),
    Table(
        "collection_readers", _md,
        Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
        Column("group_name", String(200), primary_key=True),
    ),
    Table(
        "audit_log", _md,
        Column("id", Integer, primary_key=True),
        Column("at", DateTime(timezone=True), nullable=False, index=True),
        Column("user_name", String(200), nullable=False, index=True),
        Column("action", String(40), nullable=False),
        Column("detail", JSON, nullable=False),
    ),
]


def upgrade(conn: Connection) -> None:
    _md.create_all(conn, tables=_tables)
