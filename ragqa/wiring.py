"""The composition root: settings in, configured parts out. Nothing else reads Settings to decide
which classes to build."""

from __future__ import annotations

import os

from rag.embedder import Embedder, EmbeddingModelRef, resolve_model
from rag.settings import Settings
from rag.store import Store


def offline() -> None:
    """No hub downloads, ever: set before any Hugging Face library is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def open_store(settings: Settings) -> Store:
    settings.home.mkdir(parents=True, exist_ok=True)
    return Store.open(settings.sql_url, settings.index_dir)


def embedding_ref(settings: Settings) -> EmbeddingModelRef:
    return resolve_model(settings.embedding_model)


def load_embedder(settings: Settings, ref: EmbeddingModelRef | None = None) -> Embedder:
    offline()
    return Embedder.load(ref or embedding_ref(settings), device=settings.device,
                         batch_size=settings.embedding_batch_size)
