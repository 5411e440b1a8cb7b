"""The ingest pipeline: formats, re-runs, updates, duplicates, pruning, bad input, model changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.discover import PasswordBook
from rag.consistency import check_store
from rag.writer import open_writer, reembed_store
from tests.fixtures import encrypt_pdf, make_docx, make_pdf, paragraph
from tests.helpers import chunk_snapshot, nearest_texts, run_ingest


class CountingEmbedder:
    """The real embedder, counting how many texts it was asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls, self.texts = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts)


@pytest.fixture
def formats(tmp_path: Path) -> Path:
    """A folder (not yet ingested) with a file of every format, and one ragqa does not read."""
    lib = tmp_path / "library"
    lib.mkdir()
    make_pdf(lib / "handbook.pdf", ["Staff handbook. " + paragraph("holiday allowance", 6),
                                    "The canteen opens at eight in the morning and closes at three."])
    (lib / "notes.txt").write_text(paragraph("server maintenance windows", 5))
    (lib / "guide.md").write_text("# Onboarding guide\n\n" + paragraph("laptop setup", 5))
    (lib / "page.html").write_text("<html><head><title>Parking</title></head><body><article><p>"
                                   + paragraph("parking permits", 6) + "</p></article></body></html>")
    make_docx(lib / "memo.docx", "Security memo", [paragraph("password rotation", 5)])
    (lib / "ignored.xyz").write_text("not a format we read")
    return lib


def test_every_format_goes_in_and_is_findable(formats: Path, store: Any, settings: Any, embedder: Any) -> None:
    summary = run_ingest([formats], store, settings, embedder)
    assert (summary.added, summary.failed, summary.skipped) == (5, [], 1)
    docs = {Path(d.path).name: d for d in store.documents()}
    assert docs["handbook.pdf"].pages == 2 and docs["notes.txt"].pages is None
    assert {d.status for d in docs.values()} == {"ready"}
    assert docs["memo.docx"].title == "Security memo" and docs["page.html"].title == "Parking"
    assert "canteen opens at eight" in nearest_texts(store, embedder, "When does the canteen open?")[0]
    assert check_store(store).ok


def test_second_page_chunks_cite_page_two(formats: Path, store: Any, settings: Any, embedder: Any) -> None:
    run_ingest([formats / "handbook.pdf"], store, settings, embedder)
    from sqlalchemy import select

    from rag import schema as s

    with store.engine.connect() as c:
        rows = c.execute(select(s.chunks.c.text, s.chunks.c.page_start, s.chunks.c.page_char_start,
                                s.chunks.c.page_char_end, s.pages.c.text.label("page"))
                         .join(s.pages, (s.pages.c.document_id == s.chunks.c.document_id)
                               & (s.pages.c.page_no == s.chunks.c.page_start))).all()
    canteen = [r for r in rows if "canteen" in r.text]
    assert canteen and all(r.page_start == 2 for r in canteen)
    for r in rows:
        assert r.page[r.page_char_start:r.page_char_start + 20] == r.text[:20]


def test_rerun_of_unchanged_files_embeds_nothing(formats: Path, store: Any, settings: Any, embedder: Any) -> None:
    run_ingest([formats], store, settings, embedder)
    before = chunk_snapshot(store)
    counting = CountingEmbedder(embedder)
    again = run_ingest([formats], store, settings, counting)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 5)
    assert counting.calls == 0
    assert chunk_snapshot(store) == before


def test_changed_file_replaces_its_chunks(formats: Path, store: Any, settings: Any, embedder: Any) -> None:
    run_ingest([formats], store, settings, embedder)
    (formats / "notes.txt").write_text("The maintenance window moved to Sunday at five in the morning.")
    summary = run_ingest([formats], store, settings, embedder)
    assert (summary.updated, summary.unchanged) == (1, 4)
    notes = next(d for d in store.documents() if d.path.endswith("notes.txt"))
    assert notes.version == 2
    texts = [t for (p, _, t) in chunk_snapshot(store) if p.endswith("notes.txt")]
    assert texts == ["The maintenance window moved to Sunday at five in the morning."]
    assert "Sunday" in nearest_texts(store, embedder, "When is the maintenance window?", k=1)[0]
    assert len(store.load_lexical().search("maintenance window Sunday", 10)[1]) == 1  # the old text is gone
    assert check_store(store).ok


def test_new_chunk_settings_rechunk_unchanged_files(tmp_path: Path, store: Any, settings: Any, embedder: Any) -> None:
    from sqlalchemy import delete

    from rag import schema as s

    folder = tmp_path / "long"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.txt").write_text(paragraph(f"topic {name}", 12))
    first = run_ingest([folder], store, settings, embedder)
    smaller = settings.model_copy(update={"chunk_tokens": 32, "chunk_overlap": 4})
    again = run_ingest([folder], store, smaller, embedder)
    assert (again.added, again.updated, again.unchanged) == (0, 2, 0)
    assert again.chunks > first.chunks
    assert max(n for n in _token_counts(store)) <= 32
    assert run_ingest([folder], store, smaller, embedder).unchanged == 2  # recorded: not read again
    assert check_store(store).ok
    # A document stored before chunking was recorded is left alone, whatever the settings.
    with store.engine.begin() as c:
        c.execute(delete(s.document_chunking))
    assert run_ingest([folder], store, settings, embedder).unchanged == 2


