"""A cited page as a picture: the page image (a PDF page rendered by pypdfium2, or the image file's
page) and the boxes of the cited lines on it, as fractions of the image.

For a page OCR read, the boxes come from the stored word boxes (`page_ocr`), found by the cited
characters of the page text. For a text PDF they come from the PDF itself: pdfium finds the cited
lines in the page's text layer and gives their characters' boxes. Other formats have no page
picture (None). Reading the original file needs it to be where it was ingested from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select

from ingest.formats import doc_type_of
from rag import schema as s

if TYPE_CHECKING:
    from PIL.Image import Image

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the page, y downwards
VIEW_DPI = 110


@dataclass(frozen=True)
class CitedPage:
    page_no: int
    image: Image
    boxes: list[Box]  # one per cited line
    ocr_confidence: float | None  # the page's OCR confidence, None for a text layer


def ocr_summary(engine: Engine, document_ids: list[int]) -> dict[int, tuple[int, float]]:
    """document id -> (pages read by OCR, their mean confidence 0-100), for those of `document_ids`
    with any. One grouped query over the (small) OCR table, filtered here: a list of thousands of
    ids would exceed SQLite's parameter limit."""
    o = s.page_ocr.c
    wanted = set(document_ids)
    with engine.connect() as conn:
        rows = conn.execute(select(o.document_id, func.count(), func.avg(o.confidence)).group_by(o.document_id)).all()
    return {int(r[0]): (int(r[1]), round(float(r[2]), 1)) for r in rows if int(r[0]) in wanted}


def page_words(engine: Engine, document_id: int, page_no: int) -> tuple[float, list[list[float]]] | None:
    o = s.page_ocr.c
    with engine.connect() as conn:
        row = conn.execute(select(o.confidence, o.words).where(o.document_id == document_id,
                                                                 o.page_no == page_no)).first()
    return None if row is None else (float(row.confidence), list(row.words))


def span_boxes(words: list[list[float]], start: int, end: int) -> list[Box]:
    """The boxes of the words among `words` ([start, end, x0, y0, x1, y1]) that overlap the
    characters start..end, one box per line (words side by side joined)."""
    hits = [(w[2], w[3], w[4], w[5]) for w in words if w[0] < end and w[1] > start]
    return merge_lines(hits)


def merge_lines(boxes: list[Box]) -> list[Box]:
    """Boxes that overlap vertically by more than half the smaller height become one box."""
    lines: list[list[float]] = []
    for x0, y0, x1, y1 in sorted(boxes, key=lambda b: (b[1], b[0])):
        for line in lines:
            overlap = min(y1, line[3]) - max(y0, line[1])
            if overlap > 0.5 * min(y1 - y0, line[3] - line[1]):
                line[:] = [min(x0, line[0]), min(y0, line[1]), max(x1, line[2]), max(y1, line[3])]
                break
        else:
            lines.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in lines]


def page_image(doc: Any, path: Path, doc_type: str, page_no: int, dpi: int = VIEW_DPI) -> Image | None:
    """The page as a picture, or None (another format, a missing or unreadable file). `doc`: the
    PDF opened by `open_pdf` (None for an image file)."""
    try:
        if doc_type == "pdf":
            from ingest.scans import render_pdf_page

            return render_pdf_page(doc, page_no - 1, dpi).convert("RGB")
        if doc_type == "image":
            from PIL import Image, ImageOps, ImageSequence

            with Image.open(path) as im:
                for n, frame in enumerate(ImageSequence.Iterator(im), 1):
                    if n == page_no:
                        return (ImageOps.exif_transpose(frame) or frame).convert("RGB")
    except Exception:  # noqa: BLE001 - no picture is no loss: the text view stays
        return None
    return None


def text_pdf_boxes(pdf: Any, page_no: int, quotes: list[str]) -> list[Box]:
    """Boxes of the quoted text on a page of `pdf` (a pdfium document) with a text layer, line by
    line (pdfium's text and pypdf's differ in line breaks and spaces, so each line of a quote is
    found on its own)."""
    boxes: list[Box] = []
    page = pdf[page_no - 1]
    left, bottom, right, top = page.get_cropbox()
    width, height = right - left, top - bottom
    text = page.get_textpage()
    for quote in quotes:
        for line in (ln.strip() for ln in quote.split("\n")):
            if len(line) < 4:
                continue
            found = text.search(line, match_case=True).get_next()
            if not found:
                continue
            first, count = found
            for i in range(first, first + count):
                x0, y0, x1, y1 = text.get_charbox(i)
                if x1 > x0:
                    boxes.append(((x0 - left) / width, (top - y1) / height, (x1 - left) / width,
                                  (top - y0) / height))
    return merge_lines(boxes)


def cited_pages(engine: Engine, source: dict[str, Any], dpi: int = VIEW_DPI) -> list[CitedPage]:
    """The pages a source's quotes cite, with the cited lines' boxes; [] when there is no picture.
    A PDF is read and opened once for all its cited pages."""
    path = Path(source["path"])
    doc_type = doc_type_of(path) or ""
    if doc_type not in ("pdf", "image") or not path.is_file():
        return []
    by_page: dict[int, list[dict[str, Any]]] = {}
    for q in source.get("quotes", []):
        by_page.setdefault(int(q["page"]), []).append(q)
    pdf: Any = None
    if doc_type == "pdf":
        from ingest.scans import open_pdf

        try:
            pdf = open_pdf(path.read_bytes(), [])
        except Exception:  # noqa: BLE001 - no picture is no loss: the text view stays
            return []
    try:
        return [page for page_no, quotes in sorted(by_page.items())
                if (page := _cited_page(engine, source, pdf, path, doc_type, page_no, quotes, dpi))]
    finally:
        if pdf is not None:
            pdf.close()


def _cited_page(engine: Engine, source: dict[str, Any], pdf: Any, path: Path, doc_type: str, page_no: int,
                quotes: list[dict[str, Any]], dpi: int) -> CitedPage | None:
    image = page_image(pdf, path, doc_type, page_no, dpi)
    if image is None:
        return None
    stored = page_words(engine, int(source["document_id"]), page_no)
    if stored is not None:
        confidence, words = stored
        return CitedPage(page_no, image, [b for q in quotes for b in span_boxes(words, int(q["start"]), int(q["end"]))],
                         confidence)
    if doc_type != "pdf":
        return None
    try:
        boxes = text_pdf_boxes(pdf, page_no, [str(q["text"]) for q in quotes])
    except Exception:  # noqa: BLE001 - the page without highlights is still worth showing
        boxes = []
    return CitedPage(page_no, image, boxes, None)
