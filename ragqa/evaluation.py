"""`ragqa eval beir`: retrieval quality on a BEIR-format folder, through the real pipeline.

The corpus goes into a store of its own (a temporary folder, or --work-dir to keep it between
runs: a second run then skips every unchanged document by its hash), chunked and embedded exactly
as user documents are; each query is ranked by the real Retriever; a document's score is its
best chunk's. The user's own store and database are never opened.
"""

from __future__ import annotations

import contextlib
import csv
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.metrics import Qrels, evaluate
from rag.retrieval import MODES, Mode, Retriever
from rag.settings import Settings

DOC_DEPTH = 100  # documents ranked per query: enough for Recall@100
CHUNK_DEPTH = 1000  # chunks ranked per query to find them


@dataclass(frozen=True)
class BeirSet:
    corpus: Path
    queries: dict[str, str]
    qrels: Qrels


def read_beir(folder: Path, split: str) -> BeirSet:
    corpus, queries_file, qrels_file = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"
    for f in (corpus, queries_file, qrels_file):
        if not f.is_file():
            raise ConfigError(f"not a BEIR folder: {f} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_file, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError:
                raise ConfigError(f"{qrels_file.name}: bad relevance {row[2]!r} for query {row[0]}") from None
    queries = {}
    for obj in _jsonl(queries_file):
        if str(obj["_id"]) in qrels:
            queries[str(obj["_id"])] = str(obj.get("text", ""))
    missing = set(qrels) - set(queries)
    if missing:
        raise ConfigError(f"{len(missing)} judged queries are not in queries.jsonl (e.g. {sorted(missing)[0]})")
    return BeirSet(corpus, queries, qrels)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{path.name} line {n} is not JSON") from None


def corpus_entries(corpus: Path) -> Iterator[tuple[str, str, str]]:
    """(id, title, text) of each corpus entry, stripped."""
    for n, obj in enumerate(_jsonl(corpus)):
        if not isinstance(obj, dict) or "_id" not in obj:
            raise ConfigError(f"{corpus.name}: entry {n + 1} has no _id")
        yield str(obj["_id"]), str(obj.get("title") or "").strip(), str(obj.get("text") or "").strip()


def write_corpus(corpus: Path, out: Path) -> dict[str, str]:
    """One text file per corpus entry (title, blank line, text); returns file path -> corpus id.
    Files already holding the same text are left alone, so a kept work dir re-ingests nothing."""
    out.mkdir(parents=True, exist_ok=True)
    owners: dict[str, str] = {}
    for n, (entry_id, title, text) in enumerate(corpus_entries(corpus)):
        body = f"{title}\n\n{text}\n" if title else f"{text}\n"
        path = out / f"{n // 1000:04d}" / f"{n:08d}.txt"
        path.parent.mkdir(exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
        owners[str(path.resolve())] = entry_id
    return owners


def rank_documents(retriever: Retriever, beir: BeirSet, mode: Mode, doc_of_chunk: dict[int, list[str]],
                   query_vectors: np.ndarray | None) -> dict[str, list[str]]:
    """Per query: corpus ids, best first; a document scores as its best chunk."""
    snap = retriever.snapshot()
    run: dict[str, list[str]] = {}
    for n, (qid, text) in enumerate(beir.queries.items()):
        qvec = query_vectors[n] if query_vectors is not None else None
        ranked = retriever.rank(text, mode, limit=CHUNK_DEPTH, query_vector=qvec, snap=snap)
        seen: dict[str, None] = {}
        for cid in ranked.ids.tolist():  # best first, so a document's first chunk is its best
            for doc in doc_of_chunk[cid]:
                seen.setdefault(doc)
            if len(seen) >= DOC_DEPTH:
                break
        run[qid] = list(seen)
    return run


def eval_beir(folder: Path, split: str, modes: list[Mode], settings: Settings, work_dir: Path | None = None,
              progress: Any = None, baselines: bool = False) -> dict[str, dict[str, Any]]:
    """Metrics per mode; with `baselines`, also per published protocol (ragqa.eval_baselines)."""
    from ingest.pipeline import ingest
    from ragqa import wiring

    beir = read_beir(folder, split)
    with contextlib.ExitStack() as stack:
        home = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ragqa-eval-")))
        # A store of its own: never the user's database, whatever RAGQA_DATABASE_URL says.
        cfg = settings.model_copy(update={"home": home, "database_url": ""})
        owners = write_corpus(beir.corpus, home / "corpus")
        store = wiring.open_store(cfg)
        stack.callback(store.close)
        ingest([home / "corpus"], store, cfg, wiring.embedding_ref(cfg), collection="beir", prune=True,
               load_embedder=lambda: wiring.load_embedder(cfg), progress=progress)
        doc_of_chunk = _chunk_owners(store, owners)
        retriever = wiring.retriever(cfg, store)
        dense_needed = baselines or set(modes) - {"lexical"}
        qvecs = retriever.embed_queries(list(beir.queries.values())) if dense_needed else None
        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            scores: dict[str, Any] = dict(evaluate(rank_documents(retriever, beir, mode, doc_of_chunk, qvecs), beir.qrels))
            scores.update(mode=mode, documents=len(owners), chunks=len(doc_of_chunk))
            results[mode] = scores
        if baselines:
            from ragqa.eval_baselines import baseline_scores

            assert qvecs is not None
            results.update(baseline_scores(beir.corpus, beir.queries, beir.qrels, retriever.embedder(), qvecs,
                                           work_dir, progress))
        return results


def _chunk_owners(store: Any, owners: dict[str, str]) -> dict[int, list[str]]:
    """Chunk id -> the corpus ids it belongs to: its document's, and those of corpus entries with
    the same text (the store keeps one copy; BEIR counts each)."""
    from sqlalchemy import select

    from rag import schema as s

    d = s.documents.c
    with store.engine.connect() as c:
        rows = c.execute(select(s.chunks.c.id, d.id, d.path).join(s.documents, d.id == s.chunks.c.document_id)).all()
        copies = c.execute(select(d.duplicate_of, d.path).where(d.status == "duplicate")).all()
    also: dict[int, list[str]] = {}
    for original, path in copies:
        if original is not None and path in owners:
            also.setdefault(original, []).append(owners[path])
    return {cid: [owners[path], *also.get(doc, [])] for cid, doc, path in rows if path in owners}


def parse_modes(mode: str) -> list[Mode]:
    if mode == "all":
        return list(MODES)
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}: use hybrid, dense, lexical or all")
    return [mode]  # type: ignore[list-item]
