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
