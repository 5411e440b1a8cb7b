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


def test_a_chunk_with_several_windows_is_found_by_its_best_window_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    counts = np.array([1, 3, 2, 4, 1] * 40)  # 200 chunks, 440 windows
    chunk_ids = np.arange(200) * 7 + 1
    owners = np.repeat(chunk_ids, counts)
    vecs = _unit(rng, len(owners), 16)
    index = VectorIndex.build(16, owners, vecs)
    assert len(index) == 200 and index.n_vectors == 440
    assert index.ids().tolist() == chunk_ids.tolist()
    # Each chunk once, scored by its best window: what brute force over the windows says.
    q = vecs[5]
    best = {int(c): float(np.max(vecs[owners == c] @ q)) for c in chunk_ids}
    expected = sorted(best, key=lambda c: -best[c])[:20]
    scores, found = index.search(q[None, :], 20)
    assert found[0].tolist() == expected
    assert np.allclose(scores[0], [best[c] for c in expected], atol=1e-5)
    assert np.allclose(index.best_scores(np.array(expected[:3] + [999_999]), q)[:3], [best[c] for c in expected[:3]],
                       atol=1e-5)
    assert index.best_scores(np.array([999_999]), q)[0] == -np.inf
    assert np.allclose(index.reconstruct(int(chunk_ids[3])), vecs[owners == chunk_ids[3]])
    # A filter keeps whole chunks; asking for more chunks than it allows pads with -1.
    allowed = np.sort(chunk_ids[[1, 3, 8]])
    _, found = index.search(q[None, :], 5, allowed=allowed)
    assert sorted(found[0][:3].tolist()) == allowed.tolist() and found[0][3:].tolist() == [-1, -1]
    # Removing a chunk removes all its windows; saved and loaded, nothing changes.
    assert index.remove(chunk_ids[[1, 3]]) == 2 and index.n_vectors == 440 - 3 - 4
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.ids().tolist() == np.delete(chunk_ids, [1, 3]).tolist() and loaded.n_vectors == 433
    ivf = loaded.fitted(100)
    assert ivf.kind == "ivf" and ivf.n_vectors == 433 and len(ivf) == 198
    assert np.allclose(ivf.reconstruct(int(chunk_ids[8])), vecs[owners == chunk_ids[8]])


def test_files_from_before_windows_are_read_as_one_vector_per_chunk(tmp_path: Path) -> None:
    import faiss

    rng = np.random.default_rng(4)
    vecs = _unit(rng, 300, 16)
    ids = np.arange(300) * 5 + 2
    for kind in ("flat", "ivf"):
        old: faiss.Index
        if kind == "flat":
            old = faiss.IndexIDMap2(faiss.IndexFlatIP(16))
        else:
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 16, faiss.METRIC_INNER_PRODUCT)
            ivf.train(vecs)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # not in faiss's stubs
            old = ivf
        old.add_with_ids(vecs, ids)
        (tmp_path / f"{kind}.faiss").write_bytes(faiss.serialize_index(old).tobytes())  # the old format
        loaded = VectorIndex.load(tmp_path / f"{kind}.faiss")
        assert loaded.kind == kind and loaded.ids().tolist() == ids.tolist() and loaded.n_vectors == 300
        _, found = loaded.search(vecs[10:11], 1)
        assert found[0, 0] == ids[10]
        assert np.allclose(loaded.reconstruct(int(ids[20])), vecs[20:21])
