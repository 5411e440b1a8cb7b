"""The FAISS copy of the chunk vectors: ids are chunk ids, vectors are normalised (inner product =
cosine). Files are written whole to a temporary name and renamed, so a reader never sees half.

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
from typing import BinaryIO

import faiss
import numpy as np

#: Above this many vectors the IVF is worth its recall loss (`ragqa bench search` measures both).
EXACT_MAX_DEFAULT = 50_000
NPROBE_DEFAULT = 128
#: A filter this selective makes the IVF scan every cluster: few vectors pass, so it stays cheap,
#: and nothing allowed is missed because its cluster was not probed.
_PARALLEL_QUERIES = 4  # more queries than this at once: FAISS may use all cores
_SELECTIVE_FILTER = 0.05


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

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, exact_max: int = EXACT_MAX_DEFAULT) -> VectorIndex:
        if len(ids) > exact_max:
            return cls._build_ivf(dim, np.asarray(ids, np.int64), np.ascontiguousarray(vectors, np.float32))
        out = cls(dim)
        out.add(ids, vectors)
        return out

    @classmethod
    def _build_ivf(cls, dim: int, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        nlist = ivf_lists_for(len(ids))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()  # the IVF frees it
        # k-means on a sample: FAISS's own rule of thumb is up to 256 points per cluster.
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), min(len(vectors), nlist * 64), replace=False)]
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        index.add_with_ids(vectors, ids)
        return cls(dim, index)

    @property
    def kind(self) -> str:
        return "ivf" if self._ivf_index() is not None else "flat"

    def describe(self) -> str:
        ivf = self._ivf_index()
        if ivf is None:
            return f"exact (flat inner product), {len(self)} vectors"
        return f"approximate (IVF, {ivf.nlist} lists, nprobe {self.nprobe}), {len(self)} vectors"

    def _ivf_index(self) -> faiss.IndexIVF | None:
        return self.index if isinstance(self.index, faiss.IndexIVF) else None

    def fitted(self, exact_max: int) -> VectorIndex:
        """This index, or one of the kind its size calls for: exact up to `exact_max` vectors (with
        hysteresis, so a store near the line does not flip), IVF above, retrained once the store
        has grown to need twice the clusters it has."""
        n, ivf = len(self), self._ivf_index()
        if ivf is None and n > exact_max or ivf is not None and ivf_lists_for(n) >= 2 * ivf.nlist:
            ids = self.ids()
            return VectorIndex._build_ivf(self.dim, ids, self.vectors_of(ids))
        if ivf is not None and n < exact_max // 2:
            ids = self.ids()
            return VectorIndex.build(self.dim, ids, self.vectors_of(ids), exact_max)
        return self

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # [n, dim]
        assert vectors.shape == (len(ids), self.dim), (vectors.shape, len(ids), self.dim)
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        return int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def ids(self) -> np.ndarray:
        """Every chunk id in the index, sorted."""
        if not len(self):
            return np.zeros(0, np.int64)
        ivf = self._ivf_index()
        if ivf is None:
            return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(ivf.nlist) if lists.list_size(i)]
        return np.sort(np.concatenate(parts).astype(np.int64))

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """[len(ids), dim] the stored vectors of these chunk ids."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        return self.index.reconstruct(int(chunk_id))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], ids [q, k]), best first; missing results have id -1. `allowed`
        (sorted chunk ids) restricts the search to those chunks, inside FAISS."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)  # [q, dim]
        ivf = self._ivf_index()
        selector = faiss.IDSelectorBatch(np.asarray(allowed, np.int64)) if allowed is not None else None
        if ivf is not None:
            nprobe = self.nprobe
            if allowed is not None and len(allowed) < _SELECTIVE_FILTER * len(self):
                nprobe = ivf.nlist
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, ivf.nlist))
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
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

    def save(self, path: Path) -> None:
        data = faiss.serialize_index(self.index)
        write_atomically(path, lambda fh: fh.write(data.tobytes()))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        data = np.fromfile(path, dtype=np.uint8)
        index = faiss.deserialize_index(data)
        return cls(index.d, index)
