"""Recall@10 of the approximate (IVF) index against exact search on a real store's vectors, with
the index scanning the same share of its lists as the default settings scan at a given size.

    python scripts/ivf_recall_real.py STORE_HOME [--at VECTORS] [--queries 500]

Queries are the store's own window vectors (a held-out sample), so both indexes see real text
embeddings rather than the synthetic clusters `ragqa bench search` draws.
"""

from __future__ import annotations

import argparse
import math

import faiss
import numpy as np

from rag.settings import Settings
from rag.vectors import ivf_lists_for
from ragqa import wiring


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("home")
    ap.add_argument("--at", type=int, default=274_587, help="store size (vectors) whose scanned share is imitated")
    ap.add_argument("--queries", type=int, default=500)
    a = ap.parse_args()
    cfg = Settings(home=a.home, database_url="")
    _, vectors = wiring.open_store(cfg).load_vectors()
    assert vectors is not None, "empty store"
    x = vectors.chunk_vectors(vectors.ids())[1]  # every window's vector
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x), min(a.queries, len(x) // 10), replace=False)
    rest = np.setdiff1d(np.arange(len(x)), pick)
    base, queries = x[rest], x[pick]
    share = cfg.ivf_nprobe / ivf_lists_for(a.at)  # the share of lists scanned at that size
    nlist = ivf_lists_for(len(base))
    nprobe = max(1, math.ceil(share * nlist))
    quantizer = faiss.IndexFlatIP(x.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(base)
    ivf.add(base)
    ivf.nprobe = nprobe
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(base)
    _, truth = exact.search(queries, 10)
    _, got = ivf.search(queries, 10)
    recall = np.mean([len(set(t) & set(g)) / 10 for t, g in zip(truth, got)])
    print(f"{len(base)} vectors, {nlist} lists, nprobe {nprobe} ({share:.1%} of lists, as at {a.at} vectors): "
          f"recall@10 {recall:.4f} over {len(queries)} queries")


if __name__ == "__main__":
    main()
