"""Lexical search: exact Okapi BM25 over an index that takes additions and deletions in place.

Why not bm25s alone: it precomputes scores, so one new document means rebuilding everything
(xhluca/bm25s#5). Here term frequencies live in immutable segments (one per batch of additions),
deletions are tombstones, and the global statistics BM25 needs (document frequencies, average
length) are counters; scores are computed at query time, so they are exact after every change.
Small segments are merged, as Lucene does. Tokens: bm25s's English stopwords, Snowball stemming.

A chunk's lexical score is its own BM25 plus half its document's (`DocumentStats`): a passage from a
document that is about the question as a whole ranks above an equal passage from one that mentions
the terms in passing. The document figures are sums over its chunks, computed at query time from
the same postings, so there is no second index to keep in step.

Adjacent terms also count as a pair ("vitamin deficiency", stopwords skipped), scored by BM25 like
a term and added at PAIR_WEIGHT: a passage with the query's words in the query's order ranks above
one that has them scattered. Pairs live in the same segments as the terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rag.vectors import write_atomically

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
MAX_SEGMENTS = 8
# Document BM25 in a chunk's score, and its length normalisation. Chunks are capped in length, so b
# barely matters for them; documents differ in length by orders of magnitude, hence Lucene's usual
# 0.75 there. Chosen on both evaluation sets, where it helped hybrid and lexical search alike
# (docs/benchmarks.md, History, "Document BM25").
DOCUMENT_WEIGHT = 0.5
DOCUMENT_B = 0.75
# Word pairs' BM25 (chunk and document) in a chunk's lexical score. Chosen on both evaluation sets:
# SciFact peaks at 0.2-0.25 while the long CMU articles keep gaining (docs/benchmarks.md, History,
# "Word pairs").
PAIR_WEIGHT = 0.25


class Analyzer:
    """Text -> terms: lower case, words of two or more characters, no stopwords, stemmed."""

    def __init__(self) -> None:
        import Stemmer
        from bm25s.stopwords import STOPWORDS_EN

        self._stem = Stemmer.Stemmer("english").stemWords
        self._stop = frozenset(STOPWORDS_EN)

    def terms(self, text: str) -> list[str]:
        return self._stem([w for w in _TOKEN.findall(text.lower()) if w not in self._stop])


@dataclass
class _Segment:
    ids: np.ndarray  # [n] chunk ids
    lengths: np.ndarray  # [n] terms per chunk
    tf: sp.csc_matrix  # [n, vocab size when built] term frequencies
    alive: np.ndarray  # [n] bool; False once deleted
    pairs: sp.csc_matrix  # [n, pair vocab size when built] counts of adjacent term pairs


class LexicalIndex:
    def __init__(self, k1: float = 0.9, b: float = 0.4, pairs: bool = True) -> None:
        # k1/b: Anserini's BEIR defaults, which give the published BM25 figures.
        self.k1, self.b = k1, b
        self.analyzer = Analyzer()
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)
        # False for a file written before word pairs: it has none, and gets none until rebuilt whole
        # (rag.writer does that at the next commit), so no chunk has pairs that another lacks.
        self.pairs = pairs
        self.pair_vocab: dict[str, int] = {}  # "term term" -> id
        self.pair_df = np.zeros(0, dtype=np.int64)
        self.segments: list[_Segment] = []
        self._where: dict[int, tuple[int, int]] = {}  # chunk id -> (segment, row)
        self.n_docs = 0
        self.total_len = 0

    def __len__(self) -> int:
        return self.n_docs

    def add(self, ids: list[int] | np.ndarray, texts: list[str]) -> None:
        if len(ids) == 0:
            return
        terms, pairs, lengths = [], [], []
        for text in texts:
            words = self.analyzer.terms(text)
            lengths.append(len(words))
            terms.append(_ids(words, self.vocab))
            if self.pairs:
                pairs.append(_ids([f"{a} {b}" for a, b in zip(words, words[1:])], self.pair_vocab))
        self.add_counts(np.asarray(ids, np.int64), _counts(terms, len(texts), len(self.vocab)),
                        np.asarray(lengths, np.int64),
                        _counts(pairs, len(texts), len(self.pair_vocab)) if self.pairs else None)

    def add_counts(self, ids: np.ndarray, tf: sp.spmatrix, lengths: np.ndarray,
                   pairs: sp.spmatrix | None = None) -> None:
        """Add chunks already analysed: tf [n, vocabulary] term counts over `self.vocab`'s ids,
        lengths [n] terms per chunk (stopwords excluded), pairs [n, pair ids] adjacent pair counts."""
        tf = _widen(tf, len(self.vocab)).tocsc()
        if len(self.vocab) > len(self.df):
            self.df = np.concatenate([self.df, np.zeros(len(self.vocab) - len(self.df), np.int64)])
        self.df += np.diff(tf.indptr)  # each stored (row, term) entry is one chunk holding the term
        width = max(len(self.pair_vocab), pairs.shape[1] if pairs is not None else 0, len(self.pair_df))
        pairs = _widen(pairs if pairs is not None else sp.csr_matrix((len(ids), 0), dtype=np.float32), width).tocsc()
        if width > len(self.pair_df):
            self.pair_df = np.concatenate([self.pair_df, np.zeros(width - len(self.pair_df), np.int64)])
        self.pair_df += np.diff(pairs.indptr)
        seg = _Segment(np.asarray(ids, np.int64), np.asarray(lengths, np.int64), tf, np.ones(len(ids), bool), pairs)
        for r, cid in enumerate(seg.ids):
            assert int(cid) not in self._where, f"chunk {cid} indexed twice"
            self._where[int(cid)] = (len(self.segments), r)
        self.segments.append(seg)
        self.n_docs += len(ids)
        self.total_len += int(seg.lengths.sum())
        if len(self.segments) > MAX_SEGMENTS:
            self._merge()

    def remove(self, ids: list[int] | np.ndarray) -> int:
        removed = 0
        for cid in ids:
            where = self._where.pop(int(cid), None)
            if where is None:
                continue
            seg = self.segments[where[0]]
            row = where[1]
            seg.alive[row] = False
            self.df[seg.tf[row].nonzero()[1]] -= 1  # the terms this chunk held
            self.pair_df[seg.pairs[row].nonzero()[1]] -= 1
            self.n_docs -= 1
            self.total_len -= int(seg.lengths[row])
            removed += 1
        return removed

    def ids(self) -> np.ndarray:
        return np.sort(np.fromiter(self._where, dtype=np.int64, count=len(self._where)))

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [<=k], chunk ids [<=k]), best first; `allowed` restricts to those chunk ids."""
        ids, scores = self.matching(query, allowed)
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top], ids[top]

    def matching(self, query: str, allowed: np.ndarray | None = None, documents: DocumentStats | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids [n], scores [n]) of every chunk that matches a query term, unordered. With
        `documents`, each score also holds DOCUMENT_WEIGHT times its document's BM25; with word
        pairs, PAIR_WEIGHT times the same for the query's adjacent pairs."""
        words = self.analyzer.terms(query)
        tids, repeats = _query_ids(words, self.vocab)
        if not tids or not self.n_docs:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        per_segment, per_document = self._postings_scores(
            tids, repeats, self.df, [seg.tf for seg in self.segments], documents)
        pids, pair_repeats = (_query_ids([f"{a} {b}" for a, b in zip(words, words[1:])], self.pair_vocab)
                              if self.pairs else ([], np.zeros(0)))
        if pids:  # weighted through the idf, added into the same arrays: no pass over all rows
            _, pair_document = self._postings_scores(pids, PAIR_WEIGHT * pair_repeats, self.pair_df,
                                                     [seg.pairs for seg in self.segments], documents, into=per_segment)
            if per_document is not None and pair_document is not None:
                per_document += pair_document
        all_scores, all_ids = [], []
        for n, (seg, scores) in enumerate(zip(self.segments, per_segment)):
            hit = np.flatnonzero(scores)  # the one pass over the whole segment; the rest is per match
            hit = hit[seg.alive[hit]]
            if allowed is not None:
                hit = hit[np.isin(seg.ids[hit], allowed)]
            kept = scores[hit]
            if per_document is not None:
                assert documents is not None
                kept += DOCUMENT_WEIGHT * per_document[documents.row_document[n][hit]]
            all_scores.append(kept)
            all_ids.append(seg.ids[hit])
        return np.concatenate(all_ids), np.concatenate(all_scores)

    def _postings_scores(self, tids: list[int], repeats: np.ndarray, df_all: np.ndarray,
                         matrices: list[sp.csc_matrix], documents: DocumentStats | None,
                         into: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
        """BM25 of these terms (or pairs: `matrices` are each segment's counts of them) for every
        row of every segment ([rows] each; added to `into`'s arrays when given), and for every
        document ([documents]) when `documents` is given. `repeats` multiplies each term's weight."""
        df = df_all[tids]
        idf = np.log(1 + (self.n_docs - df + 0.5) / (df + 0.5)) * repeats  # Lucene's idf
        avgdl = self.total_len / self.n_docs
        # One pass over each term's postings scores the chunks and gathers the document counts.
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in tids]  # per term: (documents, tf)
        per_segment = []
        for n, (seg, matrix) in enumerate(zip(self.segments, matrices)):
            scores = into[n] if into is not None else np.zeros(len(seg.ids), np.float32)
            for i, (t, w) in enumerate(zip(tids, idf)):
                if t >= matrix.shape[1]:
                    continue
                lo, hi = matrix.indptr[t], matrix.indptr[t + 1]
                rows, tf = matrix.indices[lo:hi], matrix.data[lo:hi]
                norm = self.k1 * (1 - self.b + self.b * seg.lengths[rows] / avgdl)  # [postings]
                scores[rows] += w * tf / (tf + norm)  # Lucene 8+: no (k1 + 1), same ranking
                if documents is not None:
                    found[i].append(documents.owners(n, rows, tf))
            per_segment.append(scores)
        return per_segment, documents.scores(found, repeats) if documents is not None else None

    def document_stats(self, chunk_ids: np.ndarray, documents: np.ndarray) -> DocumentStats:
        """What document-level BM25 needs, for this index as it is now: chunk_ids [n] (sorted, every
        indexed chunk: the caller has checked them against `ids()`) and documents [n] the document
        each belongs to."""
        names, dense = np.unique(documents, return_inverse=True)
        row_document = []
        for seg in self.segments:
            at = np.searchsorted(chunk_ids, seg.ids)
            found = seg.alive & (at < len(chunk_ids))
            rows = np.full(len(seg.ids), -1, np.int64)
            rows[found] = dense[at[found]]
            row_document.append(rows)
        lengths = np.zeros(len(names), np.float64)
        for seg, rows in zip(self.segments, row_document):
            live = rows >= 0
            lengths += np.bincount(rows[live], weights=seg.lengths[live], minlength=len(names))
        return DocumentStats(row_document, lengths, self.k1)

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, fsync, rename): one .npz holding everything."""
        arrays: dict[str, Any] = {  # Any: mypy would match **arrays against savez's allow_pickle
            "params": np.asarray([self.k1, self.b], np.float64),
            "vocab": _vocab_array(self.vocab), "df": self.df,
        }
        if self.pairs:  # a file without these is from before word pairs
            arrays.update(pair_vocab=_vocab_array(self.pair_vocab), pair_df=self.pair_df)
        for n, seg in enumerate(self.segments):
            arrays.update({f"s{n}_ids": seg.ids, f"s{n}_lengths": seg.lengths, f"s{n}_alive": seg.alive,
                           f"s{n}_data": seg.tf.data, f"s{n}_indices": seg.tf.indices,
                           f"s{n}_indptr": seg.tf.indptr, f"s{n}_shape": np.asarray(seg.tf.shape)})
            if self.pairs:
                arrays.update({f"s{n}_pdata": seg.pairs.data, f"s{n}_pindices": seg.pairs.indices,
                               f"s{n}_pindptr": seg.pairs.indptr, f"s{n}_pshape": np.asarray(seg.pairs.shape)})
        write_atomically(path, lambda fh: np.savez(fh, **arrays))

    @classmethod
    def load(cls, path: Path) -> LexicalIndex:
        """Raises FileNotFoundError, or ValueError for a file that is not a whole index."""
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as z:
                return cls._from_arrays(z)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"damaged lexical index {path.name}: {type(exc).__name__}") from None

    @classmethod
    def _from_arrays(cls, z: Any) -> LexicalIndex:
        k1, b = z["params"].tolist()
        out = cls(k1=k1, b=b, pairs="pair_df" in z)
        out.vocab = _read_vocab(z["vocab"])
        out.df = z["df"]
        if out.pairs:
            out.pair_vocab, out.pair_df = _read_vocab(z["pair_vocab"]), z["pair_df"]
        n = 0
        while f"s{n}_ids" in z:
            tf = sp.csc_matrix((z[f"s{n}_data"], z[f"s{n}_indices"], z[f"s{n}_indptr"]),
                               shape=tuple(z[f"s{n}_shape"]))
            if out.pairs:
                pairs = sp.csc_matrix((z[f"s{n}_pdata"], z[f"s{n}_pindices"], z[f"s{n}_pindptr"]),
                                      shape=tuple(z[f"s{n}_pshape"]))
            else:
                pairs = sp.csc_matrix((tf.shape[0], 0), dtype=np.float32)
            seg = _Segment(z[f"s{n}_ids"], z[f"s{n}_lengths"], tf, z[f"s{n}_alive"].copy(), pairs)
            out.segments.append(seg)
            for r in np.flatnonzero(seg.alive):
                out._where[int(seg.ids[r])] = (n, int(r))
            out.n_docs += int(seg.alive.sum())
            out.total_len += int(seg.lengths[seg.alive].sum())
            n += 1
        return out

    def _merge(self) -> None:
        """Fold every segment into one, dropping deleted rows."""
        width = len(self.vocab)
        parts = [seg for seg in self.segments if seg.alive.any()]
        tf = (sp.vstack([_widen(seg.tf[seg.alive], width) for seg in parts]).tocsc() if parts
              else sp.csc_matrix((0, width)))
        ids = np.concatenate([seg.ids[seg.alive] for seg in parts]) if parts else np.zeros(0, np.int64)
        lengths = np.concatenate([seg.lengths[seg.alive] for seg in parts]) if parts else np.zeros(0, np.int64)
        pair_width = len(self.pair_df)
        pairs = (sp.vstack([_widen(seg.pairs[seg.alive], pair_width) for seg in parts]).tocsc() if parts
                 else sp.csc_matrix((0, pair_width), dtype=np.float32))
        self.segments = [_Segment(ids, lengths, tf, np.ones(len(ids), bool), pairs)]
        self._where = {int(c): (0, r) for r, c in enumerate(ids)}


@dataclass(frozen=True)
class DocumentStats:
    """Documents as BM25 sees them: each one's term counts and length are the sums of its chunks'
    (a sentence two chunks share counts twice, in the length as well as the counts)."""

    row_document: list[np.ndarray]  # per segment [rows]: dense document number, -1 for a deleted row
    lengths: np.ndarray  # [documents] terms
    k1: float

    @cached_property
    def _norm(self) -> np.ndarray:  # [documents] BM25's length normalisation
        mean = self.lengths.mean() if len(self.lengths) else 1.0
        return (self.k1 * (1 - DOCUMENT_B + DOCUMENT_B * self.lengths / max(mean, 1e-9))).astype(np.float32)

    @cached_property
    def _deletions(self) -> list[bool]:  # per segment: does it hold deleted rows?
        return [bool((rows < 0).any()) for rows in self.row_document]

    def owners(self, segment: int, rows: np.ndarray, tf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document numbers, counts) of one term's postings in some rows of a segment."""
        owner = self.row_document[segment][rows]
        if self._deletions[segment]:
            live = owner >= 0
            return owner[live], tf[live]
        return owner, tf

    def scores(self, found: list[list[tuple[np.ndarray, np.ndarray]]], repeats: np.ndarray) -> np.ndarray:
        """[documents] BM25 of each document for the query's terms, given each term's postings as
        (document numbers, counts) parts, the term `repeats` times in the query."""
        n = len(self.lengths)
        out = np.zeros(n, np.float32)
        for parts, repeat in zip(found, repeats):
            if not parts:
                continue
            owner = np.concatenate([o for o, _ in parts])
            tf = np.bincount(owner, weights=np.concatenate([c for _, c in parts]), minlength=n)  # [documents]
            present = np.flatnonzero(tf)
            idf = repeat * np.log(1 + (n - len(present) + 0.5) / (len(present) + 0.5))
            out[present] += idf * tf[present] / (tf[present] + self._norm[present])
        return out


