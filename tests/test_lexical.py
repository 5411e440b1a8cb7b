"""BM25 that takes additions and deletions in place must score exactly like bm25s rebuilt from scratch."""

from __future__ import annotations

import random

import bm25s
import numpy as np
import pytest

from rag.lexical import DOCUMENT_B, DOCUMENT_WEIGHT, MAX_SEGMENTS, PAIR_WEIGHT, LexicalIndex

WORDS = "budget audit falcon river policy travel hotel invoice laptop server holiday canteen permit".split()


def _corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def _reference(index: LexicalIndex, ids: list[int], texts: list[str], query: str) -> dict[int, float]:
    ref = bm25s.BM25(k1=index.k1, b=index.b, method="lucene")
    ref.index([index.analyzer.terms(t) for t in texts], show_progress=False)
    q = index.analyzer.terms(query)
    scores = ref.get_scores(q)
    out = {ids[i]: float(s) for i, s in enumerate(scores) if s > 0}
    if index.pairs:
        for i, s in _pair_reference(index, ids, texts, query).items():
            out[i] += PAIR_WEIGHT * s
    return out


def _pair_reference(index: LexicalIndex, ids: list[int], texts: list[str], query: str) -> dict[int, float]:
    """Lucene's BM25 with adjacent term pairs as the terms (lengths: the chunks' term counts)."""
    terms = [index.analyzer.terms(t) for t in texts]
    pairs = [list(zip(t, t[1:])) for t in terms]
    avgdl = sum(map(len, terms)) / len(terms)
    q = index.analyzer.terms(query)
    out = {}
    for n, (cid, have) in enumerate(zip(ids, pairs)):
        score = 0.0
        for pair in zip(q, q[1:]):
            df = sum(pair in p for p in pairs)
            tf = have.count(pair)
            if tf:
                idf = np.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
                score += idf * tf / (tf + index.k1 * (1 - index.b + index.b * len(terms[n]) / avgdl))
        if score:
            out[cid] = score
    return out


def _ours(index: LexicalIndex, query: str) -> dict[int, float]:
    scores, ids = index.search(query, k=10_000)
    return {int(i): float(s) for i, s in zip(ids, scores)}


@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("query", ["budget audit", "falcon river river", "holiday permit laptop"])
def test_scores_equal_bm25s_after_adds_and_removals(query: str, pairs: bool) -> None:
    texts = _corpus(300, seed=1)
    ids = list(range(1000, 1300))
    index = LexicalIndex(pairs=pairs)
    for start in range(0, 300, 25):  # many small batches: segments, then merges
        index.add(ids[start:start + 25], texts[start:start + 25])
    assert len(index.segments) <= MAX_SEGMENTS
    ours, ref = _ours(index, query), _reference(index, ids, texts, query)
    assert ours.keys() == ref.keys()
    assert all(abs(ours[i] - ref[i]) < 1e-4 for i in ref)

    gone = set(random.Random(2).sample(ids, 90))
    index.remove(list(gone))
    left = [(i, t) for i, t in zip(ids, texts) if i not in gone]
    ours = _ours(index, query)
    ref = _reference(index, [i for i, _ in left], [t for _, t in left], query)
    assert ours.keys() == ref.keys() and not (ours.keys() & gone)
    assert all(abs(ours[i] - ref[i]) < 1e-4 for i in ref)


def test_filter_ranking_and_ids() -> None:
    index = LexicalIndex()
    index.add([1, 2, 3], ["the travel policy for hotels", "hotel invoices and hotel budgets", "falcons fly"])
    scores, ids = index.search("hotel", k=5)
    assert ids.tolist() == [2, 1] and scores[0] > scores[1] > 0  # stemming: hotels -> hotel
    assert index.search("hotel", k=5, allowed=np.asarray([1]))[1].tolist() == [1]
    assert index.search("the and", k=5)[1].tolist() == []  # stopwords only
    index.remove([2])
    assert index.ids().tolist() == [1, 3]
    with pytest.raises(AssertionError):
        index.add([1], ["chunk ids are unique"])


