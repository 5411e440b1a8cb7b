"""Search: dense (FAISS), lexical (BM25) or hybrid (both, fused), restricted to a scope.

The retriever reads one store generation at a time (the FAISS file, the BM25 file and a table of
which document and collection each chunk belongs to, checked against each other) and swaps to the
next generation when an ingest commits; a search never mixes two. It ranks chunks; rag.passages
turns ranked chunks into the passages users see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import select

from rag import schema as s
from rag.embedder import Embedder
from rag.errors import ConfigError, NotFoundError, StoreError
from rag.fusion import Standardiser, best_first, fuse
from rag.lexical import DocumentStats, LexicalIndex
from rag.passages import Passage, load_passages
from rag.store import Store
from rag.vectors import VectorIndex, first_per_chunk

Mode = Literal["hybrid", "dense", "lexical"]
# How many of each signal's top scores set its z-scores in hybrid search (dense: window scores,
# BM25: chunk scores). Deeper than the fusion candidates: the top 100 hold a query's few strong
# matches, which skew mean and spread; the top 1,000 measure the background they stand out from.
# Better than the top 100 on both evaluation sets. Windows rather than chunks for dense: as good, and
# FAISS is asked for 1,000 windows, not 1,000 chunks (docs/benchmarks.md, History).
STANDARDISE_DEPTH = 1000
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class Scope:
    """Which chunks a search may see: these collections (by name) and/or these documents (ids).
    Empty means no restriction on that axis. `readable` is what the asking user may read (None:
    everything); it bounds the rest, and a collection outside it is reported as not existing."""

    collections: tuple[str, ...] = ()
    documents: tuple[int, ...] = ()
    readable: tuple[str, ...] | None = None

    def for_reader(self, readable: tuple[str, ...] | None) -> Scope:
        return Scope(self.collections, self.documents, readable)


@dataclass(frozen=True)
class RankedChunks:
    ids: np.ndarray  # [n] chunk ids, best first
    scores: np.ndarray  # [n]


@dataclass(frozen=True)
class ChunkTable:
    """Per generation: for each chunk id (sorted), its document and collection."""

    ids: np.ndarray  # [n] int64, sorted
    document: np.ndarray  # [n]
    collection: np.ndarray  # [n]

    def allowed(self, collection_ids: Sequence[int], document_ids: Sequence[int]) -> np.ndarray | None:
        """Sorted chunk ids inside the scope, or None for no restriction."""
        if not collection_ids and not document_ids:
            return None
        keep = np.ones(len(self.ids), bool)
        if collection_ids:
            keep &= np.isin(self.collection, np.asarray(collection_ids))
        if document_ids:
            keep &= np.isin(self.document, np.asarray(document_ids))
        return self.ids[keep]


@dataclass(frozen=True)
class Snapshot:
    generation: int
    embedding_model: str | None
    vectors: VectorIndex | None
    lexical: LexicalIndex
    table: ChunkTable
    documents: DocumentStats  # the lexical index's documents, from the table

    @classmethod
    def of(cls, generation: int, embedding_model: str | None, vectors: VectorIndex | None, lexical: LexicalIndex,
           table: ChunkTable) -> Snapshot:
        return cls(generation, embedding_model, vectors, lexical, table,
                   lexical.document_stats(table.ids, table.document))


def load_snapshot(store: Store) -> Snapshot:
    """One generation's indexes and chunk table, consistent with each other. A commit may land
    between our reads (SQL isolation differs between SQLite and PostgreSQL): then read again."""
    for _ in range(5):
        state, vectors = store.load_vectors()
        lexical = store.load_lexical()
        with store.engine.connect() as c:
            rows = c.execute(
                select(s.chunks.c.id, s.chunks.c.document_id, s.documents.c.collection_id)
                .join(s.documents, s.documents.c.id == s.chunks.c.document_id)
                .order_by(s.chunks.c.id)
            ).all()
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        table = ChunkTable(arr[:, 0], arr[:, 1], arr[:, 2])
        lexical_ids = lexical.ids()
        same = np.array_equal(lexical_ids, table.ids) and (vectors is None or len(vectors) == len(table.ids))
        if same and store.index_state().generation == state.generation:
            return Snapshot.of(state.generation, state.embedding_model, vectors, lexical, table)
    raise StoreError("the store keeps changing under this reader; try again")


class Retriever:
    """Ranks chunks for queries. Thread-safe: searches share one snapshot; a new generation
    replaces it whole. The embedding model is loaded on first dense search, not before."""

    def __init__(self, store: Store, load_embedder: Callable[[], Embedder], *, depth: int = 100,
                 dense_weight: float = 0.5) -> None:
        self.store = store
        self._load_embedder = load_embedder
        self._embedder: Embedder | None = None
        self.depth = depth
        self.dense_weight = dense_weight
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    # ---- state -------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        generation = self.store.index_state().generation
        with self._lock:
            if self._snapshot is None or self._snapshot.generation != generation:
                self._snapshot = load_snapshot(self.store)
            return self._snapshot

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._load_embedder()
            return self._embedder

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.embedder().encode(queries)

    def scope_ids(self, snap: Snapshot, scope: Scope | None) -> np.ndarray | None:
        if scope is None or (not scope.collections and not scope.documents and scope.readable is None):
            return None
        collection_ids = []
        for name in scope.collections:
            cid = self.store.collection_id(name)
            if cid is None or (scope.readable is not None and name not in scope.readable):
                raise NotFoundError(f"no collection {name!r} (see `ragqa docs`)")
            collection_ids.append(cid)
        if scope.readable is not None and not scope.collections:
            collection_ids = [c for c in map(self.store.collection_id, scope.readable) if c is not None]
            if not collection_ids:
                return np.zeros(0, np.int64)  # this user may read nothing: nothing is searched
        return snap.table.allowed(collection_ids, list(scope.documents))

    # ---- searching ---------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, mode: Mode = "hybrid", scope: Scope | None = None) -> list[Passage]:
        """The k best passages for a query, best first."""
        if k < 1:
            raise ConfigError("k must be at least 1")
        ranked = self.rank(query, mode, scope, limit=max(4 * k, k + 20))
        return load_passages(self.store.engine, ranked.ids, ranked.scores, k)

    # ---- ranking -----------------------------------------------------------------------------
    def rank(self, query: str, mode: Mode = "hybrid", scope: Scope | None = None, limit: int | None = None,
             query_vector: np.ndarray | None = None, snap: Snapshot | None = None) -> RankedChunks:
        """Chunks for one query, best first, at most `limit` (default: the search depth)."""
        if mode not in MODES:
            raise ConfigError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        snap = snap or self.snapshot()
        limit = limit or self.depth
        allowed = self.scope_ids(snap, scope)
        empty = RankedChunks(np.zeros(0, np.int64), np.zeros(0, np.float64))
        if len(snap.table.ids) == 0 or (allowed is not None and len(allowed) == 0):
            return empty
        if mode == "lexical":
            ids, scores = snap.lexical.matching(query, allowed, snap.documents)
            ids, scores = best_first(ids, scores.astype(np.float64))
            return RankedChunks(ids[:limit], scores[:limit])
        qvec = self._query_vector(snap, query, query_vector)
        if mode == "dense":
            dense_ids, dense_scores = self._dense(snap, qvec, max(limit, self.depth), allowed)
            return RankedChunks(dense_ids[:limit], dense_scores[:limit])
        return self._hybrid(snap, query, qvec, allowed, limit)

    def _query_vector(self, snap: Snapshot, query: str, given: np.ndarray | None) -> np.ndarray:
        if snap.vectors is None:
            raise StoreError("the store has no vectors")
        if given is not None:
            return given
        embedder = self.embedder()
        if snap.embedding_model != embedder.name:
            raise ConfigError(f"the store was embedded with {snap.embedding_model}, but the embedding model is "
                              f"{embedder.name}: run `ragqa ingest` to re-embed, or change the setting back")
        return embedder.encode_query(query)

    def _dense(self, snap: Snapshot, qvec: np.ndarray, k: int, allowed: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        assert snap.vectors is not None
        scores, ids = snap.vectors.search(qvec[None, :], k, allowed=allowed)
        found = ids[0] >= 0
        return ids[0][found].astype(np.int64), scores[0][found].astype(np.float64)

    def _hybrid(self, snap: Snapshot, query: str, qvec: np.ndarray, allowed: np.ndarray | None,
                limit: int) -> RankedChunks:
        assert snap.vectors is not None
        k = max(limit, self.depth)
        # Dense: the top windows set the scale and, each chunk once, give the candidates.
        wanted = max(k, STANDARDISE_DEPTH)
        window_scores, window_chunks = snap.vectors.search_windows(qvec, wanted, allowed)
        dense_std = Standardiser.of(window_scores[:STANDARDISE_DEPTH].astype(np.float64))
        dense_scores, dense_ids = first_per_chunk(window_scores.astype(np.float64), window_chunks)
        if len(dense_ids) < k and len(window_scores) == wanted:  # chunks with very many windows
            dense_ids, dense_scores = self._dense(snap, qvec, k, allowed)
        # Every match: many in a big store.
        all_lex_ids, all_lex_scores = snap.lexical.matching(query, allowed, snap.documents)
        lex_ids, lex_scores = _top(all_lex_ids, all_lex_scores.astype(np.float64), max(k, STANDARDISE_DEPTH))
        lexical_std = Standardiser.of(lex_scores[:STANDARDISE_DEPTH])
        candidates = np.union1d(dense_ids[:k], lex_ids[:k])  # sorted
        # Both scores for every candidate, exactly: a chunk one list missed is not scored 0 there.
        d = _lookup(candidates, dense_ids, dense_scores)
        missing = np.isnan(d)
        if missing.any():
            d[missing] = snap.vectors.best_scores(candidates[missing], qvec)
        lx = np.nan_to_num(_lookup(candidates, all_lex_ids, all_lex_scores), nan=0.0)
        ids, scores = best_first(candidates, fuse(d, lx, dense_std, lexical_std, self.dense_weight))
        return RankedChunks(ids[:limit], scores[:limit])


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of (ids, scores), best first: a partial selection, then a sort of those k only."""
    if len(ids) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        ids, scores = ids[keep], scores[keep]
    return best_first(ids, scores)


def _lookup(keys: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values[ids == key] for each of the (sorted, few) keys; NaN where a key is not among ids.
    Each id is looked up among the keys, so the cost is linear in len(ids), with no sort of them."""
    out = np.full(len(keys), np.nan)
    if len(ids) and len(keys):
        at = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
        hit = keys[at] == ids
        out[at[hit]] = values[hit]
    return out