def _vocab_array(vocab: dict[str, int]) -> np.ndarray:
    """Keys in id order, one per line, as UTF-8 bytes (terms are \\w+ stems: no newlines). Not a
    numpy string, which takes four bytes a character: pairs made the file seven times larger."""
    return np.frombuffer("\n".join(vocab).encode("utf-8"), np.uint8)


def _read_vocab(stored: np.ndarray) -> dict[str, int]:
    """Either form: UTF-8 bytes, or the numpy string older files hold."""
    text = stored.tobytes().decode("utf-8") if stored.dtype == np.uint8 else str(stored)
    return {t: i for i, t in enumerate(text.split("\n"))} if text else {}


def _ids(keys: list[str], vocab: dict[str, int]) -> list[int]:
    """Each key's id, new keys added to `vocab`."""
    return [vocab.setdefault(k, len(vocab)) for k in keys]


def _counts(rows_of_ids: list[list[int]], n: int, width: int) -> sp.csc_matrix:
    """[n, width] how often each id occurs in each row."""
    rows = np.repeat(np.arange(n), [len(r) for r in rows_of_ids])
    cols = np.fromiter((i for r in rows_of_ids for i in r), np.int64, count=len(rows))
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, width))
    m.sum_duplicates()
    return m.tocsc()


def _query_ids(keys: list[str], vocab: dict[str, int]) -> tuple[list[int], np.ndarray]:
    """The known keys' ids (sorted) and how often each occurs in the query (a repeated query word
    counts again, as in Lucene)."""
    counts: dict[int, int] = {}
    for k in keys:
        if k in vocab:
            counts[vocab[k]] = counts.get(vocab[k], 0) + 1
    tids = sorted(counts)
    return tids, np.asarray([counts[t] for t in tids], np.float64)


def _widen(m: sp.spmatrix, width: int) -> sp.csr_matrix:
    m = m.tocsr()
    return sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], width))
