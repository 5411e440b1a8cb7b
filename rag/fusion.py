"""Fusing the dense and the lexical ranking into one: pure functions over score arrays.

Why not reciprocal rank fusion: ranks throw away how far ahead the leader is. Here each signal is
standardised against its own top 1,000 scores for this query (dense: window scores; z-scores:
cosine and BM25 live on different scales, and BM25's scale changes with the query), the candidates of either list get
*both* scores computed exactly (a chunk missing from one list is not scored 0 there), and the
fused score is a weighted sum. On SciFact's training claims this beats RRF by about 0.03 nDCG@10
(docs/benchmarks.md has the figures and the command).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardiser:
    """z = (score - mean) / std of one signal's top scores for one query."""

    mean: float
    std: float

    @classmethod
    def of(cls, top_scores: np.ndarray) -> Standardiser:
        if len(top_scores) == 0:
            return cls(0.0, 1.0)
        std = float(np.std(top_scores))
        # One candidate, or all tied: this signal cannot tell them apart, so it must not sway them.
        return cls(float(np.mean(top_scores)), std if std > 1e-6 else float("inf"))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if np.isinf(self.std):
            return np.zeros(len(scores), np.float64)
        return (np.asarray(scores, np.float64) - self.mean) / self.std


def fuse(
    dense: np.ndarray, lexical: np.ndarray, dense_std: Standardiser, lexical_std: Standardiser, dense_weight: float
) -> np.ndarray:
    """[n] fused scores of n candidates, given both raw scores of each ([n] and [n])."""
    return dense_weight * dense_std(dense) + (1.0 - dense_weight) * lexical_std(lexical)


def best_first(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by score, highest first; ties by id so results are repeatable."""
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]
