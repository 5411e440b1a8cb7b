"""Tables as Markdown inside page text, and long tables cut so every piece carries its header.

Every reader that finds a table (PDF through pdfplumber's table finder, DOCX, HTML through
trafilatura, CSV, XLSX) writes it as a Markdown table: a header row, the `| --- |` rule, one line
per row. A cell is then retrievable with its row and column names, and the chunker (which treats a
line starting with `|` as a unit boundary) never cuts a row.

A table too long for one chunk is written as several tables, each starting with the header row
(`repeat_headers`), each small enough that the chunker keeps it whole: a chunk of a long table
always holds the header that names its columns. The repeated header is part of the stored page
text, so chunks stay exact slices of their page and citations still point at exact characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

_RULE = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+\s*$")
_ROW = re.compile(r"^\|.*\|\s*$")


def cell_text(value: object) -> str:
    """One cell on one line; a `|` inside it cannot end the cell."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(rows: Iterable[Sequence[object]]) -> str:
    """Rows (the first is the header) as a Markdown table; "" when there is nothing in it.
    Empty trailing columns and empty rows are dropped; short rows are padded."""
    cells = [[cell_text(v) for v in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max((max((i + 1 for i, v in enumerate(row) if v), default=0) for row in cells), default=0)
    if width == 0:
        return ""
    cells = [(row + [""] * width)[:width] for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, end) line indexes of each Markdown table: a row line, the rule, more row lines."""
    out, i = [], 0
    while i + 1 < len(lines):
        if _ROW.match(lines[i]) and _RULE.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and _ROW.match(lines[j]):
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


def _rewrite_tables(text: str, rewrite: Callable[[list[str], str, str], list[str]]) -> str:
    """`text` with the lines of each Markdown table replaced by `rewrite(table lines, line before,
    line after)` (the neighbours are "" at either end of the text)."""
    if "|" not in text:
        return text
    lines = text.split("\n")
    blocks = _blocks(lines)
    if not blocks:
        return text
    out: list[str] = []
    pos = 0
    for a, b in blocks:
        out += lines[pos:a]
        out += rewrite(lines[a:b], lines[a - 1] if a else "", lines[b] if b < len(lines) else "")
        pos = b
    out += lines[pos:]
    return "\n".join(out)


def set_apart(text: str) -> str:
    """Blank lines around each table, trailing spaces off its lines: a table is a paragraph of its
    own (trafilatura runs a table into the text around it)."""

    def apart(table: list[str], before: str, after: str) -> list[str]:
        return [""] * bool(before.strip()) + [line.rstrip() for line in table] + [""] * bool(after.strip())

    return _rewrite_tables(text, apart)


def repeat_headers(text: str, count_tokens: Callable[[str], int], budget: int) -> str:
    """`text` with every table longer than `budget` tokens written as several tables of at most
    `budget` tokens, each with the header row and rule, separated by blank lines."""

    def split(table: list[str], _before: str, _after: str) -> list[str]:
        header, rows = table[:2], table[2:]
        head_cost = count_tokens("\n".join(header))
        if head_cost + sum(count_tokens(r) for r in rows) <= budget:
            return table
        out: list[str] = []
        for i, part in enumerate(_parts(rows, count_tokens, max(1, budget - head_cost))):
            out += ([""] if i else []) + header + part
        return out

    return _rewrite_tables(text, split)


def _parts(rows: list[str], count_tokens: Callable[[str], int], budget: int) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    used = 0
    for row in rows:
        cost = count_tokens(row)
        if parts[-1] and used + cost > budget:
            parts.append([])
            used = 0
        parts[-1].append(row)
        used += cost
    return parts


# ---- PDF tables (pdfplumber's table finder) --------------------------------------------------
_NUM = rb"(-?\d*\.?\d+)"
#: A line segment (`x y m x y l`) and a rectangle (`x y w h re`) in a page's content stream.
_SEGMENT = re.compile(rb"(?<![\w.])" + rb"\s+".join([_NUM] * 2) + rb"\s+m\s+" + rb"\s+".join([_NUM] * 2) + rb"\s+l\b")
_RECT = re.compile(rb"(?<![\w.])" + rb"\s+".join([_NUM] * 4) + rb"\s+re\b")


def may_hold_table(content: bytes) -> bool:
    """Whether a page's content stream draws a grid: horizontal rules at three heights or more and
    vertical rules at three places or more (segments, or rectangles a point or two thick, as word
    processors draw them; a cell-sized rectangle gives both). pdfplumber's table finder (with its
    default "lines" strategy, it needs both) costs about as much as reading the page again, so only
    such pages are given to it; running text and most figures draw no such grid."""
    content = content[:4_000_000]
    rows: set[int] = set()
    cols: set[int] = set()
    for m in _SEGMENT.finditer(content):
        x0, y0, x1, y1 = (float(v) for v in m.groups())
        if abs(y0 - y1) < 0.5 and abs(x0 - x1) > 10:
            rows.add(round(y0))
        elif abs(x0 - x1) < 0.5 and abs(y0 - y1) > 5:
            cols.add(round(x0))
    for m in _RECT.finditer(content):
        x, y, w, h = (float(v) for v in m.groups())
        if abs(w) > 10:
            rows.update((round(y), round(y + h)) if abs(h) > 5 else (round(y),))
        if abs(h) > 5:
            cols.update((round(x), round(x + w)) if abs(w) > 10 else (round(x),))
    return len(rows) >= 3 and len(cols) >= 3


def pdf_table_pages(data: bytes, passwords: list[str], indexes: list[int]) -> dict[int, str]:
    """For each page (0-based) in `indexes` on which pdfplumber finds a table of at least two rows
    and two columns: the page's text with each table as Markdown, in reading order (text above,
    table, text below). Pages without one, or that pdfplumber cannot read, are left out."""
    import io

    import pdfplumber

    pdf = None
    for pw in ["", *passwords]:
        try:
            pdf = pdfplumber.open(io.BytesIO(data), password=pw)
            break
        except Exception:  # noqa: BLE001 - wrong password or a file pdfminer cannot parse
            continue
    if pdf is None:
        return {}
    out: dict[int, str] = {}
    with pdf:
        for i in indexes:
            try:
                text = _page_with_tables(pdf.pages[i])
            except Exception:  # noqa: BLE001 - the page keeps its plain text
                text = None
            if text:
                out[i] = text
    return out


def is_real_table(rows: list[list[str | None]]) -> bool:
    """A grid with text in it: two rows and two columns or more, a header of two named columns or
    more, and most cells filled (boxes around a figure, a form's empty grid or a frame around a
    paragraph make "tables" of empty cells)."""
    cells = [c for row in rows for c in row]
    filled = sum(1 for c in cells if c and c.strip())
    header = sum(1 for c in (rows[0] if rows else []) if c and c.strip())
    return len(rows) >= 2 and max(map(len, rows)) >= 2 and header >= 2 and filled >= 4 and filled >= 0.6 * len(cells)


def _page_with_tables(page: object) -> str | None:
    found = [(t, rows) for t in page.find_tables() if is_real_table(rows := t.extract())]  # type: ignore[attr-defined]
    tables = [(t, md) for t, rows in found if (md := markdown_table(rows))]
    if not tables:
        return None
    x0, top, x1, bottom = page.bbox  # type: ignore[attr-defined]
    parts: list[str] = []
    for table, md in sorted(tables, key=lambda tm: tm[0].bbox[1]):
        t_top, t_bottom = table.bbox[1], table.bbox[3]
        if t_top > top:
            parts.append(page.crop((x0, top, x1, t_top)).extract_text() or "")  # type: ignore[attr-defined]
        parts.append(md)
        top = max(top, t_bottom)
    if top < bottom:
        parts.append(page.crop((x0, top, x1, bottom)).extract_text() or "")  # type: ignore[attr-defined]
    return "\n\n".join(p.strip() for p in parts if p.strip())
