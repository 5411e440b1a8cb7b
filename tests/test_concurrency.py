"""Questions keep being answered while an ingest runs, and two ingests at once both complete.
The ingests are processes of their own (tests.helpers.ragqa_command): what is tested is processes
sharing one store, each with its own connections, locks and index files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rag.consistency import check_store
from rag.retrieval import Retriever
from rag.settings import Settings
from tests.fixtures import paragraph
from tests.helpers import ragqa, ragqa_command, run_ingest


def _folder(root: Path, name: str, n: int) -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(n):
        (folder / f"{name}{i:02d}.txt").write_text(paragraph(f"{name} subject {i}", 6))
    return folder


@pytest.mark.slow
def test_searches_keep_working_while_an_ingest_commits(tmp_path: Path, cli_env: dict[str, str], store, settings,
                                                       embedder) -> None:
    run_ingest([_folder(tmp_path, "base", 3)], store, settings, embedder)
    retriever = Retriever(store, lambda: embedder)
    env = {**cli_env, "RAGQA_COMMIT_CHUNKS": "8"}  # many small commits while we search
    proc = subprocess.Popen(ragqa_command("ingest", str(_folder(tmp_path, "more", 25))), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    searches, generations = 0, set()
    while proc.poll() is None or searches < 5:
        passages = retriever.search("base subject", 5)
        assert passages and all(p.text and p.title for p in passages)
        generations.add(retriever.snapshot().generation)
        searches += 1
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert len(generations) > 1  # the searches did see the store change under them
    assert ragqa(cli_env, "check").returncode == 0
    assert {p.title for p in retriever.search("more subject 24", 3)}


@pytest.mark.slow
def test_two_ingests_at_once_both_complete(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folders = [_folder(tmp_path, name, 8) for name in ("left", "right")]
    procs = [subprocess.Popen(ragqa_command("ingest", str(f), "--collection", f.name), env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in folders]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    from ragqa.wiring import open_store

    store = open_store(Settings(home=Path(cli_env["RAGQA_HOME"]), database_url=cli_env["RAGQA_DATABASE_URL"]))
    assert sorted((d.collection, d.status) for d in store.documents()) == \
        [("left", "ready")] * 8 + [("right", "ready")] * 8
    assert check_store(store).ok


def test_processes_opening_a_new_database_at_once_migrate_it_once(settings: Settings) -> None:
    """App and ingest containers (or two ingests) starting together on a new database: every one
    opens it, and each migration step is applied exactly once."""
    database_url = settings.sql_url
    settings.home.mkdir(parents=True, exist_ok=True)
    code = "import sys; from rag.db import open_database; open_database(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, database_url], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    from sqlalchemy import select

    from rag.db import make_engine
    from rag.migrations import LATEST
    from rag.schema import schema_version

    with make_engine(database_url).connect() as conn:
        versions = conn.execute(select(schema_version.c.version)).scalars().all()
    assert sorted(versions) == list(range(1, LATEST + 1))


def test_a_database_locked_at_opening_is_waited_for_then_reported(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite says "database is locked" at once where waiting could deadlock (two processes
    switching a new file to WAL together): opening tries again, and gives up with one line."""
    from sqlalchemy.exc import OperationalError

    from rag import db
    from rag.errors import StoreError

    real, calls = db.migrate, []

    def locked_twice(engine: object) -> list[int]:
        calls.append(1)
        if len(calls) <= 2:
            raise OperationalError("PRAGMA journal_mode=WAL", {}, Exception("database is locked"))
        return real(engine)  # type: ignore[arg-type]

    monkeypatch.setattr(db, "migrate", locked_twice)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert db.open_database(url) is not None and len(calls) == 3

    def always_locked(engine: object) -> list[int]:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(db, "migrate", always_locked)
    with pytest.raises(StoreError, match="^cannot open database .*: database is locked$"):
        db.open_database(url, lock_wait_s=0.3)
