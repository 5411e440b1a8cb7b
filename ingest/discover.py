"""Finding files, hashing them, and reading the password file."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ingest.formats import doc_type_of, skip_reason, type_label
from rag.errors import ConfigError


@dataclass(frozen=True)
class Candidate:
    path: Path  # absolute, resolved
    doc_type: str | None  # None: not a format we read
    explicit: bool  # named on the command line (not found in a folder walk)
    size: int = 0  # bytes, when discovered


def _candidate(path: Path, kind: str | None, explicit: bool) -> Candidate:
    try:
        size = path.stat().st_size
    except OSError:  # vanished or unreadable: hashing it will say so
        size = 0
    return Candidate(path, kind, explicit, size)


@dataclass(frozen=True)
class Skipped:
    """A file found in a folder and not read, and why."""

    path: Path
    reason: str


def discover(paths: list[Path], ocr: bool = True) -> tuple[list[Candidate], list[Skipped]]:
    """Files to consider, in a stable order, and the files in folders that were skipped
    (`ocr`: whether images are read)."""
    out: list[Candidate] = []
    seen: set[Path] = set()
    skipped: list[Skipped] = []
    for given in paths:
        if not given.exists():
            raise ConfigError(f"no such file or folder: {given}")
        root = given.resolve()
        if root.is_file():
            if root not in seen:
                seen.add(root)
                out.append(_candidate(root, doc_type_of(root), explicit=True))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath, name)
                kind = doc_type_of(path)
                reason = skip_reason(path, ocr=ocr) or (None if path.is_file() else "not a regular file")
                if reason is not None or kind is None:
                    skipped.append(Skipped(path, reason or "not a supported type"))
                    continue
                if path not in seen:
                    seen.add(path)
                    out.append(_candidate(path, kind, explicit=False))
    return out, skipped


def group_skipped(skipped: list[Skipped]) -> list[dict[str, str | int]]:
    """[{"type": ".png", "count": 2, "reason": ...}, ...], the most frequent first."""
    groups: dict[tuple[str, str], int] = {}
    for s in skipped:
        key = (type_label(s.path), s.reason)
        groups[key] = groups.get(key, 0) + 1
    ordered = sorted(groups.items(), key=lambda item: (-item[1], item[0]))
    return [{"type": label, "count": n, "reason": reason} for (label, reason), n in ordered]


def describe_skipped(by_type: list[dict[str, str | int]]) -> str:
    """"skipped 3: 2 .png (images need OCR: not enabled), 1 .pptx (not a supported type)"; "" for none."""
    if not by_type:
        return ""
    total = sum(int(g["count"]) for g in by_type)
    return f"skipped {total}: " + ", ".join(f"{g['count']} {g['type']} ({g['reason']})" for g in by_type)


def content_hash(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


class PasswordBook:
    """`FILENAME<TAB>PASSWORD` per line, `#` comments, no header. A name matches a file by its
    base name or by a trailing part of its path. Extra columns are ignored."""

    def __init__(self, entries: list[tuple[str, str]] | None = None) -> None:
        self.entries = entries or []

    @classmethod
    def read(cls, path: Path) -> PasswordBook:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"password file {path} is not UTF-8 text") from None
        entries = []
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#") or "\t" not in line:
                continue
            name, password = line.split("\t")[:2]
            entries.append((name.strip(), password))
        return cls(entries)

    def for_file(self, path: Path) -> list[str]:
        text = path.as_posix()
        return [pw for name, pw in self.entries
                if name and (name == path.name or text.endswith("/" + name.lstrip("/")))]
