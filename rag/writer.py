"""Changing the store, the layer above `rag.store`: `open_writer` takes the write lock and yields a
`StoreWriter`, which stages document changes and applies them in one transaction per commit;
`reembed_store` re-embeds every chunk with a new model; `write_generation` writes a whole new
generation (re-embedding and `rag.consistency`'s repair both use it).

A commit (1) applies the staged rows in a SQL transaction, (2) applies the same changes to
in-memory copies of the vector (FAISS) and lexical (BM25) indexes and writes them as the next
generation's files, (3) points `index_state` at that generation and commits. See rag.store for why
this order is crash-safe. This module imports only `rag.store` and the modules below it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from rag import schema as s
from rag.lexical import LexicalIndex
from rag.records import DocumentContent, FileFacts
from rag.store import Store, chunk_batches
from rag.vectors import VectorIndex

if TYPE_CHECKING:  # for the annotation only: loading it is the caller's business (it may load torch)
    from rag.embedder import Embedder


@dataclass(frozen=True)
class ExistingDocument:
    id: int
    content_hash: str
    status: str
    path: str
    chunking: str | None = None  # its chunking recipe; None for documents from before version 4


@dataclass
class _Put:
    facts: FileFacts
    content: DocumentContent
    vectors: list[np.ndarray]  # per chunk: [windows, dim]
    model: str
    chunking: str


@dataclass
class _Failed:
    facts: FileFacts
    error: str


@dataclass
class _Duplicate:
    facts: FileFacts
    original_path: str


@dataclass
class _Remove:
    document_id: int


_Op = _Put | _Failed | _Duplicate | _Remove


@contextlib.contextmanager
def open_writer(store: Store, wait_s: float = 600.0) -> Iterator[StoreWriter]:
    """The only way to change documents: one writer at a time, all or nothing per commit; what is
    still staged when the block ends without an error is committed."""
    with store.frozen(wait_s, holder="another ingest"):
        _mark_dead_runs(store)
        w = StoreWriter(store)
        yield w
        w.commit()


def _mark_dead_runs(store: Store) -> None:
    # Holding the writer lock means no other ingest is alive: "running" rows are leftovers.
    with store.engine.begin() as c:
        c.execute(update(s.ingest_runs).where(s.ingest_runs.c.status == "running").values(status="interrupted"))


class StoreWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._ops: list[_Op] = []
        self._pending_hash: dict[tuple[int, str], str] = {}  # (collection, hash) -> path
        self._pending_paths: set[tuple[int, str]] = set()
        self._vectors: VectorIndex | None = None
        self._lexical: LexicalIndex | None = None
        self.staged_chunks = 0

    # ---- lookups -------------------------------------------------------------------------
    def ensure_collection(self, name: str) -> int:
        with self.store.engine.begin() as c:
            cid = c.execute(select(s.collections.c.id).where(s.collections.c.name == name)).scalar()
            if cid is None:
                cid = c.execute(insert(s.collections).values(name=name, created_at=_now())
                                .returning(s.collections.c.id)).scalar_one()
        return int(cid)

    def existing(self, collection_id: int, path: str) -> ExistingDocument | None:
        d, k = s.documents.c, s.document_chunking.c
        with self.store.engine.connect() as c:
            row = c.execute(select(d.id, d.content_hash, d.status, d.path, k.recipe)
                            .outerjoin(s.document_chunking, k.document_id == d.id)
                            .where(d.collection_id == collection_id, d.path == path)).first()
        return ExistingDocument(*row) if row else None

    def original_of(self, collection_id: int, content_hash: str, path: str) -> str | None:
        """The path of a document with this content, stored already or staged in this writer."""
        staged = self._pending_hash.get((collection_id, content_hash))
        if staged is not None and staged != path:
            return staged
        d = s.documents.c
        with self.store.engine.connect() as c:
            rows = c.execute(select(d.path).where(d.collection_id == collection_id, d.content_hash == content_hash,
                                                  d.status == "ready", d.path != path)).scalars().all()
        # A document whose file is being replaced in this writer no longer has that content.
        rows = [p for p in rows if (collection_id, p) not in self._pending_paths]
        return rows[0] if rows else None

    def collection_paths(self, collection_id: int) -> list[tuple[int, str]]:
        d = s.documents.c
        with self.store.engine.connect() as c:
            return [tuple(r) for r in c.execute(select(d.id, d.path).where(d.collection_id == collection_id))]

    # ---- staging ---------------------------------------------------------------------------
    def put_document(self, facts: FileFacts, content: DocumentContent, vectors: list[np.ndarray], model: str,
                     chunking: str) -> None:
        """Stage a document read anew; `vectors` holds each chunk's [windows, dim] vectors."""
        assert len(content.chunks) == len(vectors), "vectors for every chunk"
        self._stage(facts, _Put(facts, content, vectors, model, chunking))
        self._pending_hash[(facts.collection_id, facts.content_hash)] = facts.path
        self.staged_chunks += len(content.chunks)

    def put_failed(self, facts: FileFacts, error: str) -> None:
        self._stage(facts, _Failed(facts, error))

    def put_duplicate(self, facts: FileFacts, original_path: str) -> None:
        self._stage(facts, _Duplicate(facts, original_path))

    def remove(self, document_id: int) -> None:
        self._ops.append(_Remove(document_id))

    def _stage(self, facts: FileFacts, op: _Op) -> None:
        self._pending_paths.add((facts.collection_id, facts.path))
        self._ops.append(op)

    # ---- commit ------------------------------------------------------------------------------
    def commit(self) -> None:
        if not self._ops:
            return
        vectors = self._load_vectors()
        lexical = self._load_lexical()
        new_files: list[Path] = []
        try:
            with self.store.engine.begin() as conn:
                state = conn.execute(select(s.index_state).where(s.index_state.c.id == 1).with_for_update()).one()
                model, dim = state.embedding_model, state.dim
                added_ids: list[np.ndarray] = []
                added_owners: list[np.ndarray] = []
                added_vecs: list[np.ndarray] = []
                added_texts: list[str] = []
                removed: list[int] = []
                for op in self._ops:
                    if isinstance(op, _Put):
                        model, dim = self._check_model(model, dim, op)
                        ids = _apply_put(conn, op, removed)
                        added_ids.append(ids)
                        added_owners.append(np.repeat(ids, [len(v) for v in op.vectors]))  # per window
                        added_vecs.extend(op.vectors)
                        added_texts.extend(ch.text for ch in op.content.chunks)
                    elif isinstance(op, _Failed):
                        _apply_failed(conn, op)
                    elif isinstance(op, _Duplicate):
                        _apply_duplicate(conn, op, removed)
                    else:
                        _apply_remove(conn, op, removed)
                if vectors is None and dim is not None:
                    vectors = VectorIndex(dim)
                if vectors is not None:
                    vectors.remove(np.asarray(removed, dtype=np.int64))
                    if added_ids:
                        vectors.add(np.concatenate(added_owners), np.concatenate(added_vecs))
                lexical = _update_lexical(conn, lexical, removed, added_ids, added_texts)
                generation = state.generation + 1
                count = conn.execute(select(func.count()).select_from(s.chunks)).scalar_one()
                assert len(lexical) == count, (len(lexical), count)
                new_files.append(self.store.lexical_path(generation))
                lexical.save(new_files[-1])
                if vectors is not None:
                    assert len(vectors) == count, (len(vectors), count)
                    vectors = vectors.fitted(self.store.exact_max)  # exact or IVF, by size
                    new_files.append(self.store.faiss_path(generation))
                    vectors.save(new_files[-1])
                conn.execute(update(s.index_state).where(s.index_state.c.id == 1).values(
                    generation=generation, embedding_model=model, dim=dim, chunk_count=count))
        except BaseException:
            # The in-memory copies have changes SQL refused: reload them next time.
            self._vectors, self._lexical = None, None
            for f in new_files:
                f.unlink(missing_ok=True)
            raise
        self._vectors, self._lexical = vectors, lexical
        self._ops.clear()
        self._pending_hash.clear()
        self._pending_paths.clear()
        self.staged_chunks = 0
        self.store.retire_old_files(keep=generation)

    def _load_lexical(self) -> LexicalIndex:
        if self._lexical is None:
            self._lexical = self.store.load_lexical()
        return self._lexical

    def _load_vectors(self) -> VectorIndex | None:
        if self._vectors is None:
            _, self._vectors = self.store.load_vectors()
        return self._vectors

    @staticmethod
    def _check_model(model: str | None, dim: int | None, op: _Put) -> tuple[str, int]:
        op_dim = int(op.vectors[0].shape[1]) if op.vectors else dim
        if model is None or dim is None:
            return op.model, int(op_dim or 0)
        # The pipeline re-embeds the store before adding vectors of another model; this guards it.
        assert op.model == model and op_dim == dim, f"mixing embedding models {model} and {op.model}"
        return model, dim


