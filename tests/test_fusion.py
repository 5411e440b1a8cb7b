"""Pure parts of retrieval: score fusion, passage planning, metrics."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rag.fusion import Standardiser, best_first, fuse
from rag.passages import ChunkRow, plan_passages, stitch
from ragqa.eval.metrics import evaluate, ndcg_at


def test_fusion_rewards_agreement_and_ignores_a_signal_that_cannot_tell_apart() -> None:
    dense = np.array([0.9, 0.5, 0.5])
    lexical = np.array([0.0, 10.0, 2.0])
    d_std, l_std = Standardiser.of(dense), Standardiser.of(lexical)
    fused = fuse(dense, lexical, d_std, l_std, 0.5)
    # Chunk 1 (tied on dense with 2, far ahead on BM25) beats chunk 2.
    assert fused[1] > fused[2]
    # All-equal lexical scores (e.g. no query term matched) leave the dense order untouched.
    flat = fuse(dense, np.zeros(3), d_std, Standardiser.of(np.zeros(3)), 0.5)
    assert list(np.argsort(-flat, kind="stable")) == [0, 1, 2]
    ids, scores = best_first(np.array([7, 3, 5]), np.array([1.0, 2.0, 1.0]))
    assert ids.tolist() == [3, 5, 7] and scores.tolist() == [2.0, 1.0, 1.0]


def _row(ordinal: int, page: int = 1, doc: int = 1, step: int = 100, overlap: int = 10) -> ChunkRow:
    a = ordinal * step
    b = a + step + overlap
    return ChunkRow(id=doc * 1000 + ordinal, document_id=doc, ordinal=ordinal, text="x" * (b - a), char_start=a,
                    char_end=b, page_start=page, page_end=page, page_char_start=a, page_char_end=b)


def test_neighbours_merge_bridges_join_and_overlaps_are_dropped() -> None:
    ranked = [(_row(5), 9.0), (_row(7), 8.0), (_row(20), 7.0), (_row(6), 6.0), (_row(3, doc=2), 5.0)]
    groups = plan_passages(ranked, k=10)
    assert [[r.ordinal for r in g.chunks] for g in groups] == [[5, 6, 7], [20], [3]]
    assert groups[0].score == 9.0
    # A full group does not take a fourth chunk, and the overlapping chunk is not shown twice.
    more = plan_passages(ranked + [(_row(8), 4.0)], k=10)
    assert [[r.ordinal for r in g.chunks] for g in more][0] == [5, 6, 7]
    assert all(8 not in [r.ordinal for r in g.chunks] for g in more)
    # Neighbours on different pages stay separate passages.
    pages = plan_passages([(_row(1, page=1, overlap=0), 2.0), (_row(2, page=2, overlap=0), 1.0)], k=5)
    assert len(pages) == 2


@given(st.lists(st.integers(0, 30), min_size=1, max_size=40, unique=True), st.integers(1, 8))
def test_planned_passages_never_overlap(ordinals: list[int], k: int) -> None:
    ranked = [(_row(o), float(-i)) for i, o in enumerate(ordinals)]
    groups = plan_passages(ranked, k=k)
    assert 1 <= len(groups) <= k
    spans = sorted((g.chunks[0].char_start, g.chunks[-1].char_end) for g in groups)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    for g in groups:
        assert [r.ordinal for r in g.chunks] == list(range(g.chunks[0].ordinal, g.chunks[-1].ordinal + 1))


def test_stitch_joins_overlaps_and_fills_gaps() -> None:
    text = "alpha beta gamma delta epsilon"
    a = ChunkRow(1, 1, 0, text[0:16], 0, 16, 1, 1, 0, 16)  # "alpha beta gamma"
    b = ChunkRow(2, 1, 1, text[11:22], 11, 22, 1, 1, 11, 22)  # "gamma delta"
    c = ChunkRow(3, 1, 2, text[23:30], 23, 30, 1, 1, 23, 30)  # "epsilon"
    assert stitch([a, b, c], lambda x, y: text[x.char_end:y.char_start]) == text


def test_metrics_match_hand_computed_values() -> None:
    judged = {"d1": 1, "d2": 1, "d9": 0}
    assert math.isclose(ndcg_at(["d1", "x", "d2"], judged, 10), (1 + 1 / 2) / (1 + 1 / math.log2(3)))
    out = evaluate({"q1": ["x", "d1"], "q2": []}, {"q1": {"d1": 1}, "q2": {"d7": 1}, "q3": {"d8": 0}})
    assert out["queries"] == 2  # q3 has nothing relevant: not counted
    assert math.isclose(out["mrr@10"], round(0.5 / 2, 4))
    assert math.isclose(out["recall@10"], 0.5)
    first = evaluate({"q1": ["d1", "x"], "q2": ["x", "d7"]}, {"q1": {"d1": 1}, "q2": {"d7": 1}})
    assert first["success@1"] == 0.5 and first["mrr@10"] == 0.75
