"""Version 6: how OCR read each scanned page (engine, confidence, word boxes).
Self-contained: the table is defined here as it was at version 6."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Connection, Float, ForeignKey, Integer, MetaData, String, Table

_md = MetaData()
# Only what the foreign key below refers to; version 1 created the table.
Table("documents", _md, Column("id", Integer, primary_key=True))

_page_ocr = Table(
    "page_ocr", _md,
    Column("document_id", Integer, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    Column("page_no", Integer, primary_key=True, autoincrement=False),
    Column("engine", String(40), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("words", JSON, nullable=False),
)


def upgrade(conn: Connection) -> None:
    _md.create_all(conn, tables=[_page_ocr])
