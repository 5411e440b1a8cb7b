"""`ragqa bench load`: simulated staff asking questions while a large ingest runs, in a store of
its own. Reports answer latency (p50, p95), errors, and whether every document went in.

The users are threads sharing one Retriever and one extractive Answerer, as the sessions of one
UI server do; the ingest is a separate `ragqa ingest` process committing into the same store.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.settings import Settings

_WORDS = ("policy travel leave budget safety training contract supplier invoice laptop office canteen "
          "parking holiday pension salary meeting report audit security backup network printer").split()


def synthetic_corpus(folder: Path, files: int, seed: int = 0) -> Path:
    """`files` text documents of about 1,500 words, on a few dozen topics."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        topic = " ".join(rng.sample(_WORDS, 3))
        paragraphs = []
        for p in range(12):
            words = [rng.choice(_WORDS) for _ in range(120)]
            paragraphs.append(f"Section {p} on {topic}. " + " ".join(words) + f". Reference {i}-{p}.")
        (folder / f"doc{i:04d}.txt").write_text(f"Document {i}: {topic}\n\n" + "\n\n".join(paragraphs))
    return folder


def bench_load(settings: Settings, users: int, duration_s: float, source: Path | None, files: int,
               think_s: float) -> dict[str, Any]:
    from ingest.pipeline import ingest
    from rag.answer import Answerer
    from rag.consistency import check_store
    from rag.extractive import ExtractiveGenerator
    from ragqa import wiring

    with tempfile.TemporaryDirectory(prefix="ragqa-load-") as tmp:
        home = Path(tmp)
        cfg = settings.model_copy(update={"home": home / "home", "database_url": ""})
        corpus = source or synthetic_corpus(home / "corpus", files)
        base = synthetic_corpus(home / "base", 10, seed=1)
        store = wiring.open_store(cfg)
        ingest([base], store, cfg, wiring.embedding_ref(cfg), collection="base",
               load_embedder=lambda: wiring.load_embedder(cfg))
        retriever = wiring.retriever(cfg, store)
        answerer = Answerer(retriever, ExtractiveGenerator(lambda t: retriever.embedder().encode(t)))
        answerer.ask("warm up")
        env = {**os.environ, "RAGQA_HOME": str(cfg.home), "RAGQA_DATABASE_URL": ""}
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "ingest", str(corpus), "--collection", "load",
                                 "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        latencies, errors = _ask_for(answerer, users, duration_s, think_s)
        out, err = proc.communicate()
        ingest_s = time.perf_counter() - started
        summary = json.loads(out) if proc.returncode in (0, 1) and out.strip() else {}
        expected = sum(1 for p in corpus.rglob("*") if p.is_file())
        docs = store.documents("load")
        report = check_store(store)
        store.close()
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {"users": users, "duration_s": duration_s, "think_s": think_s, "questions": len(latencies),
            "errors": len(errors), "error_examples": errors[:5],
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
            "questions_per_s": round(len(latencies) / duration_s, 2),
            "ingest": {"exit": proc.returncode, "seconds": round(ingest_s, 1), "files": expected,
                       "stored": len(docs), "failed": len(summary.get("failed", [])),
                       "still_running_when_asking_stopped": ingest_s > duration_s,
                       "stderr": err.strip().splitlines()[-1:] if proc.returncode not in (0, 1) else []},
            "lost_documents": expected - len(docs) - len(summary.get("failed", [])),
            "check_ok": report.ok}


def _ask_for(answerer: Any, users: int, duration_s: float, think_s: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + duration_s

    def user(n: int) -> None:
        rng = random.Random(n)
        while time.perf_counter() < stop:
            question = f"What does the {rng.choice(_WORDS)} {rng.choice(_WORDS)} section say?"
            t0 = time.perf_counter()
            try:
                answerer.ask(question)
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted and reported: that is the benchmark
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            time.sleep(rng.uniform(0, 2 * think_s))

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors
