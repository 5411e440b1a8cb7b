"""Builders for test inputs: real PDFs (reportlab), DOCX (python-docx), encrypted PDFs (pypdf)."""

from __future__ import annotations

import io
from pathlib import Path


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    """A real PDF with one text block per page (lines wrapped by the caller's newlines)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=A4)
    if title:
        c.setTitle(title)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            for piece in _wrap(line, 90):
                c.drawString(50, y, piece)
                y -= 14
                if y < 40:
                    break
        c.showPage()
    c.save()
    return path


def _wrap(line: str, width: int) -> list[str]:
    words, out, cur = line.split(" "), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width and cur:
            out.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    out.append(cur)
    return out


def make_blank_pdf(path: Path, n_pages: int = 1) -> Path:
    from pypdf import PdfWriter

    w = PdfWriter()
    for _ in range(n_pages):
        w.add_blank_page(width=595, height=842)
    with open(path, "wb") as fh:
        w.write(fh)
    return path


def encrypt_pdf(src: Path, dst: Path, password: str) -> Path:
    from pypdf import PdfReader, PdfWriter

    w = PdfWriter(clone_from=PdfReader(src))
    w.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    with open(dst, "wb") as fh:
        w.write(fh)
    return dst


def make_docx(path: Path, heading: str, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    d = docx.Document()
    d.add_heading(heading, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    if table:
        t = d.add_table(rows=len(table), cols=len(table[0]))
        for i, row in enumerate(table):
            for j, cell in enumerate(row):
                t.cell(i, j).text = cell
    buf = io.BytesIO()
    d.save(buf)
    path.write_bytes(buf.getvalue())
    return path


LOREM = (
    "Falcons are birds of prey in the genus Falco. They have thin, tapered wings that let them "
    "change direction quickly. The peregrine falcon is the fastest animal on earth when it dives. "
)


def paragraph(topic: str, n: int = 3) -> str:
    """Distinct, sentence-shaped text about `topic`, n sentences long."""
    return " ".join(f"Sentence {i} explains how {topic} matters for the annual report of section {i}."
                    for i in range(n))
