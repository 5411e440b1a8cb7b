"""Small helpers shared by tests that use the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest.pipeline import IngestSummary, ingest
from rag import schema as s


def run_ingest(paths: list[Path], store: Any, settings: Any, embedder: Any, **kw: Any) -> IngestSummary:
    return ingest(paths, store, settings, embedder.ref, load_embedder=lambda: embedder, **kw)


def nearest_texts(store: Any, embedder: Any, query: str, k: int = 3) -> list[str]:
    """Texts of the k nearest chunks by the FAISS index (what retrieval will build on)."""
    _, vectors = store.load_vectors()
    if vectors is None:
        return []
    _, ids = vectors.search(embedder.encode([query]), k)
    wanted = [int(i) for i in ids[0] if i >= 0]
    with store.engine.connect() as c:
        rows = dict(c.execute(select(s.chunks.c.id, s.chunks.c.text).where(s.chunks.c.id.in_(wanted))).all())
    return [rows[i] for i in wanted]


def chunk_snapshot(store: Any) -> set[tuple[str, int, str]]:
    """(path, ordinal, text) of every stored chunk: equal snapshots mean equal content."""
    with store.engine.connect() as c:
        rows = c.execute(select(s.documents.c.path, s.chunks.c.ordinal, s.chunks.c.text)
                         .join(s.documents, s.documents.c.id == s.chunks.c.document_id)).all()
    return {(r[0], r[1], r[2]) for r in rows}
