"""Retrieval ideas tried against the shipped hybrid search, on a store kept by `ragqa eval beir`.

    ragqa eval beir ../shared/data/scifact --split train --mode all --work-dir /tmp/evalwork/scifact
    python scripts/retrieval_experiments.py /tmp/evalwork/scifact ../shared/data/scifact --split train
    # add --title-headers (re-embeds every chunk after a document's first, minutes) and
    # --sentence-windows (embeds every two-sentence window of every document, ~17 min on 2 cores);
    # --fusion-only runs only the fusion variants (adaptive weights, clipping, a product bonus, a
    # third signal from each chunk's window centroid) instead of the cheap ones

It reads the chunks and their window vectors from the kept store and scores every query against every
chunk in memory, so each variant costs seconds. The first three lines reproduce `ragqa eval beir`
(same BM25, same fusion, a document scores as its best chunk); every other line changes one thing.
A development tool: the figures in docs/benchmarks.md under "tried and not shipped" come from it.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.fusion import Standardiser
from rag.fusion import fuse as fuse_scores
from rag.lexical import LexicalIndex
from rag.retrieval import STANDARDISE_DEPTH
from ragqa.eval.beir_files import read_beir
from ragqa.eval.metrics import evaluate

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class Experiment:
    """One BEIR set against the chunks of the store `ragqa eval beir` kept for it."""

    def __init__(self, work: Path, folder: Path, split: str) -> None:
        self.beir = read_beir(folder, split)
        self.qids = list(self.beir.queries)
        self.corpus = {str(o["_id"]): (str(o.get("title") or "").strip(), str(o.get("text") or "").strip())
                       for o in map(json.loads, open(folder / "corpus.jsonl", encoding="utf-8"))}
        owners = {str((work / "corpus" / f"{n // 1000:04d}" / f"{n:08d}.txt").resolve()): cid
                  for n, cid in enumerate(self.corpus)}
        with sqlite3.connect(work / "ragqa.db") as db:
            (dim,) = db.execute("SELECT dim FROM index_state").fetchone()
            rows = db.execute("SELECT c.ordinal, c.text, c.embedding, d.path FROM chunks c "
                              "JOIN documents d ON d.id = c.document_id ORDER BY c.id").fetchall()
        rows = [r for r in rows if r[3] in owners]
        self.ordinal = np.array([r[0] for r in rows])
        self.texts = [r[1] for r in rows]
        windows = [np.frombuffer(r[2], np.float32).reshape(-1, dim) for r in rows]
        self.windows = np.concatenate(windows)  # [windows, dim]: every chunk's window vectors
        self.window_chunk = np.repeat(np.arange(len(rows)), [len(w) for w in windows])  # [windows]
        centroids = np.stack([w.mean(0) for w in windows])
        self.vectors = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)  # [chunks, dim]
        chunk_owner = [owners[r[3]] for r in rows]
        self.docs = sorted(set(chunk_owner))
        self.doc_index = {d: i for i, d in enumerate(self.docs)}
        self.chunk_doc = np.array([self.doc_index[d] for d in chunk_owner])  # [chunks]
        self._model: SentenceTransformer | None = None
        self.queries = self.encode([self.beir.queries[q] for q in self.qids])  # [queries, dim]

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            from rag.embedder import offline, resolve_model
            from rag.settings import PACKAGED_MINILM

            offline()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(resolve_model(PACKAGED_MINILM).path), device="cpu")
        return self._model.encode(texts, normalize_embeddings=True, batch_size=32)

    def dense(self, queries: np.ndarray) -> np.ndarray:
        """[queries, chunks] each chunk's best window cosine, as the retriever scores it."""
        return self.best_per_doc(queries @ self.windows.T, self.window_chunk)

    def bm25(self, texts: list[str], k1: float = 0.9, b: float = 0.4, documents: bool = True) -> np.ndarray:
        """[queries, texts] BM25 scores (0 where no query term matches); with `documents` (chunks
        only), plus the document BM25 the retriever adds."""
        index = LexicalIndex(k1, b)
        index.add(np.arange(len(texts)), texts)
        stats = index.document_stats(np.arange(len(texts)), self.chunk_doc) if documents else None
        out = np.zeros((len(self.qids), len(texts)), np.float32)
        for i, q in enumerate(self.qids):
            ids, scores = index.matching(self.beir.queries[q], None, stats)
            out[i, ids] = scores
        return out

    def best_per_doc(self, scores: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
        """[queries, units] -> [queries, docs]: each document's best unit (chunk by default)."""
        owner = self.chunk_doc if owner is None else owner
        order = np.argsort(owner, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(owner[order])) + 1]
        return np.maximum.reduceat(scores[:, order], starts, axis=1)

    def ndcg(self, doc_scores: np.ndarray) -> str:
        """nDCG@10 and success@1 (the first document relevant) of a [queries, docs] score table."""
        run = {q: [self.docs[j] for j in np.argsort(-doc_scores[i], kind="stable")[:100]]
               for i, q in enumerate(self.qids)}
        scores = evaluate(run, self.beir.qrels)
        return f"{scores['ndcg@10']:.4f} {scores['success@1']:.4f}"


