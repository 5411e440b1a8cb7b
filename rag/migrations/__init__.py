"""Numbered schema migrations. Each step is a function of one connection, applied in its own
transaction together with its row in `schema_version`, so a crash never leaves half a step.
New steps go at the end of STEPS; a released step is never edited. Each step defines the tables it
creates or changes itself (its own MetaData), never through `rag.schema`, so that editing today's
schema cannot change what an old step does (tests/test_migrations.py checks that the steps together
build `rag.schema`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, inspect, select

from rag.migrations import (
    m0001_initial,
    m0002_conversations,
    m0003_access,
    m0004_chunking,
    m0005_api_keys,
    m0006_page_ocr,
)
from rag.schema import schema_version

STEPS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, m0001_initial.upgrade),
    (2, m0002_conversations.upgrade),
    (3, m0003_access.upgrade),
    (4, m0004_chunking.upgrade),
    (5, m0005_api_keys.upgrade),
    (6, m0006_page_ocr.upgrade),
]

LATEST = STEPS[-1][0]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0


def _serialise_migrators(conn: Connection) -> None:
    """Two processes starting at once (app and ingest containers, two ingests) must not both run
    a step: each takes a lock held until its step commits, *before* reading the version. On
    SQLite that is BEGIN IMMEDIATE (a plain transaction would only lock at its first write, after
    both had read version 0); on PostgreSQL an advisory transaction lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7270001)")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> list[int]:
    """Apply every pending step; returns the versions applied (empty when up to date)."""
    applied: list[int] = []
    for version, step in STEPS:
        with engine.begin() as conn:
            _serialise_migrators(conn)
            if current_version(conn) >= version:
                continue
            step(conn)
            conn.execute(schema_version.insert().values(version=version, applied_at=datetime.now(UTC)))
            applied.append(version)
    return applied
