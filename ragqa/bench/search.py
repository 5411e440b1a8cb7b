"""`ragqa bench search`: query latency (query embedding included) on synthetic stores of given
sizes, and on the user's own store; for an approximate index, its recall against exact search.

Synthetic stores live in memory (the ranking work of a search: embedding, FAISS, BM25, fusion):
vectors are drawn around a few thousand cluster centres, as real embeddings cluster by topic, and
chunk texts are Zipf-distributed words, as real text is, with their adjacent pairs indexed as word
pairs. The real index keeps a vocabulary of the pairs it has seen ("w1 w2" -> id); here, to skip
building millions of strings, a pair's id is a hash of its two words, and only the queries' pairs are
entered in the vocabulary. The queries' pairs rarely occur in such random text, so their cost is a
lower bound.
On the user's store the whole search is timed, passage assembly from SQL included.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from rag.lexical import LexicalIndex
from rag.retrieval import ChunkTable, Retriever, Snapshot
from rag.vectors import VectorIndex

VOCABULARY = 50_000
PAIR_BUCKETS = 1 << 22  # the synthetic store hashes its word pairs into this many ids
TERMS_PER_CHUNK = 80  # distinct stems in a chunk of ~190 tokens, stopwords removed
CENTRES = 2000
#: Share of chunks with 1, 2, 3, 4 vectors: 2.75 on average, as real stores with the default
#: 256-token chunks and 96-token windows have (SciFact 2.70, the CMU articles 2.94).
WINDOWS_SHARE = (0.1, 0.25, 0.45, 0.2)


def synthetic_snapshot(n: int, dim: int, exact_max: int, seed: int = 0,
                       model: str | None = None) -> tuple[Snapshot, np.ndarray]:
    """An in-memory store of n chunks, and the cluster centres its vectors were drawn around."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((CENTRES, dim)).astype(np.float32))
    ids = np.arange(1, n + 1, dtype=np.int64)
    # Each chunk's windows (rag.vectors), around the chunk's topic.
    owners = np.repeat(ids, rng.choice(len(WINDOWS_SHARE), n, p=WINDOWS_SHARE) + 1)
    topic = rng.integers(0, CENTRES, n + 1)
    vectors = np.empty((len(owners), dim), np.float32)
    for a in range(0, len(owners), 65536):
        b = min(len(owners), a + 65536)
        noise = rng.standard_normal((b - a, dim)).astype(np.float32) * 0.05
        vectors[a:b] = _unit(centres[topic[owners[a:b]]] + noise)
    index = VectorIndex.build(dim, owners, vectors, exact_max=exact_max)
    del vectors
    lexical = LexicalIndex()
    lexical.vocab = {f"w{t}": t for t in range(VOCABULARY)}
    zipf = 1.0 / np.arange(1, VOCABULARY + 1)
    zipf /= zipf.sum()
    for a in range(0, n, 65536):
        b = min(n, a + 65536)
        terms = rng.choice(VOCABULARY, size=(b - a, TERMS_PER_CHUNK), p=zipf)
        rows = np.repeat(np.arange(b - a), TERMS_PER_CHUNK)
        tf = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, terms.ravel())), shape=(b - a, VOCABULARY))
        tf.sum_duplicates()
        pair_rows = np.repeat(np.arange(b - a), TERMS_PER_CHUNK - 1)
        pair_ids = _pair_id(terms[:, :-1], terms[:, 1:]).ravel()
        pairs = sp.csr_matrix((np.ones(pair_rows.size, np.float32), (pair_rows, pair_ids)), shape=(b - a, PAIR_BUCKETS))
        pairs.sum_duplicates()
        lexical.add_counts(ids[a:b], tf, np.full(b - a, TERMS_PER_CHUNK * 2, np.int64), pairs)
    table = ChunkTable(ids, ids // 10, np.ones(n, np.int64))
    return Snapshot.of(1, model, index, lexical, table), centres


def synthetic_queries(n: int, seed: int = 1, lexical: LexicalIndex | None = None) -> list[str]:
    """Queries of 3 to 8 words of middling frequency, as people type them. With `lexical` (a
    synthetic store's), their word pairs are made known to it, so that searches score them."""
    rng = np.random.default_rng(seed)
    words = [rng.integers(20, 5000, rng.integers(3, 9)) for _ in range(n)]
    if lexical is not None:
        for w in words:
            for a, b, pid in zip(w, w[1:], _pair_id(w[:-1], w[1:]).tolist()):
                lexical.pair_vocab[f"w{a} w{b}"] = pid
    return [" ".join(f"w{t}" for t in w) for w in words]


def _pair_id(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return (first.astype(np.int64) * VOCABULARY + second) % PAIR_BUCKETS


def time_queries(run: Any, queries: list[str], warmup: int = 5) -> dict[str, float]:
    for q in queries[:warmup]:
        run(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        run(q)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2),
            "queries": len(times)}


def ivf_recall(snap: Snapshot, centres: np.ndarray, k: int = 10, n: int = 200, seed: int = 2) -> float | None:
    """Recall@k of the approximate index against exact search over the same vectors."""
    vectors = snap.vectors
    if vectors is None or vectors.kind != "ivf":
        return None
    rng = np.random.default_rng(seed)
    queries = _unit(centres[rng.integers(0, len(centres), n)]
                    + rng.standard_normal((n, centres.shape[1])).astype(np.float32) * 0.05)
    owners, windows = vectors.chunk_vectors(vectors.ids())
    exact = VectorIndex.build(vectors.dim, owners, windows, exact_max=len(owners) + 1)
    _, truth = exact.search(queries, k)
    _, found = vectors.search(queries, k)
    return round(float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth.tolist(), found.tolist())])), 4)


def bench_synthetic(retriever: Retriever, n: int, exact_max: int, queries: int) -> dict[str, Any]:
    embedder = retriever.embedder()
    t0 = time.perf_counter()
    snap, centres = synthetic_snapshot(n, embedder.dim, exact_max, model=embedder.name)
    built = time.perf_counter() - t0
    assert snap.vectors is not None
    out: dict[str, Any] = {"chunks": n, "index": snap.vectors.describe(), "build_s": round(built, 1)}
    texts = synthetic_queries(queries, lexical=snap.lexical)
    for mode in ("hybrid", "dense", "lexical"):
        out[mode] = time_queries(lambda q, m=mode: retriever.rank(q, m, snap=snap), texts)
    out["embed_query"] = time_queries(lambda q: retriever.embedder().encode_query(q), texts)
    out["ivf_recall@10"] = ivf_recall(snap, centres)
    return out


def bench_store(retriever: Retriever, queries: int, seed: int = 3) -> dict[str, Any]:
    """Whole searches on the user's store; queries are the opening words of random chunks."""
    from sqlalchemy import func, select

    from rag import schema as s

    snap = retriever.snapshot()
    if len(snap.table.ids) == 0:
        return {"chunks": 0}
    rng = np.random.default_rng(seed)
    picks = rng.choice(snap.table.ids, min(queries, len(snap.table.ids)), replace=False).tolist()
    with retriever.store.engine.connect() as c:
        texts = c.execute(select(func.substr(s.chunks.c.text, 1, 80)).where(s.chunks.c.id.in_(picks))).scalars().all()
    texts = [" ".join(t.split()[:8]) for t in texts]
    assert snap.vectors is not None
    return {"chunks": len(snap.table.ids), "index": snap.vectors.describe(),
            "hybrid": time_queries(lambda q: retriever.search(q, 10, "hybrid"), texts)}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)
