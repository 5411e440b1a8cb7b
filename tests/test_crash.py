"""kill -9 at random moments of an ingest: the store stays consistent and a re-run completes it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures import paragraph
from tests.helpers import ragqa, ragqa_command, write_files


def _folder(root: Path) -> Path:
    """34 files (30 notes, 4 three-page PDFs), not yet ingested."""
    notes = {f"note{i:02d}.txt": paragraph(f"topic {i} of the crash library", 8) for i in range(30)}
    reports = {f"report{i}.pdf": [paragraph(f"report {i} page {p}", 6) for p in range(3)] for i in range(4)}
    return write_files(root / "lib", {**notes, **reports})


def _snapshot(env: dict[str, str]) -> set[tuple[str, str, int, str]]:
    from rag.settings import Settings
    from ragqa.wiring import open_store
    from tests.helpers import chunk_snapshot

    store = open_store(Settings(home=Path(env["RAGQA_HOME"]), database_url=env["RAGQA_DATABASE_URL"]))
    try:
        docs = {(d.path, d.status) for d in store.documents()}
        return {(p, "", o, t) for p, o, t in chunk_snapshot(store)} | {(p, st, -1, "") for p, st in docs}
    finally:
        store.close()


def _generation(env: dict[str, str]) -> int:
    from sqlalchemy import create_engine, text

    url = env["RAGQA_DATABASE_URL"] or f"sqlite:///{Path(env['RAGQA_HOME']) / 'ragqa.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT generation FROM index_state")).scalar() or 0)
    except Exception:  # noqa: BLE001 - the database may not exist yet
        return 0
    finally:
        engine.dispose()


def _kill_after(proc: subprocess.Popen[bytes], env: dict[str, str], commits: int, extra_s: float) -> bool:
    """SIGKILL once `commits` more commits have happened (0: at once), plus a random delay."""
    target = _generation(env) + commits
    deadline = time.monotonic() + 120
    while commits and _generation(env) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(extra_s)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_kill_9_during_ingest_never_breaks_the_store(tmp_path: Path, cli_env: dict[str, str]) -> None:
    lib = _folder(tmp_path)
    env = {**cli_env, "RAGQA_COMMIT_CHUNKS": "12"}  # many commits, so kills land between them
    rng = random.Random(20261125)
    plan = [(0, rng.uniform(1.0, 4.0))] + [(rng.randint(1, 3), rng.uniform(0.0, 0.6)) for _ in range(3)]
    documents_after_kill = []
    for commits, extra in plan:
        # A process of its own, to be killed; checks and the final ingest run in this process.
        proc = subprocess.Popen(ragqa_command("ingest", str(lib)), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert _kill_after(proc, env, commits, extra), "the ingest finished before the kill"
        check = ragqa(env, "check")
        assert check.returncode == 0, check.stdout + check.stderr
        documents_after_kill.append(len({p for p, st, o, _ in _snapshot(env) if o == -1}))
    assert any(0 < n < 34 for n in documents_after_kill), documents_after_kill
    final = ragqa(env, "ingest", str(lib), "--json")
    assert final.returncode == 0, final.stderr
    assert ragqa(env, "check").returncode == 0

    # The same files ingested cleanly in one go give the very same store content.
    clean_env = {**env, "RAGQA_HOME": str(tmp_path / "clean"), "RAGQA_DATABASE_URL": ""}
    assert ragqa(clean_env, "ingest", str(lib)).returncode == 0
    assert _snapshot(env) == _snapshot(clean_env)
