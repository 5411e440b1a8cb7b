"""Uploads: names sanitised, size limited, type checked from the content."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.uploads import safe_name, save_upload, sniff
from rag.errors import LoadError
from tests.fixtures import make_docx, make_pdf

MB = 2**20


@pytest.mark.parametrize("given, expected", [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("C:\\\\Users\\\\x\\\\report.pdf", "report.pdf"),
    (".hidden.md", "hidden.md"),
    ("a<b>|c?.html", "a_b_c_.html"),
    ("", "upload"),
    ("x" * 300 + ".pdf", "x" * 110 + ".pdf"),
])
def test_names_are_plain_and_stay_in_their_folder(given: str, expected: str) -> None:
    assert safe_name(given) == expected


def test_uploads_land_apart_and_never_overwrite(tmp_path: Path) -> None:
    a = save_upload(tmp_path, "notes.txt", b"first version of the notes", MB)
    b = save_upload(tmp_path, "notes.txt", b"second, different notes", MB)
    assert a != b and a.read_bytes() == b"first version of the notes" and b.read_text() == "second, different notes"
    assert save_upload(tmp_path, "../notes.txt", b"first version of the notes", MB) == a
    assert all(tmp_path in p.parents for p in (a, b))


def test_type_comes_from_the_content(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "r.pdf", ["hello"]).read_bytes()
    docx = make_docx(tmp_path / "d.docx", "Title", ["para"]).read_bytes()
    sniffed = (sniff(pdf), sniff(docx), sniff(b"plain words"), sniff(b"\x7fELF\x00\x00"))
    assert sniffed == ("pdf", "docx", "text", "binary")
    assert save_upload(tmp_path / "up", "report.pdf", pdf, MB).suffix == ".pdf"
    with pytest.raises(LoadError, match="report.pdf: the content is binary"):
        save_upload(tmp_path / "up", "report.pdf", b"\x7fELF\x02\x01\x00\x00" * 10, MB)
    with pytest.raises(LoadError, match="notes.txt: the content is a PDF"):
        save_upload(tmp_path / "up", "notes.txt", pdf, MB)
    with pytest.raises(LoadError, match="not supported"):
        save_upload(tmp_path / "up", "tool.exe", b"MZ\x90\x00", MB)
    with pytest.raises(LoadError, match="1 MB upload limit"):
        save_upload(tmp_path / "up", "big.txt", b"x" * (MB + 1), MB)
    assert not (tmp_path / "up").exists() or len(list((tmp_path / "up").rglob("*.*"))) == 1
