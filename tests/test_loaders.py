"""Readers: every format, every way a file can be bad, one-line reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import load_file
from rag.errors import LoadError
from tests.fixtures import encrypt_pdf, make_blank_pdf, make_docx, make_pdf


def test_text_encodings_are_detected(tmp_path: Path) -> None:
    text = "Die Größe des Gebäudes überrascht. Café crème à la française, naïve façade. " * 5
    for enc in ("utf-8", "cp1252", "utf-16"):
        p = tmp_path / f"{enc}.txt"
        p.write_bytes(text.encode(enc))
        assert load_file(p, "text", []).pages[0] == text, enc


def test_binary_file_with_text_extension_fails(tmp_path: Path) -> None:
    p = tmp_path / "image.txt"
    p.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(LoadError, match="binary"):
        load_file(p, "text", [])


@pytest.mark.parametrize("content", [b"", b"   \n\n  "])
def test_empty_files_fail(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "empty.md"
    p.write_bytes(content)
    with pytest.raises(LoadError, match="empty file"):
        load_file(p, "markdown", [])


def test_markdown_title_is_first_heading(tmp_path: Path) -> None:
    p = tmp_path / "guide.md"
    p.write_text("Intro line\n\n## Travel policy\n\nBook trains two weeks ahead.\n")
    loaded = load_file(p, "markdown", [])
    assert loaded.title == "Travel policy"
    assert "Book trains" in loaded.pages[0]
    assert not loaded.paginated


def test_html_keeps_content_and_drops_boilerplate(tmp_path: Path) -> None:
    body = " ".join(["The expense policy allows economy flights for trips under six hours."] * 8)
    html = f"""<html><head><title>Expense policy</title><script>var tracking = "SECRET_SCRIPT";</script></head>
    <body><nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/x">Navigation menu item</a></nav>
    <article><h1>Expense policy</h1><p>{body}</p><p>Hotels must be booked through the travel desk.</p></article>
    <footer>Copyright 2024 ACME. All rights reserved. Cookie settings.</footer></body></html>"""
    p = tmp_path / "policy.html"
    p.write_text(html)
    loaded = load_file(p, "html", [])
    assert loaded.title == "Expense policy"
    assert "economy flights" in loaded.pages[0] and "travel desk" in loaded.pages[0]
    assert "SECRET_SCRIPT" not in loaded.pages[0]
    assert "Cookie settings" not in loaded.pages[0]


def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    p = make_docx(tmp_path / "memo.docx", "Quarterly memo", ["Revenue grew in the north region."],
                  table=[["Region", "Growth"], ["North", "12%"]])
    loaded = load_file(p, "docx", [])
    assert loaded.title == "Quarterly memo"
    assert "# Quarterly memo" in loaded.pages[0]
    assert "Revenue grew" in loaded.pages[0]
    assert "North | 12%" in loaded.pages[0]


def test_docx_that_is_not_a_zip_fails(tmp_path: Path) -> None:
    p = tmp_path / "fake.docx"
    p.write_text("this is not a word document")
    with pytest.raises(LoadError, match="not a valid DOCX"):
        load_file(p, "docx", [])


def test_pdf_pages_are_kept_apart(tmp_path: Path) -> None:
    p = make_pdf(tmp_path / "r.pdf", ["First page talks about apples.", "Second page talks about pears.",
                                      "Third page talks about plums."], title="Fruit report")
    loaded = load_file(p, "pdf", [])
    assert loaded.paginated and len(loaded.pages) == 3
    assert "apples" in loaded.pages[0] and "pears" in loaded.pages[1] and "plums" in loaded.pages[2]
    assert loaded.title == "Fruit report"


def test_encrypted_pdf_needs_the_right_password(tmp_path: Path) -> None:
    plain = make_pdf(tmp_path / "plain.pdf", ["Salaries are reviewed every April."])
    locked = encrypt_pdf(plain, tmp_path / "locked.pdf", "s3cret")
    with pytest.raises(LoadError, match="encrypted PDF"):
        load_file(locked, "pdf", [])
    with pytest.raises(LoadError, match="encrypted PDF"):
        load_file(locked, "pdf", ["wrong"])
    assert "reviewed every April" in load_file(locked, "pdf", ["wrong", "s3cret"]).pages[0]


def test_pdf_without_text_layer_says_so(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no extractable text"):
        load_file(make_blank_pdf(tmp_path / "scan.pdf", 2), "pdf", [])


@pytest.mark.parametrize("cut", [0.3, 0.6])
def test_truncated_pdf_is_read_or_refused_with_a_reason(tmp_path: Path, cut: float) -> None:
    full = make_pdf(tmp_path / "full.pdf", ["Page one text about budgets.", "Page two text about audits."])
    data = full.read_bytes()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(data[: int(len(data) * cut)])
    try:
        loaded = load_file(broken, "pdf", [])
    except LoadError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert any(p.strip() for p in loaded.pages)


def test_file_that_is_not_a_pdf_fails(tmp_path: Path) -> None:
    p = tmp_path / "x.pdf"
    p.write_text("hello, I am plain text pretending")
    with pytest.raises(LoadError, match="not a PDF"):
        load_file(p, "pdf", [])
