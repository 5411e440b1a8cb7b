"""The title rule: a metadata title that is not a title gives way to the first heading or line,
then to the file name; a real metadata title is kept as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import load_file
from ingest.titles import choose_title, first_line, is_real_title
from tests.fixtures import make_docx, make_pdf

JUNK = ["10811.exe", "Microsoft Word - memo.doc", "Microsoft Word - Annual report", "Microsoft PowerPoint - Deck",
        "untitled", "Untitled Document", "Document1", "document", "Presentation1", "Book1", "12345", "2023-01-05",
        "  ", "", "—", "C:\\Users\\jo\\Desktop\\report", "/home/jo/report", "report_final_v2.docx", "scan0001.pdf",
        "IMG_2041.JPG", "(anonymous)", "No title", "Adobe InDesign"]
REAL = ["Parental leave policy", "Annual Report 2023", "Minutes of the board, 4 March", "Node.js style guide",
        "COVID-19 guidance", "Q3 results", "FAQ", "Über die Reisekosten", "Form W-2 instructions",
        "Title IX compliance"]


@pytest.mark.parametrize("title", JUNK)
def test_junk_metadata_titles_give_way_to_the_first_heading(title: str) -> None:
    assert not is_real_title(title)
    assert choose_title(title, "Transcript of proceedings", "10811.pdf") == "Transcript of proceedings"


@pytest.mark.parametrize("title", REAL)
def test_good_metadata_titles_are_kept_as_they_are(title: str) -> None:
    assert is_real_title(title)
    assert choose_title(title, "Some other heading", "file.pdf") == title


def test_without_a_title_or_heading_the_file_name_without_extension_is_used() -> None:
    assert choose_title("10811.exe", "", "court-transcript.pdf") == "court-transcript"
    assert choose_title(None, "1", "notes.txt") == "notes"  # a lone page number is no heading
    assert choose_title("", "", ".profile") == ".profile"


def test_first_line_skips_numbers_and_markdown_marks() -> None:
    assert first_line("\n  3\n\n## Leave  ##\nbody") == "Leave"
    assert first_line("12\n--\n") == ""
    assert len(first_line("x" * 500)) == 120


def test_whitespace_in_a_title_is_collapsed_and_long_titles_are_cut() -> None:
    assert choose_title("  Annual\n report ", "", "a.pdf") == "Annual report"
    assert len(choose_title("A" * 1000, "", "a.pdf")) == 300


def test_a_pdf_whose_metadata_title_is_a_program_name_is_titled_by_its_first_line(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "10811.pdf", ["1\nTranscript of proceedings\nThe court met at ten."], title="10811.exe")
    assert load_file(pdf, "pdf", []).title == "Transcript of proceedings"
    good = make_pdf(tmp_path / "b.pdf", ["Heading here\nBody text."], title="Board minutes, March")
    assert load_file(good, "pdf", []).title == "Board minutes, March"


def test_text_markdown_and_docx_titles_follow_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / "memo.txt").write_text("2024\n\nStaff canteen hours\nThe canteen opens at eight.\n")
    assert load_file(tmp_path / "memo.txt", "text", []).title == "Staff canteen hours"
    (tmp_path / "n.md").write_text("Intro line\n\n# Travel policy\n\nTrains, not planes.\n")
    assert load_file(tmp_path / "n.md", "markdown", []).title == "Travel policy"  # the heading beats a first line
    (tmp_path / "only-numbers.txt").write_text("1\n2\n3\n")
    assert load_file(tmp_path / "only-numbers.txt", "text", []).title == "only-numbers"
    docx = make_docx(tmp_path / "d.docx", "Expenses", ["Claims within 30 days."])
    assert load_file(docx, "docx", []).title == "Expenses"
