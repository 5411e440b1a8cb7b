"""The ingest pipeline: plan each file (unchanged? duplicate? read it), read and chunk in a worker
process, embed in batches across files, stage into the store writer, commit in batches.

A kill at any moment loses at most the uncommitted batch; re-running redoes exactly that, because
a file counts as done only once its rows are committed (content hashes decide the rest).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ingest.chunking import RULES_VERSION, Chunker
from ingest.discover import Candidate, PasswordBook, content_hash, describe_skipped, discover, group_skipped
from ingest.reader import FileReader, ReaderConfig
from rag.embedder import Embedder, EmbeddingModelRef
from rag.errors import LoadError
from rag.records import DocumentContent, FileFacts
from rag.settings import Settings
from rag.store import Store
from rag.writer import StoreWriter, open_writer, reembed_store

READ_AHEAD = 8  # files read ahead of the embedder
EMBED_BATCH_CHUNKS = 512  # chunks embedded together (across files: small files batch well)
MIN_EMBED_CHUNKS = 32  # ... but fewer rather than none while the reader is still busy
ENCODE_STEP = 64  # chunks per encode call: how often the thread count can follow the reader
COMMIT_SECONDS = 60.0  # commit at least this often (and every settings.commit_chunks chunks)


class Progress(Protocol):
    def start(self, files: int) -> None: ...
    def file_done(self, path: str, outcome: str) -> None: ...
    def chunks_embedded(self, n: int) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    skipped_by_type: list[dict[str, str | int]] = field(default_factory=list)  # {"type", "count", "reason"}
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    read_wait_seconds: float = 0.0  # main process idle, waiting for the reader process
    store_seconds: float = 0.0  # SQL + FAISS commits
    changes: list[dict[str, str]] = field(default_factory=list)  # {"path", "change"}: for the audit log

    @property
    def skipped(self) -> int:
        """Files in folders that were not read."""
        return sum(int(g["count"]) for g in self.skipped_by_type)

    def skipped_text(self) -> str:
        """What was skipped and why, by type, in one line ("" when nothing was)."""
        return describe_skipped(self.skipped_by_type)

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
            "failed": self.failed, "duplicates": self.duplicates, "warnings": self.warnings,
            "skipped": self.skipped, "skipped_by_type": self.skipped_by_type,
            "pages": self.pages, "chunks": self.chunks,
            "seconds": round(self.seconds, 3), "embed_seconds": round(self.embed_seconds, 3),
            "read_wait_seconds": round(self.read_wait_seconds, 3), "store_seconds": round(self.store_seconds, 3),
        }


@dataclass
class _Pending:
    facts: FileFacts
    outcome: str  # "added" or "updated" once stored
    content: DocumentContent | None = None


def ingest(
    paths: list[Path],
    store: Store,
    settings: Settings,
    ref: EmbeddingModelRef,
    *,
    collection: str = "default",
    passwords: PasswordBook | None = None,
    prune: bool = False,
    load_embedder: Callable[[], Embedder] | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Bring the collection up to date with the files under `paths`."""
    started = time.perf_counter()
    candidates, skipped = discover(paths, ocr=settings.ocr != "off")
    summary = IngestSummary(skipped_by_type=group_skipped(skipped))
    run_id = store.start_run(collection, [str(p) for p in paths])
    status = "interrupted"
    try:
        with open_writer(store) as writer:
            job = _Job(writer, store, settings, ref, passwords or PasswordBook(), summary, progress,
                       load_embedder or (lambda: Embedder.load(ref, device=settings.device,
                                                               batch_size=settings.embedding_batch_size)))
            job.collection_id = writer.ensure_collection(collection)
            job.reembed_if_model_changed()
            job.run(candidates)
            if prune:
                job.prune([p.resolve() for p in paths], {c.path for c in candidates})
        status = "done"
    finally:
        summary.seconds = time.perf_counter() - started
        store.finish_run(run_id, summary.as_json(), summary.seconds, status)
    return summary


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


