"""kill -9 an ingest at random moments, again and again, then let it finish.

    python scripts/kill_loop.py PATH [--kills 20] [--seed 1]

After every kill `ragqa check` must pass; at the end the store must equal a clean ingest of the
same files (same documents, same chunks, same texts). Prints one JSON object; exit 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select


def ragqa(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ragqa.cli", *args], env=env, capture_output=True, text=True)


def snapshot(home: Path) -> set[tuple[str, str, int, str]]:
    from rag import schema as s
    from rag.settings import Settings
    from ragqa.wiring import open_store

    store = open_store(Settings(home=home, database_url=""))
    d, c = s.documents.c, s.chunks.c
    with store.engine.connect() as conn:
        docs = {(Path(p).name, st, -1, "") for p, st in conn.execute(select(d.path, d.status))}
        chunks = {(Path(p).name, "", o, t) for p, o, t in conn.execute(
            select(d.path, c.ordinal, c.text).join(s.documents, d.id == c.document_id))}
    store.close()
    return docs | chunks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", type=Path)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-delay", type=float, default=30.0, help="longest wait before a kill (s)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="ragqa-kill-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "RAGQA_HOME": str(home), "RAGQA_DATABASE_URL": "", "RAGQA_COMMIT_CHUNKS": "16"}
        kills: list[dict[str, Any]] = []
        for _ in range(a.kills):
            delay = rng.uniform(0.5, a.max_delay)
            proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "ingest", str(a.path)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            finished = proc.poll() is not None
            if not finished:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            check = ragqa(env, "check", "--json")
            state = json.loads(check.stdout) if check.stdout.strip() else {}
            kills.append({"after_s": round(delay, 2), "killed": not finished, "check_ok": check.returncode == 0,
                          "documents": state.get("documents"), "chunks": state.get("chunks")})
        final = ragqa(env, "ingest", str(a.path), "--json")
        final_check = ragqa(env, "check").returncode == 0
        clean_home = Path(tmp) / "clean"
        ragqa({**env, "RAGQA_HOME": str(clean_home)}, "ingest", str(a.path))
        same = snapshot(home) == snapshot(clean_home)
    result = {"kills": kills, "every_check_ok": all(k["check_ok"] for k in kills),
              "killed_mid_ingest": sum(k["killed"] for k in kills), "final_exit": final.returncode,
              "final_check_ok": final_check, "equals_clean_ingest": same}
    print(json.dumps(result))
    ok = result["every_check_ok"] and final_check and same and final.returncode in (0, 1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
