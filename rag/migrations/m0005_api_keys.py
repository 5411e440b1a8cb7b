"""Version 5: the HTTP API's keys (stored as SHA-256 hashes). Self-contained: the table is defined
here as it was at version 5."""

from __future__ import annotations

from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table

_md = MetaData()

_api_keys = Table(
    "api_keys", _md,
    Column("id", Integer, primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("user_name", String(200), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    sqlite_autoincrement=True,  # a revoked key's id is never given to a new key
)


def upgrade(conn: Connection) -> None:
    _md.create_all(conn, tables=[_api_keys])
