"""The FAISS index: exact and IVF kinds, filtered search, conversion by size, round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.vectors import VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_flat_search_is_exact_and_honours_the_filter() -> None:
    rng = np.random.default_rng(1)
    vecs = _unit(rng, 500, 16)
    ids = np.arange(1000, 1500)
    index = VectorIndex.build(16, ids, vecs)
    q = vecs[7:8]
    scores, found = index.search(q, 5)
    assert found[0, 0] == 1007 and abs(scores[0, 0] - 1.0) < 1e-5
    allowed = np.arange(1200, 1300)
    _, found = index.search(q, 5, allowed=allowed)
    expected = 1200 + np.argsort(-(vecs[200:300] @ q[0]))[:5]
    assert found[0].tolist() == expected.tolist()


def test_index_becomes_ivf_above_the_threshold_and_flat_again_below_half(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 3000, 16)
    ids = np.arange(3000) * 3 + 5
    index = VectorIndex.build(16, ids[:1000], vecs[:1000], exact_max=2000)
    assert index.kind == "flat" and index.fitted(2000) is index
    index.add(ids[1000:], vecs[1000:])
    ivf = index.fitted(2000)
    assert ivf.kind == "ivf" and len(ivf) == 3000
    assert ivf.ids().tolist() == sorted(ids.tolist())
    assert np.allclose(ivf.reconstruct(int(ids[42])), vecs[42])
    # Every vector finds itself first.
    _, found = ivf.search(vecs[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() > 0.95
    # A selective filter probes every list, so the allowed nearest neighbour is never missed.
    allowed = np.sort(ids[2900:2950])
    _, found = ivf.search(vecs[:1], 3, allowed=allowed)
    exact = ids[2900 + np.argsort(-(vecs[2900:2950] @ vecs[0]))[:3]]
    assert found[0].tolist() == exact.tolist()
    ivf.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.kind == "ivf" and loaded.ids().tolist() == ivf.ids().tolist()
    assert loaded.remove(ids[:2500]) == 2500
    back = loaded.fitted(2000)
    assert back.kind == "flat" and back.ids().tolist() == sorted(ids[2500:].tolist())
