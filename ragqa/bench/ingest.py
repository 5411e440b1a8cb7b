"""`ragqa bench ingest PATH`: the pipeline's speed next to the embedding model's alone.

Both run in this process with the model already loaded and warm, and "encode alone" encodes exactly
the texts the pipeline handed to the embedder in that round (each chunk's windows, or the chunk
itself when it is one window), recorded as they went by; both are reported per chunk. This VM's
speed drifts by several percent from minute to minute, so the two are interleaved for a few
rounds (pipeline into a fresh store, then encode alone) and compared over all rounds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ingest.pipeline import IngestSummary, ingest
from rag.embedder import Embedder
from rag.settings import Settings
from rag.store import Store


class _Recording:
    """The embedder as the pipeline sees it, noting every text it is asked to encode."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self.texts: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self._embedder.encode(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)


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
            recording = _Recording(embedder)
            runs.append(ingest([path], store, cfg, ref, load_embedder=lambda r=recording: r))  # type: ignore[misc]
            texts = recording.texts
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
    encode_cps = sum(r.chunks for r in runs) / sum(encode_s) if sum(encode_s) else 0.0
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
        "per_round_encode_chunks_per_s": [round(r.chunks / e, 2) for r, e in zip(runs, encode_s)],
        "embed_share": round(sum(r.embed_seconds for r in runs) / (total * rounds), 3),
        "read_wait_share": round(sum(r.read_wait_seconds for r in runs) / (total * rounds), 3),
        "store_share": round(sum(r.store_seconds for r in runs) / (total * rounds), 3),
        "reingest_seconds": round(again.seconds, 3),
        "reingest_share": round(again.seconds / total, 4),
        "embedding_model": ref.name,
        "batch_size": embedder.batch_size,
    }
