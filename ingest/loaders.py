"""Readers: bytes of one file -> page texts and a title. Pure functions of their input; every
failure is a LoadError with a one-line reason."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.tables import markdown_table, may_hold_table, pdf_table_pages, set_apart
from ingest.titles import choose_title, first_line
from rag.errors import LoadError, one_line

if TYPE_CHECKING:
    from pypdf import PageObject, PasswordType, PdfReader

    from rag.records import PageOcr

_SNIFF = 8192
_PREFERRED = ("utf_8", "cp1252", "latin_1", "iso8859_15")


@dataclass(frozen=True)
class LoadedFile:
    title: str  # the file's own title (metadata) as a reader finds it; `load_file` gives the final one
    pages: list[str]
    paginated: bool
    warnings: tuple[str, ...] = ()
    heading: str = ""  # the document's first heading, where the format marks one
    ocr: dict[int, PageOcr] = field(default_factory=dict)  # 1-based page number -> how OCR read it


@dataclass(frozen=True)
class ReadOptions:
    """What the settings say about reading (RAGQA_OCR, RAGQA_OCR_LANGUAGES)."""

    ocr: bool = True
    ocr_languages: str = "eng"


def load_file(path: Path, doc_type: str, passwords: list[str], options: ReadOptions | None = None) -> LoadedFile:
    options = options or ReadOptions()
    data = path.read_bytes()
    if not data.strip():
        raise LoadError("empty file")
    if doc_type == "pdf":
        loaded = read_pdf(data, passwords, options)
    elif doc_type == "image":
        loaded = read_image(data, options)
    else:
        loaded = _READERS[doc_type](data)
    if not any(p.strip() for p in loaded.pages):
        raise LoadError(_no_text_reason(doc_type, options, loaded.warnings))
    # A spreadsheet's header row or sheet name is not a title: the file's name is.
    heading = "" if doc_type in ("csv", "xlsx") else (
        loaded.heading or next((h for h in map(first_line, loaded.pages) if h), ""))
    return LoadedFile(choose_title(loaded.title, heading, path.name), loaded.pages, loaded.paginated,
                      loaded.warnings, ocr=loaded.ocr)


def _no_text_reason(doc_type: str, options: ReadOptions, warnings: tuple[str, ...]) -> str:
    if warnings:  # what went wrong on the pages says more than "no text"
        return "no extractable text: " + "; ".join(warnings[:3])
    if doc_type == "pdf":
        return "no extractable text" + (" (OCR found none either)" if options.ocr else
                                        " (a scanned PDF needs OCR: RAGQA_OCR is off)")
    if doc_type == "image":
        return "no text found by OCR"
    return "no extractable text"


# ---- images --------------------------------------------------------------------------------
def read_image(data: bytes, options: ReadOptions) -> LoadedFile:
    if not options.ocr:
        raise LoadError("an image needs OCR: RAGQA_OCR is off")
    from ingest.scans import read_image as ocr_image_file

    scan = ocr_image_file(data, options.ocr_languages)
    return LoadedFile("", scan.pages, paginated=True, warnings=tuple(scan.warnings), ocr=scan.ocr)


# ---- spreadsheets --------------------------------------------------------------------------
def read_csv(data: bytes) -> LoadedFile:
    from ingest.sheets import read_csv as csv_pages

    pages, warnings = csv_pages(_normalise_newlines(decode_text(data)))
    return LoadedFile("", pages, paginated=False, warnings=tuple(warnings))


def read_xlsx(data: bytes) -> LoadedFile:
    from ingest.sheets import read_xlsx as sheet_pages

    title, pages, warnings = sheet_pages(data)
    return LoadedFile(title, pages, paginated=True, warnings=tuple(warnings))


# ---- text ----------------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """Detect the encoding (BOMs, then charset-normalizer); refuse binary data."""
    from charset_normalizer import from_bytes

    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                raise LoadError(f"text claims {codec} but does not decode") from None
    if b"\x00" in data[:_SNIFF]:
        raise LoadError("binary content, not text")
    try:
        return data.decode("utf-8")  # the common case, and exact
    except UnicodeDecodeError:
        pass
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise LoadError("cannot decode text: unknown encoding or binary content")
    # Single-byte code pages often tie; the detector cannot know that Western Windows text is by
    # far the most common legacy input, so break ties in its favour.
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    best = next((m for pref in _PREFERRED for m in tied if m.encoding == pref), best)
    text = str(best)
    if _control_share(text) > 0.05:
        raise LoadError("binary content, not text")
    return text


def _control_share(text: str) -> float:
    sample = text[:_SNIFF]
    bad = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return bad / max(1, len(sample))


def _normalise_newlines(text: str) -> str:
    # Form feeds become newlines: PAGE_SEPARATOR alone marks page breaks in a document's text.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\f", "\n")


def read_text(data: bytes) -> LoadedFile:
    return LoadedFile("", [_normalise_newlines(decode_text(data))], paginated=False)


_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def read_markdown(data: bytes) -> LoadedFile:
    text = _normalise_newlines(decode_text(data))
    m = _MD_HEADING.search(text)
    return LoadedFile("", [text], paginated=False, heading=m.group(1) if m else "")


# ---- HTML ----------------------------------------------------------------------------------
def read_html(data: bytes) -> LoadedFile:
    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    html = decode_text(data)
    text = trafilatura.extract(html, output_format="txt", include_comments=False, include_tables=True,
                               favor_recall=True, deduplicate=False)
    if not text or not text.strip():
        # Too little for boilerplate detection (a short page): take all visible text.
        text = trafilatura.html2txt(html)
    meta = trafilatura.extract_metadata(html)
    title = (meta.title if meta and meta.title else "") or ""
    # trafilatura writes tables as Markdown tables; set them apart as paragraphs of their own.
    return LoadedFile(title, [set_apart(_normalise_newlines(text or ""))], paginated=False)


# ---- DOCX ----------------------------------------------------------------------------------
def read_docx(data: bytes) -> LoadedFile:
    try:
        return _read_docx(data)
    except LoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged zip or XML surfaces as any of a dozen types
        # (zlib.error, BadZipFile, XMLSyntaxError, KeyError, ...): one reason for the user.
        raise LoadError(f"not a valid DOCX file ({type(exc).__name__})") from None


def _read_docx(data: bytes) -> LoadedFile:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(data))
    parts: list[str] = []
    first_heading = ""
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            style = (block.style.name if block.style is not None else "") or ""
            if text and style.startswith("Heading"):
                level = int(style.split()[-1]) if style.split()[-1].isdigit() else 1
                first_heading = first_heading or text
                text = "#" * min(level, 6) + " " + text
            if text:
                parts.append(text)
        elif isinstance(block, Table):
            table = markdown_table([c.text for c in row.cells] for row in block.rows)
            if table:
                parts.append(table)
    return LoadedFile(document.core_properties.title or "", ["\n\n".join(parts)], paginated=False,
                      heading=first_heading)


# ---- PDF -----------------------------------------------------------------------------------
def read_pdf(data: bytes, passwords: list[str], options: ReadOptions | None = None) -> LoadedFile:
    try:
        return _read_pdf(data, passwords, options or ReadOptions())
    except LoadError:
        raise
    except NotImplementedError as exc:  # pypdf's word for an encryption scheme it lacks
        raise LoadError(f"encrypted PDF: unsupported encryption ({one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - fuzzing finds KeyError, LimitReachedError, AttributeError...
        raise LoadError(f"damaged PDF: {type(exc).__name__}: {one_line(exc)}") from None


def _read_pdf(data: bytes, passwords: list[str], options: ReadOptions) -> LoadedFile:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # it narrates every repair it makes
    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF" not in data[:1024]:
        raise LoadError("not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader, passwords, PasswordType)
        n_pages = len(reader.pages)
    except FileNotDecryptedError:
        raise LoadError("encrypted PDF: no given password opens it") from None
    except PdfReadError as exc:
        raise LoadError(f"damaged PDF: {one_line(exc)}") from None
    if n_pages == 0:
        raise LoadError("PDF has no pages")
    pages: list[str] = []
    unreadable = 0
    ruled: list[int] = []  # pages that draw a grid: pdfplumber looks for tables on these only
    for i, page in enumerate(reader.pages):
        try:
            pages.append(_normalise_newlines(page.extract_text() or ""))
        except Exception:  # noqa: BLE001 - a damaged page must not cost the others
            pages.append("")
            unreadable += 1
        if pages[-1].strip() and _draws_lines(page):
            ruled.append(i)
    if ruled:
        for i, text in pdf_table_pages(data, passwords, ruled).items():
            pages[i] = _normalise_newlines(text)
    ocr: dict[int, PageOcr] = {}
    ocr_warnings: list[str] = []
    if options.ocr:  # OCR's text is kept as read: its word boxes point into it
        from ingest.scans import ocr_pdf_pages

        scan = ocr_pdf_pages(data, passwords, pages, options.ocr_languages)
        pages, ocr, ocr_warnings = scan.pages, scan.ocr, scan.warnings
    # Pages pypdf could not read have no text, so OCR was given them: once it read any, it speaks for them.
    unread = [f"{unreadable} of {n_pages} pages could not be read"] if unreadable and not ocr else []
    return LoadedFile(_pdf_title(reader), pages, paginated=True, warnings=(*unread, *ocr_warnings), ocr=ocr)


def _draws_lines(page: PageObject) -> bool:
    try:
        contents = page.get_contents()
        return contents is not None and may_hold_table(contents.get_data())
    except Exception:  # noqa: BLE001 - a damaged content stream holds no table we could read
        return False


def _decrypt(reader: PdfReader, passwords: list[str], password_type: type[PasswordType]) -> None:
    for pw in ["", *passwords]:  # the empty user password first: many PDFs only restrict printing
        try:
            if reader.decrypt(pw) != password_type.NOT_DECRYPTED:
                return
        except Exception as exc:  # noqa: BLE001 - pypdf raises several kinds here
            if "cryptography" in str(exc) or "AES" in str(exc):
                raise LoadError(f"encrypted PDF: {one_line(exc)}") from None
    raise LoadError("encrypted PDF: no given password opens it (see --password-file)")


def _pdf_title(reader: PdfReader) -> str:
    """The metadata title as it stands; `load_file` decides whether it is a title."""
    try:
        return str((reader.metadata.title or "") if reader.metadata else "")
    except Exception:  # noqa: BLE001 - broken metadata is not worth failing for
        return ""


_READERS: dict[str, Callable[..., LoadedFile]] = {
    "text": read_text, "markdown": read_markdown, "html": read_html, "docx": read_docx, "csv": read_csv,
    "xlsx": read_xlsx}
