"""Version 1: the first schema. Self-contained: the tables are defined here as they were at version 1,
so later changes to `rag.schema` cannot change what this step builds."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

_md = MetaData()

Table(
    "schema_version", _md,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)
# sqlite_autoincrement: chunk ids are FAISS ids, so SQLite must never reuse a rowid.
Table(
    "collections", _md,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)
Table(
    "documents", _md,
    Column("id", Integer, primary_key=True),
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("doc_type", String(20), nullable=False),
    Column("pages", Integer),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("error", Text),
    Column("duplicate_of", Integer, ForeignKey("documents.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_id", "path", name="uq_documents_collection_path"),
    Index("ix_documents_hash", "collection_id", "content_hash"),
    sqlite_autoincrement=True,
)
Table(
    "pages", _md,
    Column("document_id", Integer, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    Column("page_no", Integer, primary_key=True, autoincrement=False),
    Column("text", Text, nullable=False),
)
Table(
    "chunks", _md,
    Column("id", Integer, primary_key=True),
    Column("document_id", Integer, ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("n_tokens", Integer, nullable=False),
    Column("char_start", Integer, nullable=False),
    Column("char_end", Integer, nullable=False),
    Column("page_start", Integer, nullable=False),
    Column("page_end", Integer, nullable=False),
    Column("page_char_start", Integer, nullable=False),
    Column("page_char_end", Integer, nullable=False),
    Column("embedding_model", String(200), nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Index("ix_chunks_document", "document_id", "ordinal"),
    sqlite_autoincrement=True,
)
Table(
    "ingest_runs", _md,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),
    Column("collection", String(200), nullable=False),
    Column("paths", JSON, nullable=False),
    Column("summary", JSON),
    Column("seconds", Float),
    sqlite_autoincrement=True,
)
_index_state = Table(
    "index_state", _md,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("generation", Integer, nullable=False),
    Column("embedding_model", String(200)),
    Column("dim", Integer),
    Column("chunk_count", Integer, nullable=False),
)


def upgrade(conn: Connection) -> None:
    _md.create_all(conn)
    conn.execute(_index_state.insert().values(id=1, generation=0, chunk_count=0))
