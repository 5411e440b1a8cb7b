"""`ragqa bench load`: simulated staff asking questions while a large ingest runs, in a store of
its own. Reports answer latency (p50, p95), errors, and whether every document went in.

The users are threads sharing one Retriever and one extractive Answerer, as the sessions of one
UI server do; the ingest is a separate `ragqa ingest` process committing into the same store.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
               think_s: float, api: bool = False) -> dict[str, Any]:
    """`api`: the users ask a `ragqa serve` process over HTTP (OpenAI-compatible chat, a key each)
    instead of threads sharing an Answerer in this process."""
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
        env = {**os.environ, "RAGQA_HOME": str(cfg.home), "RAGQA_DATABASE_URL": ""}
        server = contextlib.ExitStack()
        generator: Any = None
        if api:
            ask = server.enter_context(api_server(store, env, users, home / "serve.log"))
        else:
            retriever = wiring.retriever(cfg, store)
            generator = (wiring.generator(cfg, retriever) if wiring.generator_kind(cfg) == "native"
                         else ExtractiveGenerator(lambda t: retriever.embedder().encode(t)))
            answerer = Answerer(retriever, generator)
            answerer.ask("warm up")
            ask = lambda n, question: answerer.ask(question)  # noqa: E731 - one line, one use
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "ingest", str(corpus), "--collection", "load",
                                 "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with server:
            latencies, errors, at_once = _ask_for(ask, users, duration_s, think_s)
        # The native backend batches answers: the most it generated at once (1 under a lock).
        generating = getattr(getattr(generator, "scheduler", None), "peak_batch", None)
        out, err = proc.communicate()
        ingest_s = time.perf_counter() - started
        summary = json.loads(out) if proc.returncode in (0, 1) and out.strip() else {}
        expected = sum(1 for p in corpus.rglob("*") if p.is_file())
        docs = store.documents("load")
        report = check_store(store)
        store.close()
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {"via": "http api (ragqa serve)" if api else "in process", "users": users, "duration_s": duration_s,
            "think_s": think_s, "questions": len(latencies),
            "errors": len(errors), "error_examples": errors[:5], "most_answers_at_once": at_once,
            "most_answers_generating_at_once": generating,
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
            "questions_per_s": round(len(latencies) / duration_s, 2),
            "ingest": {"exit": proc.returncode, "seconds": round(ingest_s, 1), "files": expected,
                       "stored": len(docs), "failed": len(summary.get("failed", [])),
                       "still_running_when_asking_stopped": ingest_s > duration_s,
                       "stderr": err.strip().splitlines()[-1:] if proc.returncode not in (0, 1) else []},
            "lost_documents": expected - len(docs) - len(summary.get("failed", [])),
            "check_ok": report.ok}


def _ask_for(ask: Callable[[int, str], object], users: int, duration_s: float,
             think_s: float) -> tuple[list[float], list[str], int]:
    """Latencies, errors, and the most answers in progress at one moment (overlap in time)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most
    stop = time.perf_counter() + duration_s

    def user(n: int) -> None:
        rng = random.Random(n)
        while time.perf_counter() < stop:
            question = f"What does the {rng.choice(_WORDS)} {rng.choice(_WORDS)} section say?"
            t0 = time.perf_counter()
            with lock:
                in_flight[0] += 1
                in_flight[1] = max(in_flight)
            try:
                ask(n, question)
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted and reported: that is the benchmark
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            with lock:
                in_flight[0] -= 1
            time.sleep(rng.uniform(0, 2 * think_s))

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, in_flight[1]


@contextlib.contextmanager
def api_server(store: Any, env: dict[str, str], users: int, log: Path) -> Iterator[Callable[[int, str], object]]:
    """`ragqa serve` on the bench's store (extractive answers, no rate limit: the bench measures
    the server, not the limiter), an admin account with a key per simulated user, and a function
    that asks as user n over HTTP (raising with the server's reason on any non-200)."""
    import urllib.error
    import urllib.request

    from rag.access import Accounts
    from rag.keys import ApiKeys

    Accounts(store.engine).add("bench", "admin")
    keys = [ApiKeys(store.engine).create("bench")[1] for _ in range(users)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server_env = {**env, "RAGQA_GENERATOR": "extractive", "RAGQA_API_RATE_LIMIT": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ragqa.cli", "serve", "--port", str(port)], env=server_env,
                                stdout=out, stderr=subprocess.STDOUT)

        def ask(n: int, question: str) -> object:
            body = json.dumps({"model": "library", "messages": [{"role": "user", "content": question}]}).encode()
            req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {keys[n]}"})
            try:
                with urllib.request.urlopen(req, timeout=300) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                raise RuntimeError(f"HTTP {err.code}: {err.read().decode()[:200]}") from None

        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=5):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"ragqa serve did not start: {log.read_text()[-500:]}") from None
                    time.sleep(0.3)
            ask(0, "warm up")
            yield ask
        finally:
            proc.terminate()
            proc.wait(60)