def fuse(dense: np.ndarray, lexical: np.ndarray, w: float = 0.5, depth: int = STANDARDISE_DEPTH) -> np.ndarray:
    """The retriever's fusion over all chunks: z-scores against each signal's top `depth` scores,
    weighted sum over the union of both top-1000 lists (everything else -inf)."""
    out = np.full(dense.shape, -np.inf, np.float32)
    for i in range(len(dense)):
        d, lx = dense[i], lexical[i]
        zd, zl = Standardiser.of(np.sort(d)[-depth:]), Standardiser.of(np.sort(lx[lx > 0])[-depth:])
        cand = np.union1d(np.argsort(-d)[:1000], np.argsort(-lx)[:1000])
        out[i, cand] = fuse_scores(d[cand], lx[cand], zd, zl, w)
    return out


def fuse_variant(dense: np.ndarray, lexical: np.ndarray, combine: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 depth: int = STANDARDISE_DEPTH) -> np.ndarray:
    """As `fuse`, but the two z-score arrays [candidates] go through `combine`."""
    out = np.full(dense.shape, -np.inf, np.float32)
    for i in range(len(dense)):
        d, lx = dense[i], lexical[i]
        zd, zl = Standardiser.of(np.sort(d)[-depth:]), Standardiser.of(np.sort(lx[lx > 0])[-depth:])
        cand = np.union1d(np.argsort(-d)[:1000], np.argsort(-lx)[:1000])
        out[i, cand] = combine(zd(d[cand]), zl(lx[cand]))
    return out


def adaptive(zd: np.ndarray, zl: np.ndarray, alpha: float) -> np.ndarray:
    """Weights follow how far each signal's leader stands out."""
    md, ml = max(zd.max(), 1e-3), max(zl.max(), 1e-3)
    w = 0.5 + alpha * (md - ml) / (md + ml)
    return w * zd + (1 - w) * zl


def fusion_variants(x: Experiment, dense: np.ndarray, lexical: np.ndarray) -> dict[str, Callable[..., str]]:
    out: dict[str, Callable[..., str]] = {}
    for a in (0.1, 0.2, 0.3):
        out[f"hybrid, adaptive weight alpha {a}"] = lambda a=a: x.ndcg(x.best_per_doc(
            fuse_variant(dense, lexical, lambda zd, zl: adaptive(zd, zl, a))))
    for c in (2.0, 3.0, 4.0):
        out[f"hybrid, z-scores clipped at {c}"] = lambda c=c: x.ndcg(x.best_per_doc(
            fuse_variant(dense, lexical, lambda zd, zl: 0.5 * np.minimum(zd, c) + 0.5 * np.minimum(zl, c))))
    for g in (0.05, 0.1):
        out[f"hybrid, + {g} x product of positive z-scores"] = lambda g=g: x.ndcg(x.best_per_doc(
            fuse_variant(dense, lexical, lambda zd, zl: 0.5 * zd + 0.5 * zl
                         + g * np.maximum(zd, 0) * np.maximum(zl, 0))))
    centroid = x.queries @ x.vectors.T  # [queries, chunks] cosine to the mean of each chunk's windows
    for g in (0.25, 0.5):
        out[f"hybrid, + {g} x z(chunk centroid cosine)"] = lambda g=g: x.ndcg(x.best_per_doc(
            fuse(dense, lexical) + g * standardise_docs(centroid, 1000)))
    return out


def standardise_docs(scores: np.ndarray, depth: int = 200) -> np.ndarray:
    return np.stack([Standardiser.of(np.sort(row)[-depth:])(row) for row in scores]).astype(np.float32)


