"""Plain records passed between the pipeline stages and the store."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Pages are joined with this to make a document's text; chunk offsets count it. Loaders remove
#: form feeds from page text, so this marks page breaks and nothing else.
PAGE_SEPARATOR = "\n\f\n"


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    n_tokens: int
    char_start: int  # into the document text
    char_end: int
    page_start: int  # 1-based
    page_end: int
    page_char_start: int  # into page_start's text
    page_char_end: int  # into page_end's text
    # Where the chunk's vectors come from: (start, end) in `text` of each window that gets its own
    # vector (rag.vectors says why). Empty: one vector, of the whole chunk.
    windows: tuple[tuple[int, int], ...] = ()

    def vector_texts(self) -> list[str]:
        return [self.text[a:b] for a, b in self.windows] or [self.text]

    @property
    def n_vectors(self) -> int:
        return len(self.windows) or 1


@dataclass(frozen=True)
class FileFacts:
    """What is known of a file before reading it."""

    collection_id: int
    path: str
    content_hash: str
    size_bytes: int
    doc_type: str


@dataclass(frozen=True)
class PageOcr:
    """How OCR read one page: its `text`, each word as `(start, end, x0, y0, x1, y1)` (its
    characters in `text`, its box as fractions of the page image), the engine's mean word
    `confidence` (0-100) and the engine's name."""

    text: str
    words: list[tuple[int, int, float, float, float, float]] = field(default_factory=list)
    confidence: float = 0.0
    engine: str = "tesseract"


@dataclass
class DocumentContent:
    """What reading and chunking a file produced."""

    title: str
    pages: list[str]
    paginated: bool
    chunks: list[Chunk]
    warnings: list[str] = field(default_factory=list)
    ocr: dict[int, PageOcr] = field(default_factory=dict)  # 1-based page number -> its OCR (scanned pages)