def _now() -> datetime:
    return datetime.now(UTC)


def _document_values(f: FileFacts, **extra: Any) -> dict[str, Any]:
    return dict(collection_id=f.collection_id, path=f.path, content_hash=f.content_hash,
                size_bytes=f.size_bytes, doc_type=f.doc_type, updated_at=_now(), **extra)


def _existing_row(conn: Connection, f: FileFacts) -> Row[Any] | None:
    d = s.documents.c
    return conn.execute(select(s.documents).where(d.collection_id == f.collection_id, d.path == f.path)).first()


def _drop_content(conn: Connection, document_id: int, removed: list[int]) -> None:
    ids = conn.execute(select(s.chunks.c.id).where(s.chunks.c.document_id == document_id)).scalars().all()
    removed.extend(ids)
    conn.execute(delete(s.chunks).where(s.chunks.c.document_id == document_id))
    conn.execute(delete(s.pages).where(s.pages.c.document_id == document_id))
    conn.execute(delete(s.document_chunking).where(s.document_chunking.c.document_id == document_id))
    conn.execute(delete(s.page_ocr).where(s.page_ocr.c.document_id == document_id))


def _upsert(conn: Connection, row: Row[Any] | None, values: dict[str, Any]) -> int:
    if row is None:
        return conn.execute(insert(s.documents).values(created_at=_now(), **values)
                            .returning(s.documents.c.id)).scalar_one()
    conn.execute(update(s.documents).where(s.documents.c.id == row.id).values(**values))
    return int(row.id)