def cheap_variants(x: Experiment, dense: np.ndarray, lexical: np.ndarray) -> dict[str, Callable[..., str]]:
    doc_text = [f"{t}\n\n{body}" for t, body in (x.corpus[d] for d in x.docs)]
    whole_doc_bm25 = x.bm25(doc_text, documents=False)
    top3 = np.argsort(-fuse(dense, lexical), axis=1)[:, :3]
    prf_queries = x.queries + 0.6 * x.vectors[top3].mean(1)
    prf_queries /= np.linalg.norm(prf_queries, axis=1, keepdims=True)
    prf_dense = x.dense(prf_queries)
    out: dict[str, Callable[..., str]] = {
        "dense, first chunk of each document only (the truncating protocol)":
            lambda: x.ndcg(x.best_per_doc(np.where(x.ordinal[None, :] == 0, dense, -1))),
        "lexical, whole documents instead of chunks": lambda: x.ndcg(whole_doc_bm25),
        "hybrid, fused per document (best dense chunk, whole-document BM25)":
            lambda: x.ndcg(standardise_docs(x.best_per_doc(dense)) + standardise_docs(whole_doc_bm25)),
        "dense, query moved towards the hybrid top 3 (Rocchio, 0.6)": lambda: x.ndcg(x.best_per_doc(prf_dense)),
        "hybrid with that dense": lambda: x.ndcg(x.best_per_doc(fuse(prf_dense, lexical))),
    }
    for w in (0.4, 0.6):
        out[f"hybrid, dense weight {w}"] = lambda w=w: x.ndcg(x.best_per_doc(fuse(dense, lexical, w)))
    for depth in (100, 300):
        out[f"hybrid, z-scores over the top {depth}"] = (
            lambda d=depth: x.ndcg(x.best_per_doc(fuse(dense, lexical, depth=d))))
    for k1, b in ((1.2, 0.75), (1.2, 0.4), (0.7, 0.3)):
        out[f"hybrid, BM25 k1 {k1} b {b}"] = (
            lambda k1=k1, b=b: x.ndcg(x.best_per_doc(fuse(dense, x.bm25(x.texts, k1, b)))))
    return out


def title_headers(x: Experiment, lexical: np.ndarray) -> dict[str, str]:
    """Every chunk after the first embedded whole with its document's title in front (one vector
    instead of its windows)."""
    later = np.flatnonzero(x.ordinal > 0)
    dense = x.dense(x.queries)
    titled = x.encode([f"{x.corpus[x.docs[x.chunk_doc[i]]][0]}\n\n{x.texts[i]}" for i in later])
    dense[:, later] = x.queries @ titled.T
    return {"dense, titles on later chunks": x.ndcg(x.best_per_doc(dense)),
            "hybrid, titles on later chunks": x.ndcg(x.best_per_doc(fuse(dense, lexical)))}


def sentence_windows(x: Experiment, dense: np.ndarray, lexical: np.ndarray) -> dict[str, str]:
    """A vector for every window of two sentences (title in front): the dense signal at sentence grain."""
    windows, owner = [], []
    for d in x.docs:
        title, text = x.corpus[d]
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9(])", text) if s.strip()]
        for i in range(len(sentences)):
            windows.append(f"{title}. {' '.join(sentences[i:i + 2])}")
            owner.append(x.doc_index[d])
    per_doc = x.best_per_doc(x.queries @ x.encode(windows).T, np.array(owner))
    z_windows, z_chunks = standardise_docs(per_doc), standardise_docs(x.best_per_doc(dense))
    z_lexical = standardise_docs(x.best_per_doc(lexical))
    return {f"dense, two-sentence windows ({len(windows)} vectors)": x.ndcg(per_doc),
            "hybrid, windows instead of chunks": x.ndcg(z_windows + z_lexical),
            "hybrid, chunks + 0.5 x windows + lexical": x.ndcg(z_chunks + 0.5 * z_windows + z_lexical)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work_dir", type=Path, help="the --work-dir of a `ragqa eval beir` run")
    ap.add_argument("beir_dir", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--title-headers", action="store_true")
    ap.add_argument("--sentence-windows", action="store_true")
    ap.add_argument("--fusion-only", action="store_true", help="only the fusion variants")
    args = ap.parse_args()
    x = Experiment(args.work_dir, args.beir_dir, args.split)
    dense, lexical = x.dense(x.queries), x.bm25(x.texts)  # [queries, chunks] each
    print(f"{len(x.qids)} queries, {len(x.docs)} documents, {len(x.texts)} chunks; nDCG@10, success@1:")
    print(f"{x.ndcg(x.best_per_doc(dense))}  dense (as `ragqa eval beir`)")
    print(f"{x.ndcg(x.best_per_doc(lexical))}  lexical (as `ragqa eval beir`)")
    print(f"{x.ndcg(x.best_per_doc(fuse(dense, lexical)))}  hybrid (as `ragqa eval beir`)", flush=True)
    variants = fusion_variants(x, dense, lexical) if args.fusion_only else cheap_variants(x, dense, lexical)
    for name, run in variants.items():
        print(f"{run()}  {name}", flush=True)
    slow = {}
    if args.title_headers:
        slow.update(title_headers(x, lexical))
    if args.sentence_windows:
        slow.update(sentence_windows(x, dense, lexical))
    for name, value in slow.items():
        print(f"{value}  {name}")


if __name__ == "__main__":
    main()
