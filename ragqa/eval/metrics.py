"""Ranking metrics as BEIR computes them (pytrec_eval's trec_eval measures): nDCG@k with linear
gains and the ideal ranking drawn from all judged documents, Recall@k, MRR@k. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> relevance (0 = judged not relevant)
Run = Mapping[str, Sequence[str]]  # query id -> document ids, best first


def ndcg_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    gains = [max(judged.get(d, 0), 0) for d in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: Run, qrels: Qrels) -> dict[str, float]:
    """Means over the queries that have at least one relevant document (as BEIR does); a query
    missing from the run counts as an empty ranking."""
    queries = [q for q, judged in qrels.items() if any(g > 0 for g in judged.values())]
    if not queries:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "success@1": 0.0, "queries": 0}
    sums = {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "success@1": 0.0}
    for q in queries:
        ranked, judged = run.get(q, ()), qrels[q]
        sums["ndcg@10"] += ndcg_at(ranked, judged, 10)
        sums["recall@10"] += recall_at(ranked, judged, 10)
        sums["recall@100"] += recall_at(ranked, judged, 100)
        sums["mrr@10"] += reciprocal_rank_at(ranked, judged, 10)
        sums["success@1"] += reciprocal_rank_at(ranked, judged, 1)  # 1 when the first is relevant
    out: dict[str, float] = {k: round(v / len(queries), 4) for k, v in sums.items()}
    out["queries"] = len(queries)
    return out
