"""The store: migrations, crash-safe commits, consistency check and repair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import inspect

from rag import schema
from rag.consistency import check_store, repair_store
from rag.migrations import LATEST, migrate
from rag.records import Chunk, DocumentContent, FileFacts
from rag.vectors import VectorIndex
from rag.writer import open_writer


def _doc(cid: int, path: str, text: str, h: str) -> tuple[FileFacts, DocumentContent]:
    chunk = Chunk(0, text, 5, 0, len(text), 1, 1, 0, len(text))
    return FileFacts(cid, path, h, len(text), "text"), DocumentContent("T", [text], False, [chunk])


def _vec(seed: int, dim: int = 8) -> list[np.ndarray]:
    """The vectors of a one-chunk document: one window."""
    v = np.random.default_rng(seed).normal(size=(1, dim)).astype(np.float32)
    return [v / np.linalg.norm(v)]


def test_migrations_build_the_declared_schema_and_rerun_safely(store: Any) -> None:
    insp = inspect(store.engine)
    for table in schema.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    assert migrate(store.engine) == []  # nothing pending the second time
    with store.engine.connect() as c:
        from rag.migrations import current_version

        assert current_version(c) == LATEST


def test_commit_writes_a_new_generation_and_check_agrees(store: Any) -> None:
    with open_writer(store) as w:
        cid = w.ensure_collection("default")
        for i in range(3):
            facts, content = _doc(cid, f"/d/{i}.txt", f"text {i}", f"h{i}")
            w.put_document(facts, content, _vec(i), "m", "test recipe")
    state = store.index_state()
    assert state.generation == 1 and state.chunk_count == 3 and state.dim == 8
    assert check_store(store).ok
    assert sorted(p.name for p in store.index_dir.glob("*-0*")) == ["lexical-00000001.npz", "vectors-00000001.faiss"]


def test_failed_commit_leaves_the_store_as_it_was(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_writer(store) as w:
        cid = w.ensure_collection("default")
        w.put_document(*_doc(cid, "/d/a.txt", "alpha", "ha"), _vec(1), "m", "test recipe")
    before = store.index_state()

    real_save = VectorIndex.save

    def save_then_die(self: VectorIndex, path: Path) -> None:
        real_save(self, path)  # the new file is complete ...
        raise OSError("disk vanished")  # ... but the SQL transaction never commits

    monkeypatch.setattr(VectorIndex, "save", save_then_die)
    with pytest.raises(OSError):
        with open_writer(store) as w:
            w.put_document(*_doc(cid, "/d/b.txt", "beta", "hb"), _vec(2), "m", "test recipe")
    monkeypatch.undo()
    assert store.index_state() == before
    assert not store.lexical_path(before.generation + 1).exists()  # the orphan files are gone
    assert store.load_lexical().ids().tolist() == store.load_vectors()[1].ids().tolist()
    assert [d.path for d in store.documents()] == ["/d/a.txt"]
    assert check_store(store).ok


def test_check_finds_a_missing_or_stale_index_and_repair_mends_it(store: Any) -> None:
    with open_writer(store) as w:
        cid = w.ensure_collection("default")
        for i in range(4):
            w.put_document(*_doc(cid, f"/d/{i}.txt", f"t{i}", f"h{i}"), _vec(i), "m", "test recipe")
    path = store.faiss_path(store.index_state().generation)
    stale = VectorIndex.load(path)
    stale.remove(np.asarray([stale.ids()[0]]))
    stale.save(path)
    report = check_store(store)
    assert not report.ok and any("no vector" in p for p in report.problems)
    path.unlink()
    assert not check_store(store).ok
    repaired = repair_store(store)
    assert repaired.ok and repaired.vectors == 4


def test_removing_a_document_hands_its_chunks_to_a_duplicate(store: Any) -> None:
    with open_writer(store) as w:
        cid = w.ensure_collection("default")
        w.put_document(*_doc(cid, "/d/a.txt", "same words", "H"), _vec(1), "m", "test recipe")
    with open_writer(store) as w:
        facts, _ = _doc(cid, "/d/copy.txt", "same words", "H")
        w.put_duplicate(facts, "/d/a.txt")
    original = next(d for d in store.documents() if d.path == "/d/a.txt")
    with open_writer(store) as w:
        w.remove(original.id)
    (heir,) = store.documents()
    assert heir.path == "/d/copy.txt" and heir.status == "ready" and heir.chunks == 1
    with open_writer(store) as w:  # and how they were chunked, so the next ingest leaves them be
        heir_record = w.existing(cid, "/d/copy.txt")
        assert heir_record is not None and heir_record.chunking == "test recipe"
        assert w.existing(cid, "/d/a.txt") is None
    assert check_store(store).ok


def test_a_second_writer_waits_and_then_gives_up_clearly(store: Any) -> None:
    import threading

    from rag.errors import StoreError

    outcome: list[str] = []

    def second_writer() -> None:
        try:
            with open_writer(store, wait_s=0.3):
                outcome.append("got in")
        except StoreError as exc:
            outcome.append(str(exc))

    with open_writer(store):
        t = threading.Thread(target=second_writer)
        t.start()
        t.join()
    assert len(outcome) == 1 and "another ingest" in outcome[0]
    second_writer()  # free again once the first writer is done
    assert outcome[-1] == "got in"


def test_lexical_index_follows_commits_and_repair_rebuilds_it(store: Any) -> None:
    with open_writer(store) as w:
        cid = w.ensure_collection("default")
        for i, text in enumerate(["hotel invoices", "travel policy", "falcon river"]):
            w.put_document(*_doc(cid, f"/d/{i}.txt", text, f"h{i}"), _vec(i), "m", "test recipe")
    lexical = store.load_lexical()
    (hit,) = lexical.search("invoice", 5)[1].tolist()
    doc = next(d for d in store.documents() if d.path == "/d/0.txt")
    with open_writer(store) as w:
        w.remove(doc.id)
    assert store.load_lexical().search("invoice", 5)[1].tolist() == []
    assert hit not in store.load_lexical().ids().tolist() and len(store.load_lexical()) == 2
    store.lexical_path(store.index_state().generation).write_bytes(b"garbage")
    report = check_store(store)
    assert not report.ok and any("lexical" in p for p in report.problems)
    assert repair_store(store).ok
    assert store.load_lexical().search("falcon", 5)[1].size == 1


def test_a_lexical_index_from_before_word_pairs_is_rebuilt_whole_at_the_next_commit(store: Any) -> None:
    from rag.lexical import LexicalIndex

    with open_writer(store) as w:
        cid = w.ensure_collection("default")
        w.put_document(*_doc(cid, "/d/0.txt", "hotel invoices for travel", "h0"), _vec(0), "m", "test recipe")
    # The file as an older version wrote it: the same chunks, no word pairs.
    current = store.load_lexical()
    old = LexicalIndex(pairs=False)
    with store.engine.connect() as c:
        rows = c.execute(schema.chunks.select().with_only_columns(schema.chunks.c.id, schema.chunks.c.text)).all()
    old.add([r[0] for r in rows], [r[1] for r in rows])
    old.save(store.lexical_path(store.index_state().generation))
    assert not store.load_lexical().pairs and check_store(store).ok  # still a valid index: searches work
    assert current.pairs and "hotel invoic" in current.pair_vocab
    with open_writer(store) as w:
        w.put_document(*_doc(cid, "/d/1.txt", "falcon river", "h1"), _vec(1), "m", "test recipe")
    upgraded = store.load_lexical()
    assert upgraded.pairs and {"hotel invoic", "falcon river"} <= set(upgraded.pair_vocab)  # old chunk too
    assert len(upgraded) == 2 and check_store(store).ok
