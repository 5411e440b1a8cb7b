"""Which files we read, by extension; the reader checks the content itself."""

from __future__ import annotations

from pathlib import Path

EXTENSIONS = {
    ".pdf": "pdf",
    ".txt": "text", ".text": "text", ".rst": "text", ".log": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".docx": "docx",
    # Tables, one page per sheet (ingest/sheets.py).
    ".csv": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx",
    # Pictures of pages, read by OCR (ingest/scans.py); a TIFF may hold many pages.
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image",
    ".bmp": "image", ".gif": "image", ".webp": "image",
}


def doc_type_of(path: Path) -> str | None:
    return EXTENSIONS.get(path.suffix.lower())

#: Pictures of text in formats Pillow cannot open without plugins.
OTHER_IMAGE_EXTENSIONS = frozenset({".heic", ".heif", ".avif", ".jp2"})


def skip_reason(path: Path, *, ocr: bool) -> str | None:
    """Why a file found in a folder is not read (None: it is read). One short phrase, shown
    grouped by type in the ingest summary. `ocr`: whether OCR is on (RAGQA_OCR); required, so that
    no caller can forget the setting and accept images that cannot be read."""
    if path.name.startswith("."):
        return "names starting with a dot are skipped"
    suffix = path.suffix.lower()
    if EXTENSIONS.get(suffix) == "image" and not ocr:
        return "images need OCR: RAGQA_OCR is off"
    if suffix in EXTENSIONS:
        return None
    if suffix in OTHER_IMAGE_EXTENSIONS:
        return "image format not read: save it as PNG, JPEG or TIFF"
    return "not a supported type"


def type_label(path: Path) -> str:
    """How a skipped file is grouped in the summary: its extension, or what kind of name it has."""
    if path.name.startswith("."):
        return "hidden file"
    return path.suffix.lower() or "no extension"