class _Job:
    def __init__(self, writer: StoreWriter, store: Store, settings: Settings, ref: EmbeddingModelRef,
                 passwords: PasswordBook, summary: IngestSummary, progress: Progress | None,
                 load_embedder: Callable[[], Embedder]) -> None:
        self.writer, self.store, self.settings, self.ref = writer, store, settings, ref
        self.passwords, self.summary, self.progress = passwords, summary, progress
        self._load_embedder = load_embedder
        self._embedder: Embedder | None = None
        self._reader: FileReader | None = None
        self._batch: list[_Pending] = []
        self._batch_chunks = 0
        self._last_commit = time.monotonic()
        self.collection_id = 0
        self._window: deque[tuple[_Pending, Future]] = deque()  # files being read, oldest first
        self._cores = 0  # torch's thread count, read when the first embedding happens
        # Same content seen twice in this run: the copies wait for the first one to settle.
        self._in_flight: dict[str, str] = {}  # content hash -> path being read
        self._copies: dict[str, list[FileFacts]] = {}  # path being read -> files with its content

    # ---- setup -----------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:  # loaded only when something needs embedding
            self._embedder = self._load_embedder()
        return self._embedder

    def chunk_sizes(self) -> tuple[int, int, int]:
        """(largest chunk, overlap, window) in the embedding model's tokens, as the settings allow;
        window 0 when chunks are not cut into windows."""
        max_tokens = min(self.settings.chunk_tokens, self.ref.max_tokens())
        window = self.settings.window_tokens if self.settings.window_tokens < max_tokens else 0
        return max_tokens, min(self.settings.chunk_overlap, max_tokens // 2), window

    @functools.cached_property
    def chunking(self) -> str:
        """What the store records per document; a document chunked otherwise is read again."""
        max_tokens, overlap, window = self.chunk_sizes()
        recipe = f"{max_tokens} tokens, {overlap} overlap" + (f", windows of {window}" if window else "")
        return f"{recipe}, {RULES_VERSION}"

    def reader(self) -> FileReader:
        if self._reader is None:
            max_tokens, overlap, window = self.chunk_sizes()
            self._reader = FileReader(ReaderConfig(
                tokenizer_json=self.ref.tokenizer_json(), max_tokens=max_tokens, overlap=overlap, window_tokens=window,
                timeout_s=self.settings.file_timeout_s, memory_mb=self.settings.loader_memory_mb,
                ocr=self.settings.ocr != "off", ocr_languages=self.settings.ocr_languages))
        return self._reader

    def reembed_if_model_changed(self) -> None:
        state = self.store.index_state()
        if state.embedding_model is None or state.embedding_model == self.ref.name or not state.chunk_count:
            return
        self._say(f"embedding model changed ({state.embedding_model} -> {self.ref.name}): "
                  f"re-embedding {state.chunk_count} chunks")
        max_tokens, _, window = self.chunk_sizes()
        chunker = Chunker(self.ref.tokenizer_json(), max_tokens, 0, window)
        reembed_store(self.store, self.embedder, chunker.vector_texts, self._count_embedded)

    # ---- the main loop ---------------------------------------------------------------------
    def run(self, candidates: list[Candidate]) -> None:
        if self.progress:
            self.progress.start(len(candidates))
        window = self._window
        # Small files first: embedding starts after seconds, not after the biggest file is parsed.
        candidates = sorted(candidates, key=lambda c: c.size)
        try:
            for cand in candidates:
                pending = self._plan(cand)
                if pending is None:
                    continue
                reading = self.reader().submit(str(cand.path), cand.doc_type or "", self.passwords.for_file(cand.path))
                window.append((pending, reading))
                while len(window) > READ_AHEAD:
                    self._collect(*window.popleft())
            while window:
                self._collect(*window.popleft())
            self._flush()
        finally:
            if self._reader is not None:
                self._reader.close()
            if self._cores:
                self.embedder.set_threads(self._cores)  # give back what was lent to the reader

    def _plan(self, cand: Candidate) -> _Pending | None:
        """Decide what to do with one file; returns the work to read it, or None if settled."""
        path = str(cand.path)
        if cand.doc_type is None:
            self._fail_unhashed(path, f"unsupported file type {cand.path.suffix or '(no extension)'!r}")
            return None
        size = cand.size
        if size > self.settings.max_file_mb * 1024 * 1024:
            self._fail_unhashed(path, f"file too large ({size / 2**20:.1f} MB; limit {self.settings.max_file_mb:g} MB)")
            return None
        try:
            digest = content_hash(cand.path)
        except OSError as exc:
            self._fail_unhashed(path, f"cannot read file: {exc.strerror or exc}")
            return None
        facts = FileFacts(self.collection_id, path, digest, size, cand.doc_type)
        existing = self.writer.existing(self.collection_id, path)
        if existing is not None and existing.content_hash == digest and (
                existing.status == "duplicate"  # no chunks of its own
                # Documents from before chunking was recorded (None) are left as they are.
                or (existing.status == "ready" and existing.chunking in (None, self.chunking))):
            self.summary.unchanged += 1
            self._done(path, "unchanged")
            return None
        if digest in self._in_flight:
            self._copies.setdefault(self._in_flight[digest], []).append(facts)
            return None
        original = self.writer.original_of(self.collection_id, digest, path)
        if original is not None:
            self._duplicate(facts, original)
            return None
        self._in_flight[digest] = path
        return _Pending(facts, "updated" if existing is not None and existing.status == "ready" else "added")

    def _collect(self, pending: _Pending, future: Future) -> None:
        if not future.done() and self._batch_chunks >= MIN_EMBED_CHUNKS:
            self._flush()  # embed what we have rather than wait idle for the reader
        t0 = time.perf_counter()
        try:
            pending.content = self.reader().result(future)
        except LoadError as exc:
            self.summary.read_wait_seconds += time.perf_counter() - t0
            self._fail(pending.facts, str(exc))
            return
        self.summary.read_wait_seconds += time.perf_counter() - t0
        for w in pending.content.warnings:
            self.summary.warnings.append({"path": pending.facts.path, "warning": w})
        self._batch.append(pending)
        self._batch_chunks += len(pending.content.chunks)
        if self._batch_chunks >= min(EMBED_BATCH_CHUNKS, self.settings.commit_chunks):
            self._flush()

    def _flush(self) -> None:
        """Embed the batch, stage its documents, and commit when enough has piled up."""
        if self._batch:
            chunks = [ch for p in self._batch for ch in p.content.chunks]  # type: ignore[union-attr]
            texts = [t for ch in chunks for t in ch.vector_texts()]  # a chunk's windows, or the chunk
            # Steps of similar length pad little (encode sorts within a call, not across calls).
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            vectors = np.empty((len(texts), self.embedder.dim), dtype=np.float32)
            at = 0
            while at < len(order):
                # While the reader works, small steps: the core goes back as soon as it is done.
                step = order[at:at + (self.embedder.batch_size if self._reader_busy() else ENCODE_STEP)]
                vectors[step] = self._encode([texts[j] for j in step])
                at += len(step)
            per_chunk = np.split(vectors, np.cumsum([ch.n_vectors for ch in chunks])[:-1])
            at = 0
            for p in self._batch:
                content = p.content
                assert content is not None
                n = len(content.chunks)
                self.writer.put_document(p.facts, content, per_chunk[at:at + n], self.embedder.name,
                                         self.chunking)
                at += n
                setattr(self.summary, p.outcome, getattr(self.summary, p.outcome) + 1)
                self.summary.changes.append({"path": p.facts.path, "change": p.outcome})
                self.summary.pages += len(content.pages)
                self.summary.chunks += n
                self._done(p.facts.path, p.outcome)
                for copy in self._copies.pop(p.facts.path, []):
                    self._duplicate(copy, p.facts.path)
            self._batch, self._batch_chunks = [], 0
        if (self.writer.staged_chunks >= self.settings.commit_chunks
                or time.monotonic() - self._last_commit > COMMIT_SECONDS):
            self._commit()

    def _commit(self) -> None:
        t0 = time.perf_counter()
        self.writer.commit()
        self.summary.store_seconds += time.perf_counter() - t0
        self._last_commit = time.monotonic()

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embed one step's worth of texts. While the reader process is parsing, torch gets one
        core fewer: a multi-threaded op waits for its slowest thread, so sharing a core with the
        reader would slow every thread to the speed of the shared one."""
        self._cores = self._cores or _torch_threads()
        if self._cores > 1:
            self.embedder.set_threads(self._cores - 1 if self._reader_busy() else self._cores)
        t0 = time.perf_counter()
        vectors = self.embedder.encode(texts)
        self.summary.embed_seconds += time.perf_counter() - t0
        self._count_embedded(len(texts))
        return vectors

    def _reader_busy(self) -> bool:
        return any(not f.done() for _, f in self._window)

    # ---- outcomes ----------------------------------------------------------------------------
    def _duplicate(self, facts: FileFacts, original: str) -> None:
        self.writer.put_duplicate(facts, original)
        self.summary.duplicates.append({"path": facts.path, "same_as": original})
        self._done(facts.path, "duplicate")

    def _fail(self, facts: FileFacts, reason: str) -> None:
        self.writer.put_failed(facts, reason)
        self.summary.failed.append({"path": facts.path, "error": reason})
        self._done(facts.path, "failed")
        for copy in self._copies.pop(facts.path, []):
            self._fail(copy, reason)

    def _fail_unhashed(self, path: str, reason: str) -> None:
        # Not recorded in the store: there is no content to tell versions apart.
        self.summary.failed.append({"path": path, "error": reason})
        return self._done(path, "failed")

    def _done(self, path: str, outcome: str) -> None:
        if self.progress:
            self.progress.file_done(path, outcome)
        return None

    def _count_embedded(self, n: int) -> None:
        if self.progress:
            self.progress.chunks_embedded(n)

    def _say(self, text: str) -> None:
        if self.progress:
            self.progress.message(text)

    def prune(self, roots: list[Path], present: set[Path]) -> None:
        """Remove documents under `roots` whose files are gone."""
        prefixes = [str(r) if not r.is_dir() else str(r).rstrip("/") + "/" for r in roots]
        for doc_id, path in self.writer.collection_paths(self.collection_id):
            inside = any(path == p or path.startswith(p) for p in prefixes)
            if inside and Path(path) not in present and not Path(path).exists():
                self.writer.remove(doc_id)
                self.summary.removed += 1
                self.summary.changes.append({"path": path, "change": "removed"})
