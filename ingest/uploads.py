"""Files uploaded through the UI: kept under the data folder, each in a folder named by its
content hash, under a sanitised name, so that two uploads never overwrite each other and no
name can reach outside the folder."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

from rag.errors import LoadError

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


def save_upload(folder: Path, name: str, data: bytes, max_bytes: int) -> Path:
    """Write one upload atomically; the same content uploaded again lands on the same path."""
    if len(data) > max_bytes:
        raise LoadError(f"{safe_name(name)}: larger than the {max_bytes // 2**20} MB upload limit")
    digest = hashlib.sha256(data).hexdigest()[:16]
    target_dir = folder / digest
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / safe_name(name)
    if not target.exists():
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target
