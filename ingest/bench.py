"""`ragqa bench ingest PATH`: the pipeline's speed next to the embedding model's alone.

Both run in this process on the same chunks, after one warm-up, with the model already loaded:
the ratio shows what reading, chunking and storing cost on top of embedding.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest.pipeline import ingest
from rag import schema as s
from rag.settings import Settings
from rag.store import Store


def bench_ingest(path: Path, settings: Settings) -> dict[str, Any]:
    from ragqa import wiring

    ref = wiring.embedding_ref(settings)
    embedder = wiring.load_embedder(settings, ref)
    embedder.encode(["warm-up: the first call pays for allocations"] * 32)
    with tempfile.TemporaryDirectory(prefix="ragqa-bench-") as tmp:
        cfg = settings.model_copy(update={"home": Path(tmp), "database_url": ""})
        store = Store.open(cfg.sql_url, cfg.index_dir)
        first = ingest([path], store, cfg, ref, load_embedder=lambda: embedder)
        with store.engine.connect() as c:
            texts = list(c.execute(select(s.chunks.c.text).order_by(s.chunks.c.id)).scalars())
        t0 = time.perf_counter()
        embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
        encode_s = time.perf_counter() - t0
        again = ingest([path], store, cfg, ref, load_embedder=lambda: embedder)
        store.close()
    total = first.seconds or 1e-9
    pipeline_cps = first.chunks / total
    encode_cps = len(texts) / encode_s if encode_s else 0.0
    return {
        "files": first.added + first.updated + len(first.failed) + len(first.duplicates),
        "failed": len(first.failed),
        "pages": first.pages,
        "chunks": first.chunks,
        "seconds": round(total, 3),
        "pages_per_s": round(first.pages / total, 2),
        "chunks_per_s": round(pipeline_cps, 2),
        "encode_alone_chunks_per_s": round(encode_cps, 2),
        "pipeline_vs_encode": round(pipeline_cps / encode_cps, 3) if encode_cps else None,
        "embed_share": round(first.embed_seconds / total, 3),
        "reingest_seconds": round(again.seconds, 3),
        "reingest_share": round(again.seconds / total, 4),
        "embedding_model": ref.name,
        "batch_size": embedder.batch_size,
    }
