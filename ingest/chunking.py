"""Chunking along the text's own structure, sized in the embedding model's tokens.

semantic-text-splitter does the splitting (headings and paragraphs first, then sentences, then
words) and gives exact character offsets. We add what it does not know: pages, and folding a
tiny fragment (a lone title line) into its neighbour.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

from rag.records import PAGE_SEPARATOR, Chunk


def join_pages(pages: Sequence[str]) -> tuple[str, list[int]]:
    """The document text and where each page starts in it."""
    starts, pos = [], 0
    for page in pages:
        starts.append(pos)
        pos += len(page) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(pages), starts


def make_splitter(tokenizer_json: str, max_tokens: int, overlap: int, markdown: bool) -> Any:
    from semantic_text_splitter import MarkdownSplitter, TextSplitter
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    kind = MarkdownSplitter if markdown else TextSplitter
    # A range lets the splitter stop at a better boundary once a chunk is half full.
    return kind.from_huggingface_tokenizer(tokenizer, capacity=(max_tokens // 2, max_tokens), overlap=overlap, trim=True)


def chunk_pages(
    pages: Sequence[str],
    split: Callable[[str], list[tuple[int, str]]],
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> list[Chunk]:
    """Chunks of the joined pages. `split(text)` gives (offset, chunk) pairs as the splitter does."""
    text, starts = join_pages(pages)
    spans = [(off, off + len(piece)) for off, piece in split(text) if piece.strip()]
    spans = _fold_small(spans, text, count_tokens, max_tokens)
    out = []
    for ordinal, (a, b) in enumerate(spans):
        p0 = bisect.bisect_right(starts, a) - 1
        p1 = bisect.bisect_right(starts, b - 1) - 1
        piece = text[a:b]
        out.append(Chunk(
            ordinal=ordinal, text=piece, n_tokens=count_tokens(piece), char_start=a, char_end=b,
            page_start=p0 + 1, page_end=p1 + 1,
            page_char_start=a - starts[p0], page_char_end=min(b - starts[p1], len(pages[p1])),
        ))
    return out


def _fold_small(spans: list[tuple[int, int]], text: str, count_tokens: Callable[[str], int],
                max_tokens: int) -> list[tuple[int, int]]:
    """Merge a chunk of under an eighth of the budget into the next one when both fit together."""
    small = max(8, max_tokens // 8)
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        a, b = spans[i]
        while i + 1 < len(spans) and count_tokens(text[a:b]) < small:
            merged = (a, max(b, spans[i + 1][1]))
            if count_tokens(text[merged[0]:merged[1]]) > max_tokens:
                break
            a, b = merged
            i += 1
        out.append((a, b))
        i += 1
    return out


class Chunker:
    """A configured chunker: the embedding model's tokenizer plus sizes."""

    def __init__(self, tokenizer_json: str, max_tokens: int, overlap: int) -> None:
        from tokenizers import Tokenizer

        self.max_tokens = max_tokens
        self._tok = Tokenizer.from_str(tokenizer_json)
        self._plain = make_splitter(tokenizer_json, max_tokens, overlap, markdown=False)
        self._markdown = make_splitter(tokenizer_json, max_tokens, overlap, markdown=True)

    def count_tokens(self, text: str) -> int:
        """Tokens as the model sees them, [CLS] and [SEP] included."""
        return len(self._tok.encode(text).ids)

    def chunk(self, pages: Sequence[str], markdown: bool) -> list[Chunk]:
        splitter = self._markdown if markdown else self._plain
        return chunk_pages(pages, splitter.chunk_indices, self.count_tokens, self.max_tokens)
