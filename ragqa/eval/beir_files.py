"""Reading a BEIR-format folder: `corpus.jsonl`, `queries.jsonl` and `qrels/SPLIT.tsv`; writing its
corpus out as one text file per entry, so the real ingest pipeline can take it."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from ragqa.eval.metrics import Qrels


@dataclass(frozen=True)
class BeirSet:
    corpus: Path
    queries: dict[str, str]
    qrels: Qrels


def read_beir(folder: Path, split: str) -> BeirSet:
    corpus, queries_file = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_file = folder / "qrels" / f"{split}.tsv"
    for f in (corpus, queries_file, qrels_file):
        if not f.is_file():
            raise ConfigError(f"not a BEIR folder: {f} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_file, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError:
                raise ConfigError(f"{qrels_file.name}: bad relevance {row[2]!r} for query {row[0]}") from None
    queries = {}
    for obj in _jsonl(queries_file):
        if str(obj["_id"]) in qrels:
            queries[str(obj["_id"])] = str(obj.get("text", ""))
    missing = set(qrels) - set(queries)
    if missing:
        raise ConfigError(f"{len(missing)} judged queries are not in queries.jsonl (e.g. {sorted(missing)[0]})")
    return BeirSet(corpus, queries, qrels)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{path.name} line {n} is not JSON") from None


def corpus_entries(corpus: Path) -> Iterator[tuple[str, str, str]]:
    """(id, title, text) of each corpus entry, stripped."""
    for n, obj in enumerate(_jsonl(corpus)):
        if not isinstance(obj, dict) or "_id" not in obj:
            raise ConfigError(f"{corpus.name}: entry {n + 1} has no _id")
        yield str(obj["_id"]), str(obj.get("title") or "").strip(), str(obj.get("text") or "").strip()


def write_corpus(corpus: Path, out: Path) -> dict[str, str]:
    """One text file per corpus entry (title, blank line, text); returns file path -> corpus id.
    Files already holding the same text are left alone, so a kept work dir re-ingests nothing."""
    out.mkdir(parents=True, exist_ok=True)
    owners: dict[str, str] = {}
    for n, (entry_id, title, text) in enumerate(corpus_entries(corpus)):
        body = f"{title}\n\n{text}\n" if title else f"{text}\n"
        path = out / f"{n // 1000:04d}" / f"{n:08d}.txt"
        path.parent.mkdir(exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
        owners[str(path.resolve())] = entry_id
    return owners
