"""The composition root: settings in, configured parts out. Nothing else reads Settings to decide
which classes to build."""

from __future__ import annotations

__all__ = ["answerer", "embedding_ref", "generator", "generator_kind", "load_embedder", "offline", "open_store",
           "retriever"]

from collections.abc import Callable

from llm.generator import Generator
from rag.answer import Answerer
from rag.embedder import Embedder, EmbeddingModelRef, offline, resolve_model
from rag.retrieval import Retriever
from rag.settings import Settings
from rag.store import Store


def open_store(settings: Settings) -> Store:
    settings.home.mkdir(parents=True, exist_ok=True)
    return Store.open(settings.sql_url, settings.index_dir, exact_max=settings.exact_search_max_vectors,
                      nprobe=settings.ivf_nprobe)


def embedding_ref(settings: Settings) -> EmbeddingModelRef:
    return resolve_model(settings.embedding_model)


def load_embedder(settings: Settings, ref: EmbeddingModelRef | None = None) -> Embedder:
    offline()
    return Embedder.load(ref or embedding_ref(settings), device=settings.device,
                         batch_size=settings.embedding_batch_size, query_cache=settings.cache_path)


def retriever(settings: Settings, store: Store | None = None) -> Retriever:
    """Search over the store; the embedding model loads on the first dense search."""
    return Retriever(store or open_store(settings), lambda: load_embedder(settings), depth=settings.search_depth,
                     dense_weight=settings.dense_weight)


def generator_kind(settings: Settings) -> str:
    if settings.generator != "auto":
        return settings.generator
    if settings.openai_base_url:
        return "openai"
    return "native" if settings.model_path else "extractive"


def generator(settings: Settings, retriever: Retriever | None = None) -> Generator:
    """The configured backend. Nothing heavy loads here: models load on first use."""
    from rag.errors import ConfigError

    kind = generator_kind(settings)
    if kind == "native":
        from llm.native import NativeGenerator

        if settings.model_path is None:
            raise ConfigError("RAGQA_GENERATOR=native needs RAGQA_MODEL_PATH (a local gpt-oss checkpoint folder)")
        return NativeGenerator(settings.model_path, device=settings.generator_device, dtype=settings.generator_dtype,
                               expert_cache_mb=settings.expert_cache_mb, context=settings.context_tokens,
                               cpu_kernel=settings.cpu_kernel, seed=settings.generator_seed,
                               queue=settings.generator_queue)
    if kind == "openai":
        from llm.openai_server import OpenAIGenerator

        if not settings.openai_base_url:
            raise ConfigError("RAGQA_GENERATOR=openai needs RAGQA_OPENAI_BASE_URL")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        count = _local_token_counter(settings)
        # The server's window is used when it says; a window the operator set is a limit on it.
        explicit = settings.context_tokens if "context_tokens" in settings.model_fields_set else None
        return OpenAIGenerator(settings.openai_base_url, settings.openai_model, key, context=settings.context_tokens,
                               max_context=explicit, count_tokens=count)
    if kind == "fake":
        from llm.generator import FakeGenerator

        return FakeGenerator(settings.context_tokens)
    from rag.extractive import ExtractiveGenerator

    embed = (lambda texts: retriever.embedder().encode(texts)) if retriever is not None else None
    return ExtractiveGenerator(embed)


def _local_token_counter(settings: Settings) -> Callable[[str], int] | None:
    """The model's own tokenizer when a checkpoint folder is configured beside the server."""
    if settings.model_path and (settings.model_path / "tokenizer.json").is_file():
        from llm.harmony import HarmonyTokenizer

        tok = HarmonyTokenizer.from_file(str(settings.model_path / "tokenizer.json"))
        return lambda text: len(tok.text(text))
    return None


def answerer(settings: Settings, retriever_: Retriever | None = None, generator_: Generator | None = None) -> Answerer:
    r = retriever_ or retriever(settings)
    g = generator_ or generator(settings, r)
    # The library's tools in the browsing tool's shape everywhere; under its own `browser` namespace
    # where we render harmony ourselves, as plain functions where a server only serves those
    # (docs/architecture.md, "Tool use").
    namespace = "browser" if g.name == "native" else "functions"
    return Answerer(r, g, passages=settings.answer_passages,
                    max_answer_tokens=settings.answer_max_tokens, history_tokens=settings.history_tokens,
                    tools=settings.tools, tool_rounds=settings.tool_rounds, tool_time_s=settings.tool_time_s,
                    tool_namespace=namespace)
