"""Backup and restore of a whole library: the database (SQLite's online backup, or `pg_dump`
for PostgreSQL), the index files of the current generation, and uploaded originals, taken while
no ingest can commit, so the parts agree. Restore goes into an empty database, then the normal
start-up runs any newer migrations and `check` confirms the parts agree again."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from rag.db import make_engine
from rag.errors import ConfigError, StoreError
from rag.migrations import current_version
from rag.settings import Settings
from rag.store import Store

FORMAT = 1


def _libpq_url(url: str) -> str:
    """SQLAlchemy's URL as pg_dump and pg_restore take it (no '+driver')."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _run(args: list[str]) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True)
    except FileNotFoundError:
        raise ConfigError(f"{args[0]} is not installed (PostgreSQL client tools are needed)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise StoreError(f"{args[0]}: {last}")


def backup(store: Store, settings: Settings, out: Path) -> dict[str, Any]:
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: back up into a new folder")
    (out / "index").mkdir(parents=True, exist_ok=True)
    dialect = store.engine.dialect.name
    with store.frozen():
        state = store.index_state()
        if dialect == "sqlite":
            source = sqlite3.connect(make_url(settings.sql_url).database or "")
            target = sqlite3.connect(out / "ragqa.db")
            with target:
                source.backup(target)
            source.close()
            target.close()
        elif dialect == "postgresql":
            _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(out / "db.dump"),
                  "--dbname", _libpq_url(settings.sql_url)])
        else:
            raise ConfigError(f"backup supports SQLite and PostgreSQL, not {dialect}")
        if state.generation:
            for path in (store.faiss_path(state.generation), store.lexical_path(state.generation)):
                shutil.copy2(path, out / "index" / path.name)
        uploads = settings.home / "uploads"
        if uploads.is_dir():
            shutil.copytree(uploads, out / "uploads")
        counts = store.counts()
    manifest = {"format": FORMAT, "dialect": dialect, "generation": state.generation, "chunks": state.chunk_count,
                "documents": counts["documents"], "created_at": datetime.now(UTC).isoformat()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def restore(settings: Settings, src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / "manifest.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{src} is not a ragqa backup (no readable manifest.json)") from None
    url = settings.sql_url
    dialect = make_url(url).get_backend_name()
    if dialect != manifest["dialect"]:
        raise ConfigError(f"the backup is of a {manifest['dialect']} database; RAGQA_DATABASE_URL is {dialect}")
    _ensure_empty(settings)
    if dialect == "sqlite":
        target = Path(make_url(url).database or "")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "ragqa.db", target)
    else:
        _run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", _libpq_url(url), str(src / "db.dump")])
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    for path in (src / "index").iterdir():
        shutil.copy2(path, settings.index_dir / path.name)
    if (src / "uploads").is_dir():
        shutil.copytree(src / "uploads", settings.home / "uploads", dirs_exist_ok=True)
    return manifest


def _ensure_empty(settings: Settings) -> None:
    """Restore never overwrites a library: the database must hold no ragqa tables."""
    if settings.sql_url.startswith("sqlite"):
        path = Path(make_url(settings.sql_url).database or "")
        if path.exists() and path.stat().st_size > 0:
            _refuse_if_used(settings.sql_url)
        return
    _refuse_if_used(settings.sql_url)


def _refuse_if_used(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if inspect(conn).get_table_names() and current_version(conn) > 0:
                raise ConfigError("the target database already holds a library: restore into an empty one")
    finally:
        engine.dispose()

