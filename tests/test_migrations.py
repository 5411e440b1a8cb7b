"""The numbered migrations, run on an empty database, build exactly the schema `rag.schema` declares
(tables, columns and their types, keys, indexes), on SQLite and, in the second pass, on PostgreSQL;
and no released migration reads today's schema."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect

import rag.migrations
from rag import schema
from rag.migrations import LATEST, migrate
from tests.conftest import fresh_database


@pytest.fixture
def declared_url(database_url: str) -> Iterator[str]:
    """Where `schema.metadata.create_all` builds the reference: another fresh PostgreSQL database."""
    yield from fresh_database("ragqa_s")


def _engine(url: str, sqlite_file: Path) -> Engine:
    return create_engine(url or f"sqlite:///{sqlite_file}")


def _describe(engine: Engine) -> dict[str, Any]:
    """Everything the database says about its tables, in a comparable form."""
    insp = inspect(engine)
    tables: dict[str, Any] = {}
    for name in sorted(insp.get_table_names()):
        tables[name] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                        for c in insp.get_columns(name)],
            "primary_key": insp.get_pk_constraint(name)["constrained_columns"],
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                    tuple(f["referred_columns"]), str(sorted(f.get("options", {}).items())))
                                   for f in insp.get_foreign_keys(name)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in insp.get_indexes(name)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(name)),
        }
    if engine.dialect.name == "sqlite":  # its own record of the DDL: catches what reflection leaves out (AUTOINCREMENT)
        with engine.connect() as conn:
            tables["sqlite_master"] = sorted(tuple(row) for row in conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
    return tables


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path, database_url: str, declared_url: str) -> None:
    migrated = _engine(database_url, tmp_path / "migrated.db")
    declared = _engine(declared_url, tmp_path / "declared.db")
    try:
        assert migrate(migrated) == list(range(1, LATEST + 1))
        schema.metadata.create_all(declared)
        got, want = _describe(migrated), _describe(declared)
        assert sorted(set(got) - {"sqlite_master"}) == sorted(schema.metadata.tables), (
            "the migrations build other tables than rag.schema")
        for name in want:
            assert got[name] == want[name], f"table {name}: the migrations build something else than rag.schema"
    finally:
        migrated.dispose()
        declared.dispose()


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_released_migrations_do_not_read_todays_schema() -> None:
    steps = sorted(Path(rag.migrations.__file__).parent.glob("m[0-9]*.py"))
    assert len(steps) == LATEST
    for step in steps:
        own = {m for m in _imported_modules(step) if m == "rag" or m.startswith("rag.")}
        assert not own, f"{step.name} imports {sorted(own)}: a released step defines its own tables"