def _token_counts(store: Any) -> list[int]:
    from sqlalchemy import select

    from rag import schema as s

    with store.engine.connect() as c:
        return list(c.execute(select(s.chunks.c.n_tokens)).scalars())


def test_same_content_under_two_paths_is_stored_once(tmp_path: Path, store: Any, settings: Any, embedder: Any) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        (tmp_path / sub / "policy.txt").write_text(paragraph("remote work", 4))
    summary = run_ingest([tmp_path / "a", tmp_path / "b"], store, settings, embedder)
    assert summary.added == 1 and len(summary.duplicates) == 1
    assert summary.duplicates[0]["same_as"].endswith("a/policy.txt")
    statuses = sorted(d.status for d in store.documents())
    assert statuses == ["duplicate", "ready"]
    assert len(chunk_snapshot(store)) == sum(d.chunks for d in store.documents())
    again = run_ingest([tmp_path / "a", tmp_path / "b"], store, settings, embedder)
    assert again.unchanged == 2 and not again.duplicates


def test_prune_removes_documents_whose_files_are_gone(formats: Path, store: Any, settings: Any, embedder: Any) -> None:
    run_ingest([formats], store, settings, embedder)
    (formats / "notes.txt").unlink()
    kept = run_ingest([formats], store, settings, embedder)
    assert kept.removed == 0 and len(store.documents()) == 5
    pruned = run_ingest([formats], store, settings, embedder, prune=True)
    assert pruned.removed == 1
    assert not any(d.path.endswith("notes.txt") for d in store.documents())
    assert check_store(store).ok


def test_bad_files_fail_alone_with_one_line_reasons(tmp_path: Path, store: Any, settings: Any, embedder: Any) -> None:
    lib = tmp_path / "mixed"
    lib.mkdir()
    (lib / "good.txt").write_text(paragraph("expense claims", 4))
    (lib / "empty.txt").write_bytes(b"")
    (lib / "binary.txt").write_bytes(bytes(range(256)) * 50)
    (lib / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\ngarbage")
    (lib / "huge.md").write_text("x" * 3_000_000)
    locked = encrypt_pdf(make_pdf(tmp_path / "p.pdf", ["Board minutes are confidential."]), lib / "locked.pdf", "pw")
    small = settings.model_copy(update={"max_file_mb": 1.0})
    summary = run_ingest([lib], store, small, embedder)
    reasons = {Path(f["path"]).name: f["error"] for f in summary.failed}
    assert summary.added == 1
    assert set(reasons) == {"empty.txt", "binary.txt", "broken.pdf", "huge.md", "locked.pdf"}
    assert "empty" in reasons["empty.txt"] and "binary" in reasons["binary.txt"]
    assert "too large" in reasons["huge.md"] and "encrypted" in reasons["locked.pdf"]
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    # With the password the locked file goes in on the next run; failures are retried.
    book = PasswordBook([(locked.name, "pw")])
    again = run_ingest([lib], store, small, embedder, passwords=book)
    assert again.added == 1 and len(again.failed) == 4
    assert check_store(store).ok


def test_a_file_that_breaks_keeps_its_last_good_version(tmp_path: Path, store: Any, settings: Any,
                                                         embedder: Any) -> None:
    f = tmp_path / "report.txt"
    f.write_text(paragraph("quarterly sales", 4))
    run_ingest([f], store, settings, embedder)
    f.write_bytes(bytes(range(256)) * 50)
    summary = run_ingest([f], store, settings, embedder)
    assert len(summary.failed) == 1
    (doc,) = store.documents()
    assert doc.status == "ready" and doc.chunks > 0 and "latest version not read" in (doc.error or "")


def test_password_file_format(tmp_path: Path) -> None:
    p = tmp_path / "pw.tsv"
    p.write_text("# comment line\nreport.pdf\tsecret one\nfile\tpassword\tnote column\n\nsub/plan.pdf\tx\n")
    book = PasswordBook.read(p)
    assert book.for_file(Path("/data/report.pdf")) == ["secret one"]
    assert book.for_file(Path("/data/sub/plan.pdf")) == ["x"]
    assert book.for_file(Path("/data/other/plan2.pdf")) == []


def test_changing_the_embedding_model_reembeds_everything(formats: Path, store: Any, settings: Any,
                                                          embedder: Any) -> None:
    run_ingest([formats], store, settings, embedder)

    class Other(CountingEmbedder):
        name = "test:other-model"
        dim = 384

        def encode(self, texts: list[str]) -> np.ndarray:
            return -super().encode(texts)  # a different (still normalised) vector space

    other: Any = Other(embedder)  # an Embedder in all but name
    with open_writer(store):
        n = reembed_store(store, other, lambda text: [text])
    state = store.index_state()
    assert n == state.chunk_count == other.texts and state.embedding_model == "test:other-model"
    assert check_store(store).ok
