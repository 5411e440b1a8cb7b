"""`ragqa eval beir`: retrieval quality on a BEIR-format folder, through the real pipeline.

The corpus goes into a store of its own (a temporary folder, or --work-dir to keep it between
runs: a second run then skips every unchanged document by its hash), chunked and embedded exactly
as user documents are; each query is ranked by the real Retriever; a document's score is its
best chunk's. The user's own store and database are never opened.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.retrieval import MODES, Mode, Retriever
from rag.settings import Settings
from ragqa.eval.beir_files import BeirSet, read_beir, write_corpus
from ragqa.eval.metrics import evaluate

DOC_DEPTH = 100  # documents ranked per query: enough for Recall@100
CHUNK_DEPTH = 1000  # chunks ranked per query to find them


def rank_documents(retriever: Retriever, beir: BeirSet, mode: Mode, doc_of_chunk: dict[int, list[str]],
                   query_vectors: np.ndarray | None) -> dict[str, list[str]]:
    """Per query: corpus ids, best first; a document scores as its best chunk."""
    snap = retriever.snapshot()
    run: dict[str, list[str]] = {}
    for n, (qid, text) in enumerate(beir.queries.items()):
        qvec = query_vectors[n] if query_vectors is not None else None
        ranked = retriever.rank(text, mode, limit=CHUNK_DEPTH, query_vector=qvec, snap=snap)
        seen: dict[str, None] = {}
        for cid in ranked.ids.tolist():  # best first, so a document's first chunk is its best
            for doc in doc_of_chunk[cid]:
                seen.setdefault(doc)
            if len(seen) >= DOC_DEPTH:
                break
        run[qid] = list(seen)
    return run


def eval_beir(folder: Path, split: str, modes: list[Mode], settings: Settings, work_dir: Path | None = None,
              progress: Any = None, baselines: bool = False) -> dict[str, dict[str, Any]]:
    """Metrics per mode; with `baselines`, also per published protocol (ragqa.eval.baselines)."""
    from ingest.pipeline import ingest
    from ragqa import wiring

    beir = read_beir(folder, split)
    with contextlib.ExitStack() as stack:
        home = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragqa-eval-")))
        # A store of its own: never the user's database, whatever RAGQA_DATABASE_URL says.
        cfg = settings.model_copy(update={"home": home, "database_url": ""})
        owners = write_corpus(beir.corpus, home / "corpus")
        store = wiring.open_store(cfg)
        stack.callback(store.close)
        ingest([home / "corpus"], store, cfg, wiring.embedding_ref(cfg), collection="beir", prune=True,
               load_embedder=lambda: wiring.load_embedder(cfg), progress=progress)
        doc_of_chunk = _chunk_owners(store, owners)
        retriever = wiring.retriever(cfg, store)
        dense_needed = baselines or set(modes) - {"lexical"}
        qvecs = retriever.embed_queries(list(beir.queries.values())) if dense_needed else None
        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            run = rank_documents(retriever, beir, mode, doc_of_chunk, qvecs)
            scores: dict[str, Any] = dict(evaluate(run, beir.qrels))
            scores.update(mode=mode, documents=len(owners), chunks=len(doc_of_chunk))
            results[mode] = scores
        if baselines:
            from ragqa.eval.baselines import baseline_scores

            assert qvecs is not None
            results.update(baseline_scores(beir.corpus, beir.queries, beir.qrels, retriever.embedder(), qvecs,
                                           work_dir, progress))
        return results


def _chunk_owners(store: Any, owners: dict[str, str]) -> dict[int, list[str]]:
    """Chunk id -> the corpus ids it belongs to: its document's, and those of corpus entries with
    the same text (the store keeps one copy; BEIR counts each)."""
    from sqlalchemy import select

    from rag import schema as s

    d = s.documents.c
    with store.engine.connect() as c:
        rows = c.execute(select(s.chunks.c.id, d.id, d.path).join(s.documents, d.id == s.chunks.c.document_id)).all()
        copies = c.execute(select(d.duplicate_of, d.path).where(d.status == "duplicate")).all()
    also: dict[int, list[str]] = {}
    for original, path in copies:
        if original is not None and path in owners:
            also.setdefault(original, []).append(owners[path])
    return {cid: [owners[path], *also.get(doc, [])] for cid, doc, path in rows if path in owners}


def parse_modes(mode: str) -> list[Mode]:
    if mode == "all":
        return list(MODES)
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}: use hybrid, dense, lexical or all")
    return [mode]
