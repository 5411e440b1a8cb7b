"""Files uploaded through the UI: kept under the data folder, each in a folder named by its
content hash, under a sanitised name, so that two uploads never overwrite each other and no
name can reach outside the folder."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.formats import EXTENSIONS
from rag.errors import LoadError

if TYPE_CHECKING:
    from ingest.pipeline import IngestSummary, Progress
    from rag.embedder import EmbeddingModelRef
    from rag.settings import Settings
    from rag.store import Store

_UNSAFE = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def safe_name(name: str) -> str:
    """A plain file name from whatever the browser sent: no folders, no control characters, no
    leading dots, at most 120 characters, the extension kept."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" ._") or "upload"
    stem, dot, ext = base.rpartition(".")
    if dot and 0 < len(ext) <= 10:
        return f"{stem[:110] or 'upload'}.{ext}"
    return base[:120]


_KIND_OF_SUFFIX = {".pdf": "pdf", ".docx": "docx", ".html": "text", ".htm": "text", ".txt": "text", ".md": "text",
                   ".markdown": "text", ".csv": "text", ".tsv": "text", ".xlsx": "xlsx", ".xlsm": "xlsx",
                   **{ext: "image" for ext, kind in EXTENSIONS.items() if kind == "image"}}


def _is_image(data: bytes) -> bool:
    """PNG, JPEG, TIFF, GIF, WebP, or a BMP whose header states its own size."""
    if data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a")):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[:2] == b"BM" and len(data) >= 26 and int.from_bytes(data[2:6], "little") == len(data)


def sniff(data: bytes) -> str:
    """What the bytes are, whatever the name says: pdf, docx, xlsx, image, text, or binary."""
    import io
    import zipfile

    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = set(z.namelist())
                return "docx" if "word/document.xml" in names else "xlsx" if "xl/workbook.xml" in names else "binary"
        except zipfile.BadZipFile:
            return "binary"
    if _is_image(data):
        return "image"
    head = data[:8192]
    if b"\x00" in head and not (head.startswith((b"\xff\xfe", b"\xfe\xff"))):  # UTF-16 has NULs
        return "binary"
    return "text"


def check_upload(name: str, data: bytes, max_bytes: int) -> None:
    """Refuse what is too big, of a type we do not read, or not what its name claims."""
    shown = safe_name(name)
    if len(data) > max_bytes:
        raise LoadError(f"{shown}: larger than the {max_bytes // 2**20} MB upload limit")
    suffix = Path(shown).suffix.lower()
    expected = _KIND_OF_SUFFIX.get(suffix)
    if expected is None:
        raise LoadError(f"{shown}: {suffix or 'no extension'} files are not supported "
                        "(PDF, DOCX, HTML, Markdown, text, CSV, XLSX, PNG, JPEG, TIFF)")
    actual = sniff(data)
    if actual != expected:
        what = {"pdf": "a PDF", "docx": "a DOCX", "xlsx": "an XLSX", "image": "an image"}.get(actual, actual)
        raise LoadError(f"{shown}: the content is {what}, not what a {suffix} file holds")


def save_upload(folder: Path, name: str, data: bytes, max_bytes: int) -> Path:
    """Write one upload atomically; the same content uploaded again lands on the same path."""
    check_upload(name, data, max_bytes)
    digest = hashlib.sha256(data).hexdigest()[:16]
    target_dir = folder / digest
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / safe_name(name)
    if not target.exists():
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target


def ingest_uploads(paths: list[Path], store: Store, settings: Settings, ref: EmbeddingModelRef, *, user: str,
                   collection: str, files: list[str], load_embedder: Callable[[], Any],
                   progress: Progress | None = None, **audit: Any) -> IngestSummary:
    """Ingest saved uploads into `collection` and record who uploaded `files` (the names as sent):
    what the Library page's upload and the API's POST /v1/documents share."""
    from ingest.pipeline import ingest
    from rag.audit import record

    summary = ingest(paths, store, settings, ref, collection=collection, load_embedder=load_embedder,
                     progress=progress)
    record(store.engine, user, "upload", collection=collection, files=files, changes=summary.changes,
           failed=len(summary.failed), **audit)
    return summary
