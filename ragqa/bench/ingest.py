"""`ragqa bench ingest PATH`: the pipeline's speed next to the embedding model's alone.

Both run in this process on the same chunks with the model already loaded and warm. This VM's
speed drifts by several percent from minute to minute, so the two are interleaved for a few
rounds (pipeline into a fresh store, then encode alone) and compared over all rounds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest.pipeline import IngestSummary, ingest
from rag import schema as s
from rag.settings import Settings
from rag.store import Store


def bench_ingest(path: Path, settings: Settings, rounds: int = 2) -> dict[str, Any]:
    from ragqa import wiring

    ref = wiring.embedding_ref(settings)
    embedder = wiring.load_embedder(settings, ref)
    embedder.encode(["warm-up: the first call pays for allocations"] * 32)
    runs: list[IngestSummary] = []
    encode_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ragqa-bench-") as tmp:
        for r in range(rounds):
            cfg = settings.model_copy(update={"home": Path(tmp) / f"round{r}", "database_url": ""})
            cfg.home.mkdir(parents=True)
            store = Store.open(cfg.sql_url, cfg.index_dir)
            runs.append(ingest([path], store, cfg, ref, load_embedder=lambda: embedder))
            with store.engine.connect() as c:
                texts = list(c.execute(select(s.chunks.c.text).order_by(s.chunks.c.id)).scalars())
            t0 = time.perf_counter()
            embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
            encode_s.append(time.perf_counter() - t0)
            if r == rounds - 1:
                again = ingest([path], store, cfg, ref, load_embedder=lambda: embedder)
            store.close()
    first = runs[0]
    total = sum(r.seconds for r in runs) / rounds or 1e-9
    pipeline_cps = first.chunks / total
    encode_cps = len(texts) * rounds / sum(encode_s) if sum(encode_s) else 0.0
    return {
        "files": first.added + first.updated + len(first.failed) + len(first.duplicates),
        "failed": len(first.failed),
        "pages": first.pages,
        "chunks": first.chunks,
        "rounds": rounds,
        "seconds": round(total, 3),
        "pages_per_s": round(first.pages / total, 2),
        "chunks_per_s": round(pipeline_cps, 2),
        "encode_alone_chunks_per_s": round(encode_cps, 2),
        "pipeline_vs_encode": round(pipeline_cps / encode_cps, 3) if encode_cps else None,
        "per_round_pipeline_chunks_per_s": [round(r.chunks / r.seconds, 2) for r in runs],
        "per_round_encode_chunks_per_s": [round(len(texts) / e, 2) for e in encode_s],
        "embed_share": round(sum(r.embed_seconds for r in runs) / (total * rounds), 3),
        "read_wait_share": round(sum(r.read_wait_seconds for r in runs) / (total * rounds), 3),
        "store_share": round(sum(r.store_seconds for r in runs) / (total * rounds), 3),
        "reingest_seconds": round(again.seconds, 3),
        "reingest_share": round(again.seconds / total, 4),
        "embedding_model": ref.name,
        "batch_size": embedder.batch_size,
    }