def _apply_put(conn: Connection, op: _Put, removed: list[int]) -> np.ndarray:
    row = _existing_row(conn, op.facts)
    if row is not None:
        _drop_content(conn, row.id, removed)
    version = 1 if row is None else row.version + (1 if row.status == "ready" else 0)
    c = op.content
    doc_id = _upsert(conn, row, _document_values(
        op.facts, title=c.title, pages=len(c.pages) if c.paginated else None, version=version,
        status="ready", error=None, duplicate_of=None))
    conn.execute(insert(s.pages), [{"document_id": doc_id, "page_no": i + 1, "text": t} for i, t in enumerate(c.pages)])
    conn.execute(insert(s.document_chunking).values(document_id=doc_id, recipe=op.chunking))
    if c.ocr:  # scanned pages: how OCR read them (word boxes for showing a citation on the page)
        conn.execute(insert(s.page_ocr), [
            {"document_id": doc_id, "page_no": n, "engine": o.engine, "confidence": o.confidence,
             "words": [list(w) for w in o.words]} for n, o in sorted(c.ocr.items())])
    rows = [
        dict(document_id=doc_id, ordinal=ch.ordinal, text=ch.text, n_tokens=ch.n_tokens,
             char_start=ch.char_start, char_end=ch.char_end, page_start=ch.page_start, page_end=ch.page_end,
             page_char_start=ch.page_char_start, page_char_end=ch.page_char_end,
             embedding_model=op.model, embedding=np.ascontiguousarray(op.vectors[i], np.float32).tobytes())
        for i, ch in enumerate(c.chunks)
    ]
    ids = conn.execute(insert(s.chunks).returning(s.chunks.c.id, sort_by_parameter_order=True), rows).scalars().all()
    return np.asarray(ids, dtype=np.int64)


def _apply_failed(conn: Connection, op: _Failed) -> None:
    row = _existing_row(conn, op.facts)
    if row is not None and row.status == "ready":
        # The new version could not be read: keep the old one searchable and say why it is old.
        conn.execute(update(s.documents).where(s.documents.c.id == row.id)
                     .values(error=f"latest version not read: {op.error}", updated_at=_now()))
        return
    _upsert(conn, row, _document_values(op.facts, title=_title_from_path(op.facts.path), pages=None,
                                        version=1, status="failed", error=op.error, duplicate_of=None))


def _apply_duplicate(conn: Connection, op: _Duplicate, removed: list[int]) -> None:
    d = s.documents.c
    original = conn.execute(select(s.documents).where(d.collection_id == op.facts.collection_id,
                                                      d.path == op.original_path)).one()
    row = _existing_row(conn, op.facts)
    if row is not None:
        _drop_content(conn, row.id, removed)
    _upsert(conn, row, _document_values(op.facts, title=original.title, pages=original.pages, version=1,
                                        status="duplicate", error=None, duplicate_of=original.id))


