"""The FAISS copy of the chunk vectors: ids are chunk ids, vectors are normalised (inner product =
cosine). Files are written whole to a temporary name and renamed, so a reader never sees half."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np


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


class VectorIndex:
    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        out = cls(dim)
        out.add(ids, vectors)
        return out

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
        id_map = faiss.vector_to_array(self.index.id_map) if len(self) else np.zeros(0, np.int64)
        return np.sort(id_map.astype(np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], ids [q, k]); missing results have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)  # [q, dim]
        return self.index.search(queries, k)

    def reconstruct(self, chunk_id: int) -> np.ndarray:
        return self.index.reconstruct(int(chunk_id))

    def save(self, path: Path) -> None:
        data = faiss.serialize_index(self.index)
        write_atomically(path, lambda fh: fh.write(data.tobytes()))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        data = np.fromfile(path, dtype=np.uint8)
        index = faiss.deserialize_index(data)
        return cls(index.d, index)
