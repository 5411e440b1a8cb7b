"""The current SQL schema (SQLAlchemy Core). Migrations in `rag.migrations` build exactly this
(each step defines its own tables, so editing this file never changes a released step; a change here
needs a new step); tests/test_migrations.py compares the two on SQLite and PostgreSQL.

Vectors live twice on purpose: as float32 blobs in `chunks.embedding` (the truth, transactional)
and in a FAISS file named by `index_state.generation` (the fast copy). `ragqa check --repair`
rebuilds the FAISS file from the blobs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
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

metadata = MetaData()

# SQLite reuses rowids after deletes unless AUTOINCREMENT is asked for; chunk ids are FAISS ids,
# so they must never come back.
_ids: dict[str, Any] = {"sqlite_autoincrement": True}

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    **_ids,
)

documents = Table(
    "documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("collection_id", ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("doc_type", String(20), nullable=False),
    Column("pages", Integer),  # page count for paginated formats (PDF); NULL otherwise
    Column("version", Integer, nullable=False),
    # ready: searchable; failed: never read successfully (error says why);
    # duplicate: same content as `duplicate_of`, stored once.
    Column("status", String(20), nullable=False),
    Column("error", Text),
    Column("duplicate_of", ForeignKey("documents.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("collection_id", "path", name="uq_documents_collection_path"),
    Index("ix_documents_hash", "collection_id", "content_hash"),
    **_ids,
)

pages = Table(
    "pages",
    metadata,
    Column("document_id", ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    Column("page_no", Integer, primary_key=True, autoincrement=False),  # 1-based
    Column("text", Text, nullable=False),
)

chunks = Table(
    "chunks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("document_id", ForeignKey("documents.id", ondelete="CASCADE"), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("n_tokens", Integer, nullable=False),
    # Offsets into the document text (pages joined by PAGE_SEPARATOR) ...
    Column("char_start", Integer, nullable=False),
    Column("char_end", Integer, nullable=False),
    # ... and the same span as pages plus offsets into those pages' own text.
    Column("page_start", Integer, nullable=False),
    Column("page_end", Integer, nullable=False),
    Column("page_char_start", Integer, nullable=False),
    Column("page_char_end", Integer, nullable=False),
    Column("embedding_model", String(200), nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32 [windows, dim], normalised (rag.vectors)
    Index("ix_chunks_document", "document_id", "ordinal"),
    **_ids,
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),  # running, done, interrupted
    Column("collection", String(200), nullable=False),
    Column("paths", JSON, nullable=False),
    Column("summary", JSON),
    Column("seconds", Float),
    **_ids,
)

index_state = Table(
    "index_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("generation", Integer, nullable=False),  # names the FAISS file that matches this state
    Column("embedding_model", String(200)),
    Column("dim", Integer),
    Column("chunk_count", Integer, nullable=False),
)

# ---- version 2: conversations in the UI and feedback on answers ------------------------------
conversations = Table(
    "conversations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False),
    Column("user_name", String(200), nullable=False, index=True),  # whose conversation it is
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("conversation_id", ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("role", String(20), nullable=False),  # user or assistant
    Column("content", Text, nullable=False),
    Column("answer", JSON),  # an assistant message's Answer.as_json(): sources, backend, reasoning
    Column("created_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("rating", Integer, nullable=False),  # +1 or -1
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# ---- version 3: staff accounts, who may read which collection, the audit log -----------------
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),  # a login name or an OIDC e-mail
    Column("password_hash", Text),  # argon2; NULL for accounts that sign in through OIDC only
    Column("role", String(20), nullable=False),  # admin, editor, reader
    Column("groups", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

collection_readers = Table(
    "collection_readers",
    metadata,
    Column("collection_id", ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("group_name", String(200), primary_key=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("user_name", String(200), nullable=False, index=True),
    Column("action", String(40), nullable=False),  # ask, add, update, remove, upload, login, ...
    Column("detail", JSON, nullable=False),
)

# ---- version 4: how each document was chunked ------------------------------------------------
# A table of its own rather than a column on `documents`, so version 1's tables are unchanged.
document_chunking = Table(
    "document_chunking",
    metadata,
    Column("document_id", ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    # e.g. "256 tokens, 32 overlap": an ingest with other chunk settings re-chunks the document.
    Column("recipe", String(200), nullable=False),
)

# ---- version 5: keys of the HTTP API ------------------------------------------------------------
# A key acts as its account (`user_name`, read afresh at every request, so a changed role or group
# applies at once). Only a SHA-256 of the key is kept (rag/keys.py says why not argon2); `prefix` is
# the key's first characters, for telling keys apart in `ragqa keys list`.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("user_name", String(200), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    **_ids,
)

# ---- version 6: how OCR read scanned pages ----------------------------------------------------
# One row per page that OCR read (pages without a text layer, image files): the engine, its mean
# word confidence (0-100), and each word's characters in the page text with its box as fractions
# of the page image, `[[start, end, x0, y0, x1, y1], ...]`, so a cited span can be drawn on the page.
page_ocr = Table(
    "page_ocr",
    metadata,
    Column("document_id", ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True),
    Column("page_no", Integer, primary_key=True, autoincrement=False),  # 1-based
    Column("engine", String(40), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("words", JSON, nullable=False),
)
