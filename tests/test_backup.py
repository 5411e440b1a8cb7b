"""Backup and restore of database plus index (SQLite, and PostgreSQL in the second pass): the
restored library equals the original and searches the same; a used database is never overwritten."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.conversations import Conversations
from tests.conftest import fresh_database
from tests.fixtures import make_pdf
from tests.helpers import chunk_snapshot, no_traceback, ragqa


@pytest.fixture
def second_url(database_url: str) -> Iterator[str]:
    """Where the restore goes: another SQLite file, or another fresh PostgreSQL database."""
    yield from fresh_database("ragqa_r")


def test_backup_restore_round_trip_loses_nothing(tmp_path: Path, cli_env: dict[str, str], second_url: str) -> None:
    from rag.settings import Settings
    from ragqa.wiring import open_store

    lib = tmp_path / "lib"
    make_pdf(lib / "manual.pdf", ["Safety first. Wear gloves.", "The kiln fires clay pots at 1200 degrees."])
    (lib / "sea.md").write_text("# Sea\n\nSonar maps the sea floor with echoes.")
    assert ragqa(cli_env, "ingest", str(lib)).returncode == 0
    first = Settings(home=Path(cli_env["RAGQA_HOME"]), database_url=cli_env.get("RAGQA_DATABASE_URL", ""))
    chats = Conversations(open_store(first).engine)
    chats.add(chats.start("kiln?"), "user", "kiln?")
    before = ragqa(cli_env, "search", "kiln temperature", "--json").stdout

    out = ragqa(cli_env, "backup", str(tmp_path / "backup"), "--json")
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert manifest["documents"] == 2 and manifest["generation"] > 0

    env2 = {**cli_env, "RAGQA_HOME": str(tmp_path / "home2"), "RAGQA_DATABASE_URL": second_url}
    restored = ragqa(env2, "restore", str(tmp_path / "backup"), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["ok"]
    second = Settings(home=tmp_path / "home2", database_url=second_url)
    assert chunk_snapshot(open_store(second)) == chunk_snapshot(open_store(first))
    assert [c.title for c in Conversations(open_store(second).engine).recent()] == ["kiln?"]
    after = ragqa(env2, "search", "kiln temperature", "--json").stdout
    assert json.loads(after)["passages"] == json.loads(before)["passages"]
    assert ragqa(env2, "check").returncode == 0

    again = ragqa(env2, "restore", str(tmp_path / "backup"))  # the target now holds a library
    no_traceback(again)
    assert again.returncode == 2 and "already holds a library" in again.stderr
    used = ragqa(cli_env, "backup", str(tmp_path / "backup"))
    assert used.returncode == 2 and "not empty" in used.stderr
