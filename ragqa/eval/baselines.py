"""The published protocols beside the product's retrieval: `ragqa eval beir --baselines`.

Published BEIR figures come from protocols that do not chunk: BM25 over each whole corpus entry
(the BEIR paper; Anserini's "flat" index) and one vector per entry, which the embedding model
truncates at its input limit (MTEB; 256 tokens for all-MiniLM-L6-v2, so the tail of a long entry
is never seen). Scored by the same metrics code as the product's modes, they show that the
evaluation reproduces the published figures on the published data, and, on any other data, what
chunking, windows and fusion change against them. They are measuring instruments, not search
modes: nothing here serves `ragqa search`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.embedder import Embedder
from rag.lexical import LexicalIndex
from rag.vectors import write_atomically
from ragqa.eval.beir_files import corpus_entries
from ragqa.eval.metrics import evaluate

DOC_DEPTH = 100  # documents ranked per query, as for the product's modes
SCORE_CELLS = 50_000_000  # query x entry similarities held at once (200 MB of float32)


@dataclass(frozen=True)
class Entries:
    """The corpus as the published protocols see it: every entry on its own, duplicates included."""

    ids: list[str]
    bm25_texts: list[str]  # title, blank line, text: what the product's own documents hold
    dense_texts: list[str]  # title + " " + text, as MTEB joins them

    @classmethod
    def read(cls, corpus: Path) -> Entries:
        entries = list(corpus_entries(corpus))
        return cls([i for i, _, _ in entries],
                   [f"{title}\n\n{text}" if title else text for _, title, text in entries],
                   [f"{title} {text}".strip() for _, title, text in entries])


def baseline_scores(corpus: Path, queries: dict[str, str], qrels: Any, embedder: Embedder,
                    query_vectors: np.ndarray, cache_dir: Path | None,
                    progress: Any = None) -> dict[str, dict[str, Any]]:
    """{"baseline-bm25": metrics, "baseline-dense": metrics} for these queries (`query_vectors`
    [queries, dim] in the same order), each with `mode` and `documents` like the product's."""
    entries = Entries.read(corpus)
    if progress is not None:
        progress.message(f"baselines: BM25 and one truncated vector over {len(entries.ids)} whole entries")
    runs = {"baseline-bm25": bm25_run(entries, queries),
            "baseline-dense": dense_run(entries, list(queries), query_vectors,
                                        entry_vectors(entries, embedder, cache_dir))}
    out = {}
    for name, run in runs.items():
        scores: dict[str, Any] = dict(evaluate(run, qrels))
        scores.update(mode=name, documents=len(entries.ids))
        out[name] = scores
    return out


def whole_entry_index(entries: Entries) -> LexicalIndex:
    """BM25 as published: the product's analyzer and Anserini's k1 0.9, b 0.4 over whole entries;
    no chunks, no document term (an entry is its own document) and no word pairs."""
    index = LexicalIndex(0.9, 0.4, pairs=False)
    index.add(np.arange(len(entries.ids)), entries.bm25_texts)
    return index


def bm25_run(entries: Entries, queries: dict[str, str]) -> dict[str, list[str]]:
    index = whole_entry_index(entries)
    run: dict[str, list[str]] = {}
    for qid, text in queries.items():
        rows, scores = index.matching(text)
        order = np.lexsort((rows, -scores))[:DOC_DEPTH]  # ties by corpus order: repeatable
        run[qid] = [entries.ids[r] for r in rows[order].tolist()]
    return run


def dense_run(entries: Entries, qids: list[str], query_vectors: np.ndarray,
              vectors: np.ndarray) -> dict[str, list[str]]:
    """Exact cosine of each query against one vector per entry (vectors [entries, dim], normalised)."""
    n = len(entries.ids)
    k = min(DOC_DEPTH, n)
    run: dict[str, list[str]] = {}
    step = max(1, SCORE_CELLS // max(n, 1))
    for a in range(0, len(qids), step):
        sims = query_vectors[a:a + step] @ vectors.T  # [queries in this step, entries]
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(sims), 1))
        for row, (qid, cand) in enumerate(zip(qids[a:a + step], top)):
            cand = cand[np.lexsort((cand, -sims[row, cand]))]
            run[qid] = [entries.ids[i] for i in cand.tolist()]
    return run


def entry_vectors(entries: Entries, embedder: Embedder, cache_dir: Path | None) -> np.ndarray:
    """[entries, dim] one vector per entry, truncated by the model as MTEB's are; kept in
    `cache_dir` (a kept --work-dir) under a key of the texts and the model, so re-runs skip it."""
    h = hashlib.sha256(f"{embedder.name}\n{getattr(embedder.model, 'max_seq_length', '')}\n".encode())
    for text in entries.dense_texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    path = cache_dir / f"baseline-dense-{h.hexdigest()[:16]}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(entries.ids), embedder.dim):
                return cached
        except (OSError, ValueError):
            pass  # damaged: embed again and overwrite
    vectors = embedder.encode(entries.dense_texts)
    if path is not None:
        write_atomically(path, lambda fh: np.save(fh, vectors))
    return vectors
