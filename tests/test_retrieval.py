"""Search over a real store: the three modes, scopes, passages, and staying current."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from rag import schema as s
from rag.consistency import check_store, repair_store
from rag.errors import NotFoundError
from rag.records import PAGE_SEPARATOR
from rag.retrieval import Retriever, Scope
from rag.writer import open_writer, reembed_store
from tests.fixtures import paragraph
from tests.helpers import Library, run_ingest

DOCS = {
    "volcano.txt": "Volcanoes\n\nMagma rises through the crust and erupts as lava. Ash clouds ground aircraft. "
                   "The 2010 eruption of Eyjafjallajokull closed European airspace for six days.",
    "bread.txt": "Baking bread\n\nYeast ferments the sugars in flour and releases carbon dioxide, which makes "
                 "the dough rise. Knead the dough for ten minutes, then let it prove for an hour.",
    "codes.txt": "Part numbers\n\nThe replacement valve for the cooling loop is part ZQ-4471-B. Order it from "
                 "stores; the older part ZQ-4470 is withdrawn.",
    "chess.txt": "Chess openings\n\nThe Sicilian Defence answers 1.e4 with c5 and leads to sharp, unbalanced "
                 "positions. The Queen's Gambit offers a pawn to gain the centre.",
}


@pytest.fixture
def articles(library: Library) -> Path:
    """DOCS in collection "general" (their folder is returned), a field note on volcanoes in "field"."""
    folder = library(DOCS, collection="general")
    library({"volcano-notes.txt": "Field notes\n\nLava from the eruption covered the road to the "
                                  "observatory; magma chambers refill slowly."}, collection="field", folder="other")
    return folder


def _retriever(store, embedder) -> Retriever:
    return Retriever(store, lambda: embedder)


def _titles(passages) -> list[str]:
    return [p.title for p in passages]


def test_each_mode_finds_what_it_is_good_at(articles, store, embedder) -> None:
    r = _retriever(store, embedder)
    # Paraphrase, no shared words: dense finds it.
    assert _titles(r.search("how do I make a loaf rise", 1, "dense")) == ["Baking bread"]
    # A rare code: lexical finds it.
    assert _titles(r.search("ZQ-4471-B", 1, "lexical")) == ["Part numbers"]
    # Hybrid gets both right.
    assert _titles(r.search("how do I make a loaf rise", 1, "hybrid")) == ["Baking bread"]
    assert _titles(r.search("ZQ-4471-B", 1, "hybrid")) == ["Part numbers"]
    # A query whose words match nothing still gets dense results in hybrid mode.
    assert _titles(r.search("pâtisserie levain", 4, "hybrid"))


def test_scope_restricts_every_mode_and_unknown_collection_is_an_error(articles, store, embedder) -> None:
    r = _retriever(store, embedder)
    for mode in ("dense", "lexical", "hybrid"):
        everywhere = r.search("lava eruption magma", 5, mode)
        assert {p.collection for p in everywhere} == {"general", "field"}
        field = r.search("lava eruption magma", 5, mode, Scope(collections=("field",)))
        assert field and {p.collection for p in field} == {"field"}
    bread_id = next(p.document_id for p in r.search("bread", 1, "lexical"))
    only = r.search("lava eruption magma", 5, "hybrid", Scope(documents=(bread_id,)))
    assert {p.document_id for p in only} <= {bread_id}
    with pytest.raises(NotFoundError):
        r.search("x", 3, "hybrid", Scope(collections=("nope",)))


def test_results_follow_additions_changes_and_removals(articles, store, settings, embedder) -> None:
    r = _retriever(store, embedder)
    assert not r.search("aurora borealis", 3, "lexical")
    (articles / "sky.txt").write_text("Night sky\n\nThe aurora borealis glows green over Tromso in winter.")
    run_ingest([articles], store, settings, embedder, collection="general")
    assert _titles(r.search("aurora borealis", 1, "hybrid")) == ["Night sky"]
    (articles / "sky.txt").write_text("Night sky\n\nNoctilucent clouds shine blue after sunset in summer.")
    run_ingest([articles], store, settings, embedder, collection="general")
    assert not r.search("aurora borealis", 3, "lexical")
    assert _titles(r.search("noctilucent clouds", 1, "hybrid")) == ["Night sky"]
    (articles / "sky.txt").unlink()
    run_ingest([articles], store, settings, embedder, collection="general", prune=True)
    assert "Night sky" not in _titles(r.search("noctilucent clouds", 5, "hybrid"))


def _document_text(store, document_id: int) -> str:
    with store.engine.connect() as c:
        pages = c.execute(select(s.pages.c.text).where(s.pages.c.document_id == document_id)
                          .order_by(s.pages.c.page_no)).scalars().all()
    return PAGE_SEPARATOR.join(pages)


def test_passages_are_exact_slices_and_never_overlap(tmp_path: Path, store, settings, embedder) -> None:
    rng = np.random.default_rng(3)
    topics = ["glaciers carve valleys", "rivers deposit silt", "winds shape dunes", "waves erode cliffs"]
    sentences = [f"Sentence {n}: {topics[n % 4]} over {int(rng.integers(2, 900))} years." for n in range(120)]
    (tmp_path / "geo.txt").write_text("Landforms\n\n" + " ".join(sentences))
    run_ingest([tmp_path / "geo.txt"], store, settings, embedder)
    r = _retriever(store, embedder)
    text = _document_text(store, r.search("glaciers", 1, "lexical")[0].document_id)
    for mode in ("dense", "lexical", "hybrid"):
        passages = r.search("glaciers carve valleys over years", 8, mode)
        assert len(passages) >= 3
        spans = sorted((p.char_start, p.char_end) for p in passages)
        for (_, a1), (b0, _) in zip(spans, spans[1:]):
            assert a1 <= b0, f"{mode}: passages overlap: {spans}"
        for p in passages:
            assert p.text == text[p.char_start:p.char_end]
            assert len(p.chunk_ids) <= 3
    # Scores come best first.
    scores = [p.score for p in r.search("rivers deposit silt", 8, "hybrid")]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_scales_each_signal_by_its_deep_pool_not_by_the_candidates(tmp_path: Path, store, settings,
                                                                          embedder) -> None:
    """The z-scores come from each signal's top STANDARDISE_DEPTH scores (here: every chunk), even
    when only the top `depth` of each list are candidates for fusion."""
    from rag.fusion import Standardiser, fuse
    from rag.retrieval import STANDARDISE_DEPTH

    folder = tmp_path / "many"
    folder.mkdir()
    topics = ["tidal energy", "glacier retreat", "bee colonies", "river deltas", "desert dunes", "coral reefs"]
    for i in range(24):
        (folder / f"n{i}.txt").write_text(f"Note {i}\n\n{topics[i % 6]} survey {i}: " + paragraph(topics[i % 6], 2))
    run_ingest([folder], store, settings, embedder, collection="notes")
    r = Retriever(store, lambda: embedder, depth=3)
    query = "how fast are glaciers retreating"
    everything = len(r.snapshot().table.ids)
    assert 3 < everything < STANDARDISE_DEPTH
    dense = r.rank(query, "dense", limit=everything)
    lexical = r.rank(query, "lexical", limit=everything)
    hybrid = r.rank(query, "hybrid", limit=5)
    d_of = dict(zip(dense.ids.tolist(), dense.scores))
    l_of = dict(zip(lexical.ids.tolist(), lexical.scores))

    def fused(cid: int, pool: int) -> float:  # the chunk's score, each signal scaled by its top `pool`
        d_std, l_std = Standardiser.of(dense.scores[:pool]), Standardiser.of(lexical.scores[:pool])
        return float(fuse(np.array([d_of[cid]]), np.array([l_of.get(cid, 0.0)]), d_std, l_std, 0.5)[0])

    for cid, score in zip(hybrid.ids.tolist(), hybrid.scores):
        assert score == pytest.approx(fused(cid, everything), rel=1e-6)
    # Scaled by the top 3 alone, the scores would differ: the test can tell the two apart.
    assert abs(fused(int(hybrid.ids[0]), 3) - hybrid.scores[0]) > 1e-3


def test_chunks_are_matched_by_their_windows(tmp_path: Path, store, settings, embedder) -> None:
    """With windows, each chunk's row keeps one vector per window, the indexes agree with SQL
    (also after a repair and a re-embedding), and a question matching one sentence of a long
    chunk scores as that sentence's window does, not as the whole chunk's average."""
    windowed = settings.model_copy(update={"window_tokens": 20})
    folder = tmp_path / "w"
    folder.mkdir()
    text = ("Site log\n\nThe crane was inspected on Monday. Concrete for the east wing was poured on Tuesday. "
            "A delivery of steel beams arrived late. The inspector approved the scaffolding on Friday.")
    (folder / "log.txt").write_text(text)
    for i, other in enumerate(["Canteen menu\n\nSoup and bread are served at noon.",
                               "Parking rules\n\nVisitors park in the north lot."]):
        (folder / f"o{i}.txt").write_text(other)
    run_ingest([folder], store, windowed, embedder, collection="site")
    with store.engine.connect() as c:
        rows = c.execute(select(s.chunks.c.id, s.chunks.c.text, s.chunks.c.embedding)).all()
    log_rows = [r for r in rows if "crane" in r.text]
    assert len(log_rows) == 1  # one 64-token chunk...
    (cid, chunk_text, blob), = log_rows
    windows = np.frombuffer(blob, np.float32).reshape(-1, embedder.dim)
    assert len(windows) >= 3  # ...with a vector per window
    assert check_store(store).ok
    r = Retriever(store, lambda: embedder)
    question = "when was the crane inspected"
    dense = r.rank(question, "dense")
    top = int(dense.ids[0])
    assert top == cid
    q = embedder.encode_query(question)
    assert dense.scores[0] == pytest.approx(float(np.max(windows @ q)), abs=1e-5)
    assert dense.scores[0] > float(embedder.encode([chunk_text])[0] @ q) + 0.05  # the whole chunk matches worse
    assert repair_store(store).ok and r.rank(question, "dense").ids[0] == cid
    with open_writer(store):
        reembed_store(store, embedder, lambda t: [t])  # one vector per chunk again
    assert check_store(store).ok and store.load_vectors()[1].n_vectors == len(rows)


def test_a_passage_ranks_higher_in_a_document_about_the_question(tmp_path: Path, store, settings,
                                                                  embedder) -> None:
    """Two passages name the dredging contractor. The one in the canteen minutes is, alone, the better
    BM25 match (it is shorter); the other sits in a document about harbour dredging, and its
    document's BM25 lifts it above."""
    folder = tmp_path / "docs"
    folder.mkdir()
    works = [f"Dredging of the harbour basin, stage {n}, removed silt from berth {n} before the winter storms."
             for n in range(1, 6)]
    (folder / "harbour.txt").write_text("Harbour dredging\n\n" + "\n\n".join(
        works[:3] + ["Tideway Marine is the dredging contractor for the harbour, under the contract signed "
                     "in March after a long tender in which four firms bid and the council's panel scored each "
                     "bid on cost, experience and its plan for the silt."] + works[3:]))
    canteen = ["The canteen will serve soup on Mondays and fish on Fridays from next month, the salad bar moves "
               "to the window side of the hall once the joiners have fitted the new counters, and the coffee "
               "machine on the second floor is to be replaced before the summer holidays begin.",
               "Staff asked for more vegetarian dishes and a later closing time on Thursdays, when the evening "
               "shift starts; the committee will ask the caterer for prices and a sample menu before its next "
               "meeting, and will report back to the staff council in the autumn."]
    (folder / "minutes.txt").write_text("Staff canteen minutes\n\n" + "\n\n".join(
        [canteen[1], canteen[0], "The meeting noted that Tideway Marine is now the dredging contractor "
                                 "for the harbour."]))
    for name, text in (("bread.txt", "Baking bread\n\nKnead the dough for ten minutes, then let it prove."),
                       ("chess.txt", "Chess openings\n\nThe Sicilian Defence answers e4 with c5."),
                       ("bees.txt", "Bee keeping\n\nInspect the hives every week in spring."),
                       ("kites.txt", "Kite flying\n\nA steady wind of ten knots lifts a delta kite."),
                       ("tides.txt", "Tide tables\n\nSpring tides follow the new and the full moon."),
                       ("maps.txt", "Map reading\n\nContour lines join points of equal height.")):
        (folder / name).write_text(text)
    run_ingest([folder], store, settings, embedder)
    r = _retriever(store, embedder)
    snap = r.snapshot()
    # The words in an order neither passage has them in: no word pair matches, terms and documents decide.
    query = "harbour contractor dredging"
    top = r.rank(query, "lexical", limit=3)
    chunk_alone = dict(zip(*snap.lexical.matching(query)))
    with store.engine.connect() as c:
        texts = dict(c.execute(select(s.chunks.c.id, s.chunks.c.text)).all())
    best = int(top.ids[0])
    assert "long tender" in texts[best], texts[best]
    in_passing = next(cid for cid, text in texts.items() if "meeting noted" in text)
    assert chunk_alone[in_passing] > chunk_alone[best]  # without the documents' BM25 the order flips
