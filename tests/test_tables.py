"""Tables as tables: a fee table (rows are categories, columns years) in a PDF, a DOCX, an HTML
page, a CSV and an XLSX workbook is read as a Markdown table, so "what is the fee for category B in
2025?" is answered with the right cell from a chunk that holds the header row; a long table is
chunked so that no chunk cuts a row and every chunk repeats the header."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.loaders import load_file
from ingest.tables import markdown_table, may_hold_table, repeat_headers
from rag import schema as s
from tests.fixtures import make_docx, make_pdf
from tests.helpers import Library, no_traceback, ragqa

FEES = [["Category", "2023", "2024", "2025"],
        ["A", "10.00", "11.00", "12.50"],
        ["B", "20.00", "21.75", "23.40"],
        ["C", "35.00", "36.20", "38.90"]]
HEADER = "| Category | 2023 | 2024 | 2025 |"
INTRO = "The permit fees for each category of applicant are set out below, by year."


def fee_pdf(path: Path) -> Path:
    from reportlab.lib import colors
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()
    table = Table(FEES)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    SimpleDocTemplate(str(path)).build([Paragraph("Permit fees", styles["Heading1"]),
                                        Paragraph(INTRO, styles["Normal"]), table,
                                        Paragraph("Fees are payable when the application is made.", styles["Normal"])])
    return path


def fee_csv(path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(FEES)
    return path


def fee_xlsx(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Fees"
    sheet.append(FEES[0])
    for row in FEES[1:]:
        sheet.append([row[0], *(float(v) for v in row[1:])])
        for cell in sheet[sheet.max_row][1:]:
            cell.number_format = "0.00"
    book.create_sheet("Contacts").append(["Name", "Phone"])
    book["Contacts"].append(["Permit desk", "0123 456"])
    book.save(path)
    return path


FORMATS = {
    "fees.pdf": fee_pdf,
    "fees.docx": lambda p: make_docx(p, "Permit fees", [INTRO], table=FEES),
    "fees.csv": fee_csv,
    "fees.xlsx": fee_xlsx,
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_fee_table_cell_is_answered_with_its_header(name: str, library: Library, cli_env: dict[str, str]) -> None:
    library({name: FORMATS[name],
             "canteen.md": "# Canteen\n\nThe canteen opens at eight and serves soup on Fridays.",
             "leave.txt": "Staff get 27 days of annual leave, and the leave year starts in April."})
    out = ragqa(cli_env, "ask", "What is the fee for category B in 2025?", "--json")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    cited = [src for src in answer["sources"] if src["cited"]]
    assert cited and cited[0]["path"].endswith(name)
    assert "| B | 20.00 | 21.75 | 23.40 |" in answer["answer"]
    assert HEADER in answer["answer"]  # the cell comes with its column names
    quote = cited[0]["quotes"][0]["text"]
    assert HEADER in quote and "23.40" in quote
    with library.store.engine.connect() as c:  # the cited chunk itself holds the header row
        chunks = c.execute(select(s.chunks.c.text).where(s.chunks.c.document_id == cited[0]["document_id"])).scalars()
        assert any(HEADER in t and "| B |" in t for t in chunks)


def test_readers_write_markdown_tables(tmp_path: Path) -> None:
    html = tmp_path / "fees.html"
    rows = "".join(f"<tr>{''.join(f'<td>{v}</td>' for v in r)}</tr>" for r in FEES[1:])
    html.write_text(f"<html><head><title>Permit fees</title></head><body><h1>Permit fees</h1><p>{INTRO}</p>"
                    f"<table><tr>{''.join(f'<th>{v}</th>' for v in FEES[0])}</tr>{rows}</table>"
                    "<p>Fees are payable when the application is made.</p></body></html>")
    page = load_file(html, "html", []).pages[0]
    assert f"\n\n{HEADER}\n|---|---|---|---|\n| A | 10.00 | 11.00 | 12.50 |" in page
    assert "| C | 35.00 | 36.20 | 38.90 |\n\nFees are payable" in page

    book = load_file(fee_xlsx(tmp_path / "fees.xlsx"), "xlsx", [])
    assert book.paginated and len(book.pages) == 2 and book.title == "fees"  # one page per sheet
    assert book.pages[0].startswith("## Fees\n\n" + HEADER) and "| B | 20.00 | 21.75 | 23.40 |" in book.pages[0]
    assert "| Permit desk | 0123 456 |" in book.pages[1]

    pdf = load_file(fee_pdf(tmp_path / "fees.pdf"), "pdf", [])
    assert pdf.pages[0].index("set out below") < pdf.pages[0].index(HEADER) < pdf.pages[0].index("payable")

    semi = tmp_path / "semi.csv"
    semi.write_text("Category;2025\nA;12,50\nB;23,40\n")
    assert load_file(semi, "csv", []).pages[0] == "| Category | 2025 |\n|---|---|\n| A | 12,50 |\n| B | 23,40 |"


def test_only_pages_that_draw_lines_are_searched_for_tables(tmp_path: Path) -> None:
    from pypdf import PdfReader

    text_only = make_pdf(tmp_path / "t.pdf", ["Plain words on a page.\nAnd a second line of words."])
    ruled = fee_pdf(tmp_path / "f.pdf")
    contents = [PdfReader(f).pages[0].get_contents() for f in (text_only, ruled)]
    assert contents[0] is not None and contents[1] is not None
    assert not may_hold_table(contents[0].get_data()) and may_hold_table(contents[1].get_data())


def test_cells_are_escaped_and_ragged_rows_padded() -> None:
    assert markdown_table([["Name", "Note"], ["a|b", "two\nlines"], ["c"]]) == \
        "| Name | Note |\n|---|---|\n| a\\|b | two lines |\n| c |  |"
    assert markdown_table([[None, None], ["", ""]]) == ""


def test_long_table_chunks_never_cut_a_row_and_repeat_the_header(library: Library) -> None:
    rows = [["Category", "Description", "2024", "2025"]] + [
        [f"K{i}", f"permit for activity number {i} in the district", f"{i}.00", f"{i + 1}.50"] for i in range(60)]
    library({"big.csv": "\n".join(",".join(r) for r in rows) + "\n"})
    with library.store.engine.connect() as c:
        chunks = c.execute(select(s.chunks.c.text).order_by(s.chunks.c.ordinal)).scalars().all()
        page = c.execute(select(s.pages.c.text)).scalar()
    header = "| Category | Description | 2024 | 2025 |"
    assert len(chunks) > 5
    for text in chunks:
        assert header in text, text
        for line in text.split("\n"):
            assert not line or (line.startswith("|") and line.endswith("|")), line  # whole rows only
    assert all(f"| K{i} | permit for activity number {i} in the district |" in page for i in range(60))
    body = [line for line in page.split("\n") if line.startswith("| K")]
    assert len(body) == 60  # each row once; only the header repeats


def test_repeat_headers_leaves_short_tables_and_text_alone() -> None:
    table = markdown_table(FEES)
    text = f"Intro line.\n\n{table}\n\nAfter."
    assert repeat_headers(text, lambda t: len(t.split()), 1000) == text
    cut = repeat_headers(text, lambda t: len(t.split()), 22)
    parts = cut.split("\n\n")
    assert parts[0] == "Intro line." and parts[-1] == "After." and len(parts) > 3
    assert all(p.startswith(HEADER + "\n|---|") for p in parts[1:-1])


def test_spreadsheet_uploads_are_typed_by_their_content(tmp_path: Path) -> None:
    from ingest.uploads import save_upload, sniff

    data = fee_xlsx(tmp_path / "fees.xlsx").read_bytes()
    assert sniff(data) == "xlsx"
    assert save_upload(tmp_path / "up", "fees.xlsx", data, 2**20).suffix == ".xlsx"
    assert save_upload(tmp_path / "up", "fees.csv", b"Category,2025\nB,23.40\n", 2**20).suffix == ".csv"
