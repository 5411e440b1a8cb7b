"""`ragqa check`, the layer above `rag.store` and `rag.writer`: do the SQL store, the vector
(FAISS) index and the lexical (BM25) index of the current generation agree? `--repair`
(`repair_store`) rebuilds both index files from SQL, where every chunk's vectors and text are kept.
Imports only downward: the store to read, the writer (its lock and `write_generation`) to repair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import Connection, func, select

from rag import schema as s
from rag.errors import one_line
from rag.lexical import LexicalIndex
from rag.store import IndexState, Store, chunk_batches, vectors_from_blobs
from rag.vectors import VectorIndex
from rag.writer import open_writer, write_generation

_SAMPLE = 200  # vectors compared value by value; ids are compared in full
_Index = TypeVar("_Index", VectorIndex, LexicalIndex)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    generation: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(store: Store) -> CheckReport:
    """Compare, in one database snapshot, SQL's chunks with both index files of its generation."""
    report = CheckReport()
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every read below
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            state = store.index_state(conn)
            sql_ids = np.asarray(conn.execute(select(s.chunks.c.id).order_by(s.chunks.c.id)).scalars().all(), np.int64)
            report.documents = conn.execute(select(func.count()).select_from(s.documents)).scalar_one()
            models = conn.execute(select(s.chunks.c.embedding_model).distinct()).scalars().all()
            empty_docs = conn.execute(
                select(func.count()).select_from(s.documents)
                .where(s.documents.c.status == "ready", ~s.documents.c.id.in_(select(s.chunks.c.document_id)))
            ).scalar_one()
            sample = _sample_vectors(conn, sql_ids)
    report.chunks, report.generation = len(sql_ids), state.generation
    if state.chunk_count != len(sql_ids):
        report.problems.append(f"index_state counts {state.chunk_count} chunks, the chunks table has {len(sql_ids)}")
    if len(models) > 1 or (models and models[0] != state.embedding_model):
        report.problems.append(
            f"vectors of several embedding models: {sorted(models)} (store: {state.embedding_model})")
    if empty_docs:
        report.problems.append(f"{empty_docs} ready documents have no chunks")
    _check_faiss(store, state, sql_ids, sample, report)
    _check_lexical(store, state, sql_ids, report)
    _note_leftovers(store, state.generation, report)
    return report


def _check_faiss(store: Store, state: IndexState, sql_ids: np.ndarray, sample: dict[int, bytes],
                 report: CheckReport) -> None:
    if state.generation == 0 or state.dim is None:
        if len(sql_ids):
            report.problems.append("chunks exist but no vector index was ever written")
        return
    path = store.faiss_path(state.generation)
    vectors = _load_or_report(VectorIndex.load, path, "vector index", report)
    if vectors is None:
        return
    report.vectors = vectors.n_vectors
    faiss_ids = _compare_ids(vectors.ids(), sql_ids, "vector", path, report)
    if vectors.dim != state.dim:
        report.problems.append(f"{path.name} has dimension {vectors.dim}, the store {state.dim}")
        return
    bad = [cid for cid, blob in sample.items() if cid in faiss_ids
           and not _same_vectors(vectors.reconstruct(cid), np.frombuffer(blob, np.float32).reshape(-1, state.dim))]
    if bad:
        report.problems.append(f"{len(bad)} of {len(sample)} sampled vectors differ from SQL (e.g. chunk {bad[0]})")


def _same_vectors(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, atol=1e-6)


def _check_lexical(store: Store, state: IndexState, sql_ids: np.ndarray, report: CheckReport) -> None:
    if state.generation == 0:
        return
    path = store.lexical_path(state.generation)
    lexical = _load_or_report(LexicalIndex.load, path, "lexical index", report)
    if lexical is not None:
        _compare_ids(lexical.ids(), sql_ids, "lexical entry", path, report)


def _load_or_report(load: Callable[[Path], _Index], path: Path, what: str, report: CheckReport) -> _Index | None:
    try:
        return load(path)
    except (OSError, RuntimeError, ValueError) as exc:  # missing, or not a whole index
        report.problems.append(f"{what} {path.name} cannot be read: {one_line(exc)}")
        return None


def _compare_ids(file_ids: np.ndarray, sql_ids: np.ndarray, what: str, path: Path, report: CheckReport) -> set[int]:
    """Report chunks the file lacks and entries it has for no chunk; returns the file's ids."""
    missing = np.setdiff1d(sql_ids, file_ids)
    extra = np.setdiff1d(file_ids, sql_ids)
    if len(missing):
        report.problems.append(f"{len(missing)} chunks have no {what} in {path.name} (e.g. {missing[:5].tolist()})")
    if len(extra):
        report.problems.append(f"{len(extra)} {what}s in {path.name} belong to no chunk (e.g. {extra[:5].tolist()})")
    return set(file_ids.tolist())


def _sample_vectors(conn: Connection, ids: np.ndarray) -> dict[int, bytes]:
    if not len(ids):
        return {}
    pick = np.unique(np.concatenate([ids[:_SAMPLE // 2], ids[-_SAMPLE // 2:]])).tolist()
    rows = conn.execute(select(s.chunks.c.id, s.chunks.c.embedding).where(s.chunks.c.id.in_(pick))).all()
    return {int(r.id): r.embedding for r in rows}


def _note_leftovers(store: Store, generation: int, report: CheckReport) -> None:
    stale = store.stale_files(generation)
    if stale:
        report.notes.append(f"{len(stale)} unused index files from interrupted writes (removed by --repair)")
    with store.engine.connect() as conn:
        running = conn.execute(select(func.count()).select_from(s.ingest_runs)
                               .where(s.ingest_runs.c.status == "running")).scalar_one()
    if running:
        report.notes.append(f"{running} ingest runs are running or were interrupted")


def repair_store(store: Store) -> CheckReport:
    """Rebuild both index files from SQL; afterwards they agree with it by construction."""
    with open_writer(store):
        with store.engine.begin() as conn:
            state = store.index_state(conn)
            dim = state.dim
            index = VectorIndex(dim) if dim else None
            lexical = LexicalIndex()
            for ids, rows in chunk_batches(conn, s.chunks.c.embedding, s.chunks.c.text):
                blobs, texts = [r[0] for r in rows], [r[1] for r in rows]
                if index is None or dim is None:  # no model yet: the first vectors tell the dimension
                    dim = len(blobs[0]) // 4
                    index = VectorIndex(dim)
                index.add(*vectors_from_blobs(ids, blobs, dim))
                lexical.add(ids, texts)
            write_generation(store, conn, state.generation + 1, index, lexical, state.embedding_model, dim)
        store.retire_old_files(keep=state.generation + 1)
    return check_store(store)
