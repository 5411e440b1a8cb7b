"""The document store, the bottom of three layers: reading it. SQL holds the truth (documents,
pages, chunks with their texts and vectors); two index files per generation are derived from it:
a FAISS vector index (`vectors-N.faiss`) and a BM25 lexical index with word pairs (`lexical-N.npz`).

Consistency rule: `index_state.generation` in SQL names the pair of index files that matches the
SQL rows. A writer writes the next generation's files completely *before* committing the SQL
transaction that points at them, so after a crash at any moment SQL names complete files that
match it; files of uncommitted generations are garbage, collected later.

This module knows paths, `index_state`, reading a generation, `chunk_batches` and the write lock;
it imports neither layer above it: `rag.writer` (changing documents, re-embedding) and
`rag.consistency` (`ragqa check` and its repair) build on it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from sqlalchemy import ColumnElement, Connection, Engine, func, select, update

from rag import schema as s
from rag.db import open_database
from rag.errors import NotFoundError, StoreError
from rag.lexical import LexicalIndex
from rag.vectors import EXACT_MAX_DEFAULT, NPROBE_DEFAULT, VectorIndex

FAISS_PATTERN = "vectors-{:08d}.faiss"
LEXICAL_PATTERN = "lexical-{:08d}.npz"
_INDEX_FILES = re.compile(r"^(vectors|lexical)-(\d{8})\.(faiss|npz)$")


@dataclass(frozen=True)
class IndexState:
    generation: int
    embedding_model: str | None
    dim: int | None
    chunk_count: int


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    collection: str
    path: str
    title: str
    doc_type: str
    pages: int | None
    status: str
    error: str | None
    version: int
    chunks: int
    size_bytes: int
    content_hash: str
    updated_at: datetime
    duplicate_of: int | None

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["updated_at"] = self.updated_at.isoformat()
        return out


class Store:
    def __init__(self, engine: Engine, index_dir: Path, *, exact_max: int = EXACT_MAX_DEFAULT,
                 nprobe: int = NPROBE_DEFAULT) -> None:
        self.engine = engine
        self.index_dir = index_dir
        self.exact_max = exact_max  # vector index kind by size: see rag.vectors
        self.nprobe = nprobe
        index_dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(index_dir / "write.lock"))

    @classmethod
    def open(cls, url: str, index_dir: Path, **options: int) -> Store:
        return cls(open_database(url), index_dir, **options)

    def close(self) -> None:
        self.engine.dispose()

    # ---- reading -------------------------------------------------------------------------
    def index_state(self, conn: Connection | None = None) -> IndexState:
        with _maybe_connect(self.engine, conn) as c:
            row = c.execute(select(s.index_state).where(s.index_state.c.id == 1)).one()
        return IndexState(row.generation, row.embedding_model, row.dim, row.chunk_count)

    def faiss_path(self, generation: int) -> Path:
        return self.index_dir / FAISS_PATTERN.format(generation)

    def lexical_path(self, generation: int) -> Path:
        return self.index_dir / LEXICAL_PATTERN.format(generation)

    def load_lexical(self) -> LexicalIndex:
        """The BM25 index of the current generation (empty while the store is)."""
        for _ in range(5):  # as in load_vectors: a commit may retire the file between two reads
            state = self.index_state()
            if state.generation == 0:
                return LexicalIndex()
            path = self.lexical_path(state.generation)
            try:
                return LexicalIndex.load(path)
            except (OSError, ValueError):
                if self.index_state().generation == state.generation:
                    raise StoreError(
                        f"lexical index {path.name} is missing or damaged: run `ragqa check --repair`") from None
        raise StoreError("the lexical index keeps changing under this reader; try again")

    def load_vectors(self) -> tuple[IndexState, VectorIndex | None]:
        """The current state and its FAISS index (None while the store is empty)."""
        for _ in range(5):  # a writer may retire the file between our two reads: read again
            state = self.index_state()
            if state.generation == 0 or state.dim is None:
                return state, None
            path = self.faiss_path(state.generation)
            try:
                vectors = VectorIndex.load(path)
                vectors.nprobe = self.nprobe
                return state, vectors
            except (FileNotFoundError, RuntimeError):
                if self.index_state().generation == state.generation:
                    raise StoreError(
                        f"vector index {path.name} is missing or damaged: run `ragqa check --repair`") from None
        raise StoreError("the vector index keeps changing under this reader; try again")

    def collection_id(self, name: str) -> int | None:
        with self.engine.connect() as c:
            return c.execute(select(s.collections.c.id).where(s.collections.c.name == name)).scalar()

    def collections(self) -> list[str]:
        with self.engine.connect() as c:
            return list(c.execute(select(s.collections.c.name).order_by(s.collections.c.name)).scalars())

    def documents(self, collection: str | None = None, ids: list[int] | None = None) -> list[DocumentInfo]:
        n_chunks = (
            select(s.chunks.c.document_id, func.count().label("n"))
            .group_by(s.chunks.c.document_id)
            .subquery()
        )
        q = (
            select(s.documents, s.collections.c.name.label("collection"), func.coalesce(n_chunks.c.n, 0).label("n"))
            .join(s.collections, s.collections.c.id == s.documents.c.collection_id)
            .outerjoin(n_chunks, n_chunks.c.document_id == s.documents.c.id)
            .order_by(s.collections.c.name, s.documents.c.path)
        )
        if collection is not None:
            q = q.where(s.collections.c.name == collection)
        if ids is not None:
            q = q.where(s.documents.c.id.in_(ids))
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [
            DocumentInfo(
                id=r.id, collection=r.collection, path=r.path, title=r.title, doc_type=r.doc_type,
                pages=r.pages, status=r.status, error=r.error, version=r.version, chunks=r.n,
                size_bytes=r.size_bytes, content_hash=r.content_hash, updated_at=r.updated_at,
                duplicate_of=r.duplicate_of,
            )
            for r in rows
        ]

    def resolve_documents(self, refs: list[str]) -> list[DocumentInfo]:
        """Documents named by id or by path (as given, or resolved); unknown names raise."""
        everything = self.documents()
        by_id = {str(d.id): d for d in everything}
        by_path: dict[str, list[DocumentInfo]] = {}
        for d in everything:
            by_path.setdefault(d.path, []).append(d)
        found: list[DocumentInfo] = []
        for ref in refs:
            hits = [by_id[ref]] if ref in by_id else by_path.get(ref) or by_path.get(str(Path(ref).resolve()))
            if not hits:
                raise NotFoundError(f"no document {ref!r} (see `ragqa docs`)")
            found.extend(hits)
        return found

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as c:
            by_status = select(s.documents.c.status, func.count()).group_by(s.documents.c.status)
            docs: dict[str, int] = dict(c.execute(by_status).all())
            chunks = c.execute(select(func.count()).select_from(s.chunks)).scalar() or 0
        return {"documents": sum(docs.values()), "ready": docs.get("ready", 0), "failed": docs.get("failed", 0),
                "duplicates": docs.get("duplicate", 0), "chunks": chunks}

    # ---- the write lock and index files ---------------------------------------------------
    @contextlib.contextmanager
    def frozen(self, wait_s: float = 600.0, holder: str = "an ingest") -> Iterator[None]:
        """The store's write lock: no writer runs while this is held (`rag.writer.open_writer`
        takes it; backups take it to read a state no ingest is changing). It lives here, not in
        the writer, because readers that must see a still store take it too."""
        try:
            self._lock.acquire(timeout=wait_s)
        except Timeout:
            raise StoreError(f"{holder} has held the store for {wait_s:.0f}s; try again later") from None
        try:
            yield
        finally:
            self._lock.release()

    def retire_old_files(self, keep: int) -> None:
        """Delete index files other than generation `keep` and the one before it (a reader that
        read the state just before the last commit may still be opening that one)."""
        for p in self.index_dir.iterdir():
            m = _INDEX_FILES.match(p.name)
            if (m and int(m.group(2)) not in (keep, keep - 1)) or (p.name.startswith(".") and p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    def stale_files(self, generation: int) -> list[str]:
        return [p.name for p in self.index_dir.iterdir()
                if ((m := _INDEX_FILES.match(p.name)) and int(m.group(2)) not in (generation, generation - 1))
                or (p.name.startswith(".") and p.name.endswith(".tmp"))]

    # ---- ingest runs ---------------------------------------------------------------------
    def start_run(self, collection: str, paths: list[str]) -> int:
        with self.engine.begin() as c:
            return c.execute(
                s.ingest_runs.insert().values(started_at=_now(), status="running", collection=collection, paths=paths)
                .returning(s.ingest_runs.c.id)
            ).scalar_one()

    def finish_run(self, run_id: int, summary: dict[str, Any], seconds: float, status: str = "done") -> None:
        with self.engine.begin() as c:
            c.execute(update(s.ingest_runs).where(s.ingest_runs.c.id == run_id)
                      .values(finished_at=_now(), status=status, summary=summary, seconds=seconds))

    def recent_runs(self, n: int = 10) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(s.ingest_runs).order_by(s.ingest_runs.c.id.desc()).limit(n)).mappings().all()
        return [dict(r) for r in rows]


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def _maybe_connect(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    if conn is not None:
        yield conn
    else:
        with engine.connect() as c:
            yield c


def vectors_from_blobs(ids: np.ndarray, blobs: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunks' embedding columns -> (chunk id of each vector [m], vectors [m, dim]). A blob holds
    one vector per window of its chunk, back to back (one for a chunk without windows)."""
    if not blobs:
        return np.zeros(0, np.int64), np.zeros((0, dim), dtype=np.float32)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim)
    return np.repeat(np.asarray(ids, np.int64), [len(b) // (4 * dim) for b in blobs]), vectors


def chunk_batches(conn: Connection, *columns: ColumnElement[Any],
                  size: int = 4096) -> Iterator[tuple[np.ndarray, list[tuple[Any, ...]]]]:
    """Every chunk in id order, `size` at a time: (ids, rows of the asked columns)."""
    last = 0
    while True:
        rows = conn.execute(select(s.chunks.c.id, *columns).where(s.chunks.c.id > last)
                            .order_by(s.chunks.c.id).limit(size)).all()
        if not rows:
            return
        last = rows[-1][0]
        yield np.asarray([r[0] for r in rows], np.int64), [tuple(r[1:]) for r in rows]
