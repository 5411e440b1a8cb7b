"""Ranked chunks -> the passages a user reads: no two overlapping pieces of one text, and
neighbouring chunks of one document joined into one passage (it reads as the document does).

`plan_passages` is pure; `load_passages` fetches what it needs from SQL around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from rag import schema as s


@dataclass(frozen=True)
class ChunkRow:
    id: int
    document_id: int
    ordinal: int
    text: str
    char_start: int
    char_end: int
    page_start: int
    page_end: int
    page_char_start: int
    page_char_end: int


@dataclass(frozen=True)
class Passage:
    document_id: int
    collection: str
    title: str
    path: str
    doc_type: str
    chunk_ids: tuple[int, ...]
    text: str
    score: float
    char_start: int  # into the document text
    char_end: int
    page_start: int
    page_end: int
    page_char_start: int  # into page_start's text
    page_char_end: int  # into page_end's text

    @property
    def pages(self) -> str:
        if self.page_start == self.page_end:
            return str(self.page_start)
        return f"{self.page_start}-{self.page_end}"

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["chunk_ids"] = list(self.chunk_ids)
        return out


@dataclass
class _Group:
    document_id: int
    chunks: list[ChunkRow]
    score: float

    def reaches(self, row: ChunkRow) -> bool:
        """Next to or overlapping this group, on a page the group already covers."""
        first, last = self.chunks[0], self.chunks[-1]
        if row.ordinal == last.ordinal + 1:
            return row.page_start == last.page_end
        if row.ordinal == first.ordinal - 1:
            return row.page_end == first.page_start
        return False

    def overlaps(self, row: ChunkRow) -> bool:
        return row.char_start < self.chunks[-1].char_end and row.char_end > self.chunks[0].char_start


def plan_passages(ranked: Sequence[tuple[ChunkRow, float]], k: int, max_chunks: int = 3) -> list[_Group]:
    """Groups of chunks, one per passage, best first, at most k. A chunk next to a passage
    already chosen joins it (up to max_chunks per passage; a chunk between two passages joins
    them into one); a chunk overlapping one it cannot join is left out, so no text appears twice."""
    groups: list[_Group] = []
    for row, score in ranked:
        mine = [g for g in groups if g.document_id == row.document_id]
        homes = [g for g in mine if g.reaches(row)]  # one or two: a chunk can bridge two groups
        if homes and sum(len(g.chunks) for g in homes) < max_chunks:
            home = homes[0]  # the better-ranked one: groups are kept best first
            for other in homes[1:]:
                home.chunks += other.chunks
                groups.remove(other)
            home.chunks.append(row)
            home.chunks.sort(key=lambda r: r.ordinal)
            continue
        if any(g.overlaps(row) for g in mine):
            continue
        if len(groups) == k:
            break
        groups.append(_Group(row.document_id, [row], score))
    return groups


def stitch(chunks: Sequence[ChunkRow], gap_text: Any = None) -> str:
    """The document text from the first chunk's start to the last one's end. Chunks are slices
    of that text: overlapping ones are joined where they overlap; a gap between two (whitespace
    that trimming removed) is filled by `gap_text(row_before, row_after)`."""
    text = chunks[0].text
    end = chunks[0].char_end
    for prev, row in zip(chunks, chunks[1:]):
        if row.char_start <= end:
            text += row.text[end - row.char_start:]
        else:
            text += gap_text(prev, row) + row.text
        end = row.char_end
    return text


def load_passages(engine: Engine, ranked_ids: np.ndarray, scores: np.ndarray, k: int,
                  max_chunks: int = 3) -> list[Passage]:
    """The top k passages for chunk ids ranked best first."""
    window = ranked_ids[: max(4 * k, k + 20)].tolist()  # enough to fill k after merging
    rows = _chunk_rows(engine, window)
    ranked = [(rows[c], float(sc)) for c, sc in zip(window, scores.tolist()) if c in rows]
    groups = plan_passages(ranked, k, max_chunks)
    docs = _documents(engine, {g.document_id for g in groups})
    out = []
    for g in groups:
        first, last = g.chunks[0], g.chunks[-1]
        doc = docs[g.document_id]
        text = stitch(g.chunks, lambda a, b: _page_slice(engine, a.document_id, a.page_end, a.page_char_end,
                                                           b.page_char_start))
        out.append(Passage(
            document_id=g.document_id, collection=doc["collection"], title=doc["title"], path=doc["path"],
            doc_type=doc["doc_type"], chunk_ids=tuple(r.id for r in g.chunks), text=text, score=g.score,
            char_start=first.char_start, char_end=last.char_end, page_start=first.page_start,
            page_end=last.page_end, page_char_start=first.page_char_start, page_char_end=last.page_char_end,
        ))
    return out


def _chunk_rows(engine: Engine, ids: list[int]) -> dict[int, ChunkRow]:
    c = s.chunks.c
    cols = [c.id, c.document_id, c.ordinal, c.text, c.char_start, c.char_end, c.page_start, c.page_end,
            c.page_char_start, c.page_char_end]
    with engine.connect() as conn:
        return {r.id: ChunkRow(*r) for r in conn.execute(select(*cols).where(c.id.in_(ids)))}


def _documents(engine: Engine, ids: set[int]) -> dict[int, dict[str, Any]]:
    d = s.documents.c
    q = (select(d.id, d.title, d.path, d.doc_type, s.collections.c.name.label("collection"))
         .join(s.collections, s.collections.c.id == d.collection_id).where(d.id.in_(ids)))
    with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(q)}


def _page_slice(engine: Engine, document_id: int, page_no: int, start: int, end: int) -> str:
    p = s.pages.c
    with engine.connect() as conn:
        # substr counts characters from 1 in SQLite and PostgreSQL alike.
        piece = conn.execute(select(func.substr(p.text, start + 1, end - start))
                             .where(p.document_id == document_id, p.page_no == page_no)).scalar()
    return piece or ""
