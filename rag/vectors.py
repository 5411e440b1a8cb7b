"""The FAISS copy of the chunk vectors, normalised (inner product = cosine). Files are written whole
to a temporary name and renamed, so a reader never sees half.

A chunk has one vector or several: one per window of a few sentences (`ingest.chunking`), because
the embedding model matches a question best against a passage of about its own length, and a
256-token chunk averages several topics into one vector. A chunk's dense score is its best
window's. FAISS ids pack both: chunk id << WINDOW_BITS | window number. The methods here speak of
chunks (ids, counts, searches return chunk ids, each once), the packing stays inside.

Two kinds of index, chosen by size (`fitted`): exact search (a flat index) while the store is small
enough to scan every vector within the latency budget, and an inverted-file index (IVF) above that,
which scans only the `nprobe` clusters nearest the query. Both take additions and removals in place;
the IVF is retrained when the store has grown well past the size it was trained for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import faiss
import numpy as np

#: Above this many vectors (windows, not chunks) the IVF is worth its recall loss (`ragqa bench
#: search` measures both).
EXACT_MAX_DEFAULT = 50_000
NPROBE_DEFAULT = 128
#: A filter this selective makes the IVF scan every cluster: few vectors pass, so it stays cheap,
#: and nothing allowed is missed because its cluster was not probed.
_PARALLEL_QUERIES = 4  # more queries than this at once: FAISS may use all cores
_SELECTIVE_FILTER = 0.05
WINDOW_BITS = 10
MAX_WINDOWS = 1 << WINDOW_BITS  # per chunk; a 512-token chunk has at most ~2 x 512 / window size
_MAGIC = b"RAGQA-VECTORS-2\n"  # files before windows hold bare FAISS data keyed by chunk id


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that readers see the old one or the whole new one, even after a crash:
    temporary name, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ivf_lists_for(n: int) -> int:
    """Clusters for n vectors: about 4 * sqrt(n), the usual FAISS guidance."""
    return max(16, int(4 * math.sqrt(max(n, 1))))


class VectorIndex:
    def __init__(self, dim: int, index: faiss.Index | None = None, nprobe: int = NPROBE_DEFAULT) -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.nprobe = nprobe
        self._chunks: tuple[np.ndarray, np.ndarray] | None = None  # (chunk ids sorted, their window counts)

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, exact_max: int = EXACT_MAX_DEFAULT) -> VectorIndex:
        """From vectors [n, dim] and the chunk id of each [n] (a chunk's windows in order)."""
        if len(ids) > exact_max:
            return cls._build_ivf(dim, window_ids(np.asarray(ids, np.int64)), np.ascontiguousarray(vectors, np.float32))
        out = cls(dim)
        out.add(ids, vectors)
        return out

    @classmethod
    def _build_ivf(cls, dim: int, packed_ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        nlist = ivf_lists_for(len(packed_ids))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF frees it (SWIG's handle: not in faiss's stubs)
        # k-means on a sample: FAISS's own rule of thumb is up to 256 points per cluster.
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), nlist * 64), replace=False)]
        index.train(sample)
        # Reconstruct and remove by id (faiss's stubs lack the DirectMap class).
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        index.add_with_ids(vectors, packed_ids)
        return cls(dim, index)

    @property
    def kind(self) -> str:
        return "ivf" if self._ivf_index() is not None else "flat"

    def describe(self) -> str:
        ivf = self._ivf_index()
        what = f"{len(self)} chunks, {self.n_vectors} vectors"
        if ivf is None:
            return f"exact (flat inner product), {what}"
        return f"approximate (IVF, {ivf.nlist} lists, nprobe {self.nprobe}), {what}"

    def _ivf_index(self) -> faiss.IndexIVF | None:
        return self.index if isinstance(self.index, faiss.IndexIVF) else None

    def fitted(self, exact_max: int) -> VectorIndex:
        """This index, or one of the kind its size calls for: exact up to `exact_max` vectors (with
        hysteresis, so a store near the line does not flip), IVF above, retrained once the store
        has grown to need twice the clusters it has."""
        n, ivf = self.n_vectors, self._ivf_index()
        if ivf is None and n > exact_max or ivf is not None and ivf_lists_for(n) >= 2 * ivf.nlist:
            packed = np.sort(self._packed_ids())
            return VectorIndex._build_ivf(self.dim, packed, self.index.reconstruct_batch(packed))
        if ivf is not None and n < exact_max // 2:
            owners, vectors = self.chunk_vectors(self.ids())
            return VectorIndex.build(self.dim, owners, vectors, exact_max)
        return self

    # ---- chunks and their windows -----------------------------------------------------------
    def __len__(self) -> int:
        """Chunks in the index (each with one vector or more)."""
        return len(self._chunk_table()[0])

    @property
    def n_vectors(self) -> int:
        return int(self.index.ntotal)

    def _packed_ids(self) -> np.ndarray:
        """Every FAISS id, unordered."""
        if not self.n_vectors:
            return np.zeros(0, np.int64)
        ivf = self._ivf_index()
        if ivf is None:
            return faiss.vector_to_array(cast(faiss.IndexIDMap2, self.index).id_map).astype(np.int64)
        lists = ivf.invlists
        assert lists is not None  # a built IVF index has its lists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(ivf.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64)

    def _chunk_table(self) -> tuple[np.ndarray, np.ndarray]:
        if self._chunks is None:
            chunk_ids, counts = np.unique(self._packed_ids() >> WINDOW_BITS, return_counts=True)
            self._chunks = (chunk_ids.astype(np.int64), counts.astype(np.int64))
        return self._chunks

    def ids(self) -> np.ndarray:
        """Every chunk id in the index, sorted."""
        return self._chunk_table()[0]

    def _packed_ids_of(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(FAISS ids of these chunks' windows [m], which of `chunk_ids` each belongs to [m])."""
        table_ids, counts = self._chunk_table()
        if not len(table_ids):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        chunk_ids = np.asarray(chunk_ids, np.int64)
        at = np.minimum(np.searchsorted(table_ids, chunk_ids), len(table_ids) - 1)
        n = np.where(table_ids[at] == chunk_ids, counts[at], 0)  # windows of each (0: not here)
        owner = np.repeat(np.arange(len(chunk_ids)), n)
        return (chunk_ids[owner] << WINDOW_BITS) | _offsets_within(n), owner

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors [n, dim] of new chunks; `ids` [n] names each one's chunk (repeated for a
        chunk's windows, which come together and in order)."""
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # [n, dim]
        assert vectors.shape == (len(ids), self.dim), (vectors.shape, len(ids), self.dim)
        self.index.add_with_ids(vectors, window_ids(np.asarray(ids, np.int64)))
        self._chunks = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove these chunks (all their vectors); returns how many chunks were there."""
        if len(ids) == 0 or not self.n_vectors:
            return 0
        packed = self._packed_ids()
        doomed = packed[np.isin(packed >> WINDOW_BITS, np.asarray(ids, np.int64))]
        self.index.remove_ids(doomed)  # type: ignore[arg-type]  # faiss's wrapper takes ids; its stubs only a selector
        self._chunks = None
        return len(np.unique(doomed >> WINDOW_BITS))

    def chunk_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(chunk id of each vector [m], vectors [m, dim]) for these chunks, windows in order."""
        packed, owner = self._packed_ids_of(ids)
        if len(packed) == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.asarray(ids, np.int64)[owner], self.index.reconstruct_batch(packed)

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        """[windows, dim] the vectors of one chunk."""
        return self.chunk_vectors(np.asarray([chunk_id]))[1]

    def best_scores(self, ids: np.ndarray, query: np.ndarray) -> np.ndarray:
        """[len(ids)] each chunk's best cosine with one query [dim] (-inf for a chunk not here)."""
        packed, owner = self._packed_ids_of(ids)
        out = np.full(len(ids), -np.inf, np.float64)
        if len(packed):
            np.maximum.at(out, owner, self.index.reconstruct_batch(packed) @ np.asarray(query, np.float32))
        return out

    # ---- search ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], chunk ids [q, k]), best first, each chunk once with its best window's
        score; missing results have id -1. `allowed` (sorted chunk ids) restricts the search to
        those chunks, inside FAISS."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)  # [q, dim]
        packed_allowed = self._packed_ids_of(allowed)[0] if allowed is not None else None
        available = self.n_vectors if packed_allowed is None else len(packed_allowed)
        # Windows of one chunk tend to come back together: ask for twice the average per chunk,
        # and again for more in the rare case that leaves a query short of k chunks.
        per_chunk = max(1, math.ceil(self.n_vectors / max(len(self), 1)))
        fetch = min(available, k * per_chunk * 2)
        while True:
            scores, packed = self._search_packed(queries, max(fetch, 1), packed_allowed)
            out = [first_per_chunk(s[p >= 0], p[p >= 0] >> WINDOW_BITS, k) for s, p in zip(scores, packed)]
            if fetch >= available or all(len(ids) == k for _, ids in out):
                break
            fetch = min(available, fetch * 4)
        top_scores = np.full((len(queries), k), -np.inf, np.float32)
        top_ids = np.full((len(queries), k), -1, np.int64)
        for i, (s, ids) in enumerate(out):
            top_scores[i, :len(ids)], top_ids[i, :len(ids)] = s, ids
        return top_scores, top_ids

    def search_windows(self, query: np.ndarray, n: int, allowed: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The n best windows for one query [dim]: (scores [<=n], their chunk ids [<=n]), best
        first; a chunk appears once per window it has among them."""
        packed_allowed = self._packed_ids_of(allowed)[0] if allowed is not None else None
        scores, packed = self._search_packed(np.ascontiguousarray(query[None, :], np.float32), max(n, 1),
                                             packed_allowed)
        found = packed[0] >= 0
        return scores[0][found], packed[0][found] >> WINDOW_BITS

    def _search_packed(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ivf = self._ivf_index()
        selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        # faiss's wrapper takes the fields as keywords; its stubs give these classes no arguments.
        params: faiss.SearchParameters | None
        if ivf is not None:
            nprobe = self.nprobe
            if allowed is not None and len(allowed) < _SELECTIVE_FILTER * self.n_vectors:
                nprobe = ivf.nlist
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, ivf.nlist))  # type: ignore[call-arg]
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None  # type: ignore[call-arg]
        if len(queries) > _PARALLEL_QUERIES:
            return self.index.search(queries, k, params=params)
        # One query: FAISS's OpenMP threads would fight torch's (still spinning after the query
        # was embedded) and take twice as long as one thread does alone (measured: 17 vs 9.5 ms
        # on 100,000 chunks).
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)

    # ---- files -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        data = faiss.serialize_index(self.index)
        write_atomically(path, lambda fh: (fh.write(_MAGIC), fh.write(data.tobytes())))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        data = np.fromfile(path, dtype=np.uint8)
        if data[:len(_MAGIC)].tobytes() == _MAGIC:
            index = faiss.deserialize_index(data[len(_MAGIC):])
            return cls(index.d, index)
        # A file from before windows: one vector per chunk, keyed by chunk id. Re-key it; the
        # next commit writes the new format.
        old = faiss.deserialize_index(data)
        chunk_ids = np.sort(VectorIndex(old.d, old)._packed_ids())
        vectors = old.reconstruct_batch(chunk_ids)
        if isinstance(old, faiss.IndexIVF):
            return cls._build_ivf(old.d, window_ids(chunk_ids), vectors)
        out = cls(old.d)
        out.add(chunk_ids, vectors)
        return out


def window_ids(chunk_ids: np.ndarray) -> np.ndarray:
    """[n] FAISS ids for n vectors given each one's chunk id: a chunk's k-th vector gets window k."""
    order = np.argsort(chunk_ids, kind="stable")
    window = np.empty(len(chunk_ids), np.int64)
    window[order] = _offsets_within(np.unique(chunk_ids[order], return_counts=True)[1])
    assert window.max(initial=0) < MAX_WINDOWS and chunk_ids.min(initial=0) >= 0
    return (chunk_ids << WINDOW_BITS) | window


def _offsets_within(counts: np.ndarray) -> np.ndarray:
    """For runs of these lengths laid end to end, each element's place in its run: [2, 3] -> 0 1 0 1 2."""
    return np.arange(int(np.sum(counts))) - np.repeat(np.cumsum(counts) - counts, counts)


def first_per_chunk(scores: np.ndarray, chunk_ids: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window hits best first -> (scores, chunk ids) of the first k chunks, each once, scored by its
    best window (its first hit)."""
    _, first = np.unique(chunk_ids, return_index=True)
    first = np.sort(first)[:k]
    return scores[first], chunk_ids[first]
