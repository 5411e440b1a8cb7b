"""The composition root: settings in, configured parts out. Nothing else reads Settings to decide
which classes to build."""

from __future__ import annotations

__all__ = ["embedding_ref", "load_embedder", "offline", "open_store", "retriever"]

from rag.embedder import Embedder, EmbeddingModelRef, offline, resolve_model
from rag.settings import Settings
from rag.retrieval import Retriever
from rag.store import Store


def open_store(settings: Settings) -> Store:
    settings.home.mkdir(parents=True, exist_ok=True)
    return Store.open(settings.sql_url, settings.index_dir, exact_max=settings.exact_search_max_chunks,
                      nprobe=settings.ivf_nprobe)


def embedding_ref(settings: Settings) -> EmbeddingModelRef:
    return resolve_model(settings.embedding_model)


def load_embedder(settings: Settings, ref: EmbeddingModelRef | None = None) -> Embedder:
    offline()
    return Embedder.load(ref or embedding_ref(settings), device=settings.device,
                         batch_size=settings.embedding_batch_size)


def retriever(settings: Settings, store: Store | None = None) -> Retriever:
    """Search over the store; the embedding model loads on the first dense search."""
    return Retriever(store or open_store(settings), lambda: load_embedder(settings), depth=settings.search_depth,
                     dense_weight=settings.dense_weight)