def _apply_remove(conn: Connection, op: _Remove, removed: list[int]) -> None:
    d = s.documents.c
    row = conn.execute(select(s.documents).where(d.id == op.document_id)).first()
    if row is None:
        return
    copies = conn.execute(select(d.id).where(d.duplicate_of == row.id, d.status == "duplicate")
                          .order_by(d.id)).scalars().all()
    if row.status == "ready" and copies:
        # Same content lives on under another path: hand the chunks over instead of dropping them.
        heir = copies[0]
        conn.execute(update(s.chunks).where(s.chunks.c.document_id == row.id).values(document_id=heir))
        conn.execute(update(s.pages).where(s.pages.c.document_id == row.id).values(document_id=heir))
        conn.execute(update(s.document_chunking).where(s.document_chunking.c.document_id == row.id)
                     .values(document_id=heir))
        conn.execute(update(s.documents).where(d.id == heir).values(
            status="ready", duplicate_of=None, version=row.version, updated_at=_now()))
        conn.execute(update(s.documents).where(d.duplicate_of == row.id).values(duplicate_of=heir))
    else:
        _drop_content(conn, row.id, removed)
    conn.execute(delete(s.documents).where(d.id == row.id))


def _title_from_path(path: str) -> str:
    return Path(path).stem


def _update_lexical(conn: Connection, lexical: LexicalIndex, removed: list[int], added_ids: list[np.ndarray],
                    added_texts: list[str]) -> LexicalIndex:
    """The lexical index after this commit's removals and additions (SQL already has them). An
    index written before word pairs is instead built again from every chunk's text, once, so that
    every chunk has its pairs indexed, not only the new ones."""
    if not lexical.pairs:
        rebuilt = LexicalIndex(lexical.k1, lexical.b)
        for ids, rows in chunk_batches(conn, s.chunks.c.text):
            rebuilt.add(ids, [r[0] for r in rows])
        return rebuilt
    lexical.remove(removed)
    if added_ids:
        lexical.add(np.concatenate(added_ids), added_texts)
    return lexical


def reembed_store(store: Store, embedder: Embedder, vector_texts: Callable[[str], list[str]],
                  on_progress: Callable[[int], None] | None = None) -> int:
    """Re-embed every chunk with `embedder` in one transaction (all or nothing); returns the count.
    `vector_texts` cuts a chunk into the texts of its vectors. The caller holds the writer lock
    (`open_writer`)."""
    index = VectorIndex(embedder.dim)
    lexical = LexicalIndex()  # unchanged by a new model, but each generation has its own file
    total = 0
    with store.engine.begin() as conn:
        state = store.index_state(conn)
        for ids, rows in chunk_batches(conn, s.chunks.c.text):
            texts = [r[0] for r in rows]
            windows = [vector_texts(t) for t in texts]
            vecs = embedder.encode([w for ws in windows for w in ws])
            per_chunk = np.split(vecs, np.cumsum([len(ws) for ws in windows])[:-1])
            conn.execute(
                update(s.chunks).where(s.chunks.c.id == bindparam("cid"))
                .values(embedding=bindparam("vec"), embedding_model=embedder.name),
                [{"cid": int(i), "vec": np.ascontiguousarray(v).tobytes()} for i, v in zip(ids, per_chunk)])
            index.add(np.repeat(ids, [len(ws) for ws in windows]), vecs)
            lexical.add(ids, texts)
            total += len(ids)
            if on_progress:
                on_progress(len(ids))
        write_generation(store, conn, state.generation + 1, index, lexical, embedder.name, embedder.dim)
    store.retire_old_files(keep=state.generation + 1)
    return total


def write_generation(store: Store, conn: Connection, generation: int, index: VectorIndex | None,
                     lexical: LexicalIndex, model: str | None, dim: int | None) -> None:
    """Write both index files of `generation`, whole, and point `index_state` at them in `conn`'s
    transaction. The caller holds the writer lock and retires older files once it has committed."""
    lexical.save(store.lexical_path(generation))
    if index is not None:
        index = index.fitted(store.exact_max)
        index.save(store.faiss_path(generation))
    conn.execute(update(s.index_state).where(s.index_state.c.id == 1).values(
        generation=generation, embedding_model=model if index is not None else None,
        dim=dim if index is not None else None, chunk_count=len(index) if index is not None else 0))