def test_save_and_load_keep_scores_and_deletions(tmp_path) -> None:
    texts = _corpus(120, seed=3)
    index = LexicalIndex()
    for start in range(0, 120, 30):
        index.add(list(range(start, start + 30)), texts[start:start + 30])
    index.remove([5, 50, 99])
    path = tmp_path / "lexical-00000001.npz"
    index.save(path)
    loaded = LexicalIndex.load(path)
    assert loaded.ids().tolist() == index.ids().tolist() and len(loaded) == len(index) == 117
    for q in ("budget audit", "falcon hotel", "river"):
        assert _ours(loaded, q) == _ours(index, q)
    for idx in (index, loaded):  # the loaded index still takes changes, with the same result
        idx.add([500], ["budget budget audit"])
        idx.remove([7])
    assert _ours(loaded, "budget audit") == _ours(index, "budget audit")
    assert 500 in _ours(loaded, "budget audit") and 7 not in _ours(loaded, "budget audit")
    assert not list(tmp_path.glob(".*.tmp"))


def test_document_bm25_is_bm25_over_each_documents_chunks_together() -> None:
    """With chunks that do not overlap, a document's counts are exactly its text's: the document part
    of a chunk's score must equal bm25s over whole documents (b = DOCUMENT_B), after deletions too."""
    rng = random.Random(4)
    topics = [rng.sample(WORDS, 4) for _ in range(30)]  # each document keeps to a few words
    ids = list(range(1, 201))
    owner = {i: i // 7 for i in ids}  # documents of up to 7 chunks, of different lengths
    texts = [" ".join(rng.choice(topics[owner[i]]) for _ in range(rng.randint(3, 40))) for i in ids]
    index = LexicalIndex(pairs=False)  # word pairs go through the same document code as terms
    for start in range(0, 200, 40):
        index.add(ids[start:start + 40], texts[start:start + 40])
    index.remove(list(range(3, 200, 9)))
    live = [(i, t) for i, t in zip(ids, texts) if i in set(index.ids().tolist())]
    docs = sorted({owner[i] for i, _ in live})
    whole = [" ".join(t for i, t in live if owner[i] == d) for d in docs]
    stats = index.document_stats(index.ids(), np.asarray([owner[int(i)] for i in index.ids()]))
    ref_index = LexicalIndex(k1=index.k1, b=DOCUMENT_B, pairs=False)
    for query in ("budget audit", "falcon river river", "holiday permit laptop"):
        per_document = _reference(ref_index, docs, whole, query)
        chunk_ids, with_documents = index.matching(query, None, stats)
        alone = dict(zip(*index.matching(query)))
        assert len(chunk_ids) == len(alone) > 0 and len(per_document) < len(docs)
        for cid, score in zip(chunk_ids.tolist(), with_documents.tolist()):
            expected = alone[cid] + DOCUMENT_WEIGHT * per_document[owner[cid]]
            assert abs(score - expected) < 1e-4 * expected


def test_words_in_the_querys_order_rank_above_the_same_words_scattered(tmp_path) -> None:
    texts = ["the vitamin deficiency report lists each case with notes", "report: vitamin levels, a deficiency case",
             "falcon river travel"]
    index, plain = LexicalIndex(), LexicalIndex(pairs=False)
    for idx in (index, plain):
        idx.add([1, 2, 3], texts)
    alone = _ours(plain, "vitamin deficiency")
    assert alone[2] > alone[1]  # the same words; chunk 1 is longer
    ours = _ours(index, "vitamin deficiency")
    assert ours[1] > ours[2] == pytest.approx(alone[2])  # only chunk 1 has the words side by side
    assert _ours(index, "deficiency vitamin") == pytest.approx(alone)  # the other order is no pair here

    # A file from before word pairs loads without them and scores as it did.
    plain.save(tmp_path / "old.npz")
    old = LexicalIndex.load(tmp_path / "old.npz")
    assert not old.pairs and _ours(old, "vitamin deficiency") == pytest.approx(alone)
    old.add([4], ["vitamin deficiency again"])  # and takes none until rebuilt whole (rag.writer)
    assert not old.pair_vocab
    index.save(tmp_path / "new.npz")
    assert _ours(LexicalIndex.load(tmp_path / "new.npz"), "vitamin deficiency") == pytest.approx(ours)


def test_a_file_with_the_older_vocabulary_encoding_loads_the_same(tmp_path) -> None:
    """Files before word pairs kept the vocabulary as a numpy string (four bytes a character); they
    are read as they are."""
    index = LexicalIndex(pairs=False)
    index.add([1, 2, 3], _corpus(3, seed=5))
    index.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays["vocab"].dtype == np.uint8
    arrays["vocab"] = np.asarray("\n".join(index.vocab))  # as older versions wrote it
    np.savez(tmp_path / "old.npz", **arrays)
    old = LexicalIndex.load(tmp_path / "old.npz")
    assert old.vocab == index.vocab and _ours(old, "budget audit falcon") == _ours(index, "budget audit falcon")
