"""Which files we read, by extension; the reader checks the content itself."""

from __future__ import annotations

from pathlib import Path

EXTENSIONS = {
    ".pdf": "pdf",
    ".txt": "text", ".text": "text", ".rst": "text", ".log": "text", ".csv": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".docx": "docx",
}


def doc_type_of(path: Path) -> str | None:
    return EXTENSIONS.get(path.suffix.lower())

#: Files people keep beside documents that are pictures of text: read once OCR exists.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp", ".heic"})


def skip_reason(path: Path) -> str | None:
    """Why a file found in a folder is not read (None: it is read). One short phrase, shown
    grouped by type in the ingest summary."""
    if path.name.startswith("."):
        return "names starting with a dot are skipped"
    suffix = path.suffix.lower()
    if suffix in EXTENSIONS:
        return None
    if suffix in IMAGE_EXTENSIONS:
        return "images need OCR: not enabled"
    return "not a supported type"


def type_label(path: Path) -> str:
    """How a skipped file is grouped in the summary: its extension, or what kind of name it has."""
    if path.name.startswith("."):
        return "hidden file"
    return path.suffix.lower() or "no extension"
