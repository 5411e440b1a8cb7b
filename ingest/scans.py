"""Pictures of pages: image files (PNG, JPEG, TIFF with any number of pages, ...) and the pages of a
PDF that have no text layer, read by OCR (`ingest.ocr`); and PDF pages rendered as images
(pypdfium2), for OCR and for showing a cited page.

Only the pages that need it cost anything: a PDF page whose text layer holds text is never
rendered here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.ocr import OCR_DPI, try_ocr
from rag.errors import LoadError, one_line
from rag.records import PageOcr

if TYPE_CHECKING:
    from PIL.Image import Image

#: A PDF page with fewer visible characters than this in its text layer is treated as a scan (a
#: scanner's stamp or a page number is not the page's text).
MIN_TEXT_CHARS = 20


@dataclass
class ScanResult:
    pages: list[str]
    ocr: dict[int, PageOcr] = field(default_factory=dict)  # 1-based page number -> its OCR
    warnings: list[str] = field(default_factory=list)


def _frames(data: bytes) -> Iterator[Image]:
    """Each page of an image file, loaded; a file Pillow cannot decode is a LoadError."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError:
        raise LoadError("image too large to read (more than Pillow's pixel limit)") from None
    except UnidentifiedImageError:
        raise LoadError("not a readable image (unknown or damaged image data)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LoadError(f"not a readable image ({one_line(exc, 120)})") from None
    yield image.copy()
    if getattr(image, "n_frames", 1) > 1:
        for n, frame in enumerate(ImageSequence.Iterator(image)):
            if n == 0:
                continue
            frame.load()  # an error here is the page's own: the caller keeps the others
            yield frame.copy()


def read_image(data: bytes, languages: str) -> ScanResult:
    """Every page of an image file through OCR; a page that fails is left empty with a warning."""
    out = ScanResult([])
    frames = _frames(data)
    while True:
        page_no = len(out.pages) + 1
        try:
            frame = next(frames)
        except StopIteration:
            break
        except LoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged later page of a TIFF: keep those before it
            out.warnings.append(f"page {page_no}: unreadable image data ({one_line(exc, 120)}); later pages lost")
            break
        page, warning = try_ocr(frame, languages, page_no)
        out.pages.append(page.text if page else "")
        if page is not None and page.text.strip():
            out.ocr[page_no] = page
        if warning:
            out.warnings.append(warning)
    return out


def open_pdf(data: bytes, passwords: list[str]) -> object:
    """The PDF in pdfium, opened with the first password that works."""
    import pypdfium2 as pdfium

    last: Exception | None = None
    for pw in ["", *passwords]:
        try:
            return pdfium.PdfDocument(data, password=pw or None)
        except pdfium.PdfiumError as exc:
            last = exc
    raise LoadError(f"PDF renderer cannot open the file ({one_line(last) if last else 'no password opens it'})")


def render_pdf_page(pdf: object, page_index: int, dpi: int = OCR_DPI) -> Image:
    page = pdf[page_index]  # type: ignore[index]
    try:
        return page.render(scale=dpi / 72, grayscale=True).to_pil()
    finally:
        page.close()


def _visible(text: str) -> int:
    return sum(not ch.isspace() for ch in text)


def ocr_pdf_pages(data: bytes, passwords: list[str], pages: list[str], languages: str) -> ScanResult:
    """`pages` (a PDF's text layer, page by page) with every page that has no text replaced by
    its OCR. A page that cannot be rendered or read stays empty, with a warning."""
    out = ScanResult(list(pages))
    need = [i for i, text in enumerate(pages) if _visible(text) < MIN_TEXT_CHARS]
    if not need:
        return out
    try:
        pdf = open_pdf(data, passwords)
    except LoadError as exc:
        out.warnings.append(f"{len(need)} pages without text not OCR'd: {exc}")
        return out
    try:
        for i in need:
            try:
                image = render_pdf_page(pdf, i)
            except Exception as exc:  # noqa: BLE001 - pdfium refuses a damaged page: that page only
                out.warnings.append(f"page {i + 1}: cannot be rendered for OCR ({one_line(exc, 120)})")
                continue
            try:
                page, warning = try_ocr(image, languages, i + 1)
            except LoadError as exc:  # no OCR engine or language data: the text pages still count
                out.warnings.append(f"{len(need)} pages without text not OCR'd: {exc}")
                break
            if warning:
                out.warnings.append(warning)
            if page is not None and _visible(page.text) > len(pages[i].strip()):
                out.pages[i] = page.text
                out.ocr[i + 1] = page
    finally:
        pdf.close()  # type: ignore[attr-defined]
    return out
