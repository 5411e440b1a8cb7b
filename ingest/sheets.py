"""Spreadsheets as tables: a CSV file is one page holding one Markdown table; an XLSX workbook is
one page per sheet (the sheet's name as a heading, then its table). The first non-empty row is
taken as the header, as people lay sheets out."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence

from ingest.tables import markdown_table
from rag.errors import LoadError, one_line

#: Rows read from one sheet at most: past this a "document" is a database export, and a reader
#: that tried would run into the reader's memory cap anyway; the rest is dropped with a warning.
MAX_ROWS = 100_000


def _value(v: object) -> object:
    """Dates without a time of day as dates (2025-01-31, not 2025-01-31 00:00:00)."""
    if isinstance(v, dt.datetime) and v.time() == dt.time(0):
        return v.date().isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return v


def _shown(cell: object) -> object:
    """A number as its cell's format shows it (2 decimals for `0.00`, `#,##0.00`): 12.5 -> 12.50."""
    value = getattr(cell, "value", None)
    fmt = str(getattr(cell, "number_format", "") or "").split(";")[0]
    if isinstance(value, int | float) and not isinstance(value, bool) and "." in fmt:
        decimals = len(fmt.split(".", 1)[1]) - len(fmt.split(".", 1)[1].lstrip("0"))
        if decimals and "%" in fmt:
            return f"{100 * value:.{decimals}f}%"
        if decimals:
            return f"{value:.{decimals}f}"
    return value


def _rows(rows: Iterable[Sequence[object]], warnings: list[str], where: str) -> list[list[object]]:
    out: list[list[object]] = []
    for n, row in enumerate(rows):
        if n >= MAX_ROWS:
            warnings.append(f"{where}: only the first {MAX_ROWS} rows were read")
            break
        out.append([_value(v) for v in row])
    return out


def read_csv(text: str) -> tuple[list[str], list[str]]:
    """One page: the file's table. Delimiter sniffed (comma, semicolon, tab, pipe)."""
    sample = text[:16384]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    warnings: list[str] = []
    try:
        rows = _rows(csv.reader(io.StringIO(text), dialect), warnings, "the file")
    except csv.Error as exc:
        raise LoadError(f"not a readable CSV file ({one_line(exc)})") from None
    return [markdown_table(rows)], warnings


def read_xlsx(data: bytes) -> tuple[str, list[str], list[str]]:
    """(workbook title, one page per sheet, warnings). Cached values of formulas are read, as
    Excel last showed them."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged zip or XML surfaces as many types
        raise LoadError(f"not a valid XLSX file ({type(exc).__name__})") from None
    pages: list[str] = []
    warnings: list[str] = []
    try:
        for sheet in book.worksheets:
            rows = ([_shown(c) for c in row] for row in sheet.iter_rows())
            table = markdown_table(_rows(rows, warnings, f"sheet {sheet.title!r}"))
            pages.append(f"## {sheet.title}\n\n{table}" if table else "")
        title = book.properties.title or ""
    finally:
        book.close()
    return title, pages, warnings
