"""Chunking along the text's own structure, sized in the embedding model's tokens.

The document is tokenized once, with offsets; the size of any span is then two bisections away.
Page breaks always end a chunk. Otherwise cuts are made at the strongest boundary that keeps a
chunk within budget: section breaks, then paragraphs, then sentence ends (and the starts of list
items, table rows and quotes), then line breaks, then words. A single line break inside a paragraph
is not a sentence boundary: hard-wrapped text (e-mails, READMEs, PDF lines) keeps its sentences
whole, and only a sentence longer than the budget is cut at its line breaks. Neighbouring chunks
share up to `overlap` tokens of whole units (sentences), so a fact cut at a boundary is whole in one.

Each chunk is cut again, the same way and without overlap, into windows of about `window_tokens`
that are embedded one by one (the chunk is what a search returns and the model reads; its windows
are what the question is matched against).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.records import PAGE_SEPARATOR, Chunk

# Boundary strength: a cut *before* the match start (headings) or *after* the match end (others).
#: A blank line before a Markdown table (a row, then the `|---|` rule): a table, or each header-led
#: piece of a long one (ingest.tables.repeat_headers), starts a chunk of its own, so every chunk
#: holding table rows holds the header that names their columns.
_TABLE_START = r"\n[ \t]*\n(?=\|[^\n]*\|[ \t]*\n\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*(?:\n|$))"
_LEVELS: list[tuple[int, re.Pattern[str]]] = [
    (4, re.compile(re.escape(PAGE_SEPARATOR) + "|" + _TABLE_START)),  # page breaks, tables
    (3, re.compile(r"\n(?=#{1,6} )")),  # Markdown section headings
    (2, re.compile(r"\n[ \t]*\n")),  # paragraphs (and bigger gaps)
    # Sentence ends, and lines that start a list item, a table row or a quote.
    (1, re.compile(r"(?<=[.!?;:])[\"')\]]*\s+|\n(?=[ \t]*(?:[-*+\u2022>][ \t]|\||\d{1,3}[.)][ \t]))")),
    (1, re.compile(r"\n")),  # line breaks: only inside a sentence too long for the budget
    (0, re.compile(r"\s+")),  # words
]
#: From this depth on a piece that fits is a unit: line breaks and words only cut what is too long.
_FINE_DEPTH = 4
#: Part of each document's recorded chunking recipe: a change to the rules above re-chunks stored
#: documents at their next ingest, as a change of chunk size does.
RULES_VERSION = "sentences across line breaks, tables with headers"


def join_pages(pages: Sequence[str]) -> tuple[str, list[int]]:
    """The document text and where each page starts in it."""
    starts, pos = [], 0
    for page in pages:
        starts.append(pos)
        pos += len(page) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(pages), starts


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    level: int  # strength of the boundary at this unit's end


class TokenSpans:
    """Token offsets of one text: counts tokens of any span without re-tokenizing."""

    def __init__(self, starts: list[int], ends: list[int], specials: int) -> None:
        self.starts, self.ends, self.specials = starts, ends, specials

    def count(self, a: int, b: int) -> int:
        return bisect.bisect_right(self.ends, b) - bisect.bisect_left(self.starts, a) + self.specials


def split_units(text: str, spans: TokenSpans, max_tokens: int, a: int = 0, b: int | None = None) -> list[_Unit]:
    """Cut the text (or text[a:b]) into sentence-sized units (smaller only where a sentence exceeds
    the budget), each tagged with the strength of the boundary it ends at."""
    out: list[_Unit] = []
    _split(text, a, len(text) if b is None else b, 0, 5, spans, max_tokens, out)
    return out


def _split(text: str, a: int, b: int, depth: int, end_level: int, spans: TokenSpans, budget: int,
           out: list[_Unit]) -> None:
    fits = spans.count(a, b) <= budget
    if depth == len(_LEVELS) or (fits and depth >= _FINE_DEPTH):  # sentences are fine-grained enough
        if fits:
            out.append(_Unit(a, b, end_level))
        else:
            _hard_split(a, b, end_level, spans, budget, out)
        return
    level, pattern = _LEVELS[depth]
    cuts = [c for m in pattern.finditer(text, a, b) if a < (c := m.start() if level == 3 else m.end()) < b]
    bounds = [a, *cuts, b]
    for i in range(len(bounds) - 1):
        last = i == len(bounds) - 2
        _split(text, bounds[i], bounds[i + 1], depth + 1, end_level if last else level, spans, budget, out)


def _hard_split(a: int, b: int, end_level: int, spans: TokenSpans, budget: int, out: list[_Unit]) -> None:
    """A single 'word' longer than the budget (a URL, a table row without spaces): cut by tokens."""
    first = bisect.bisect_left(spans.starts, a)
    last = bisect.bisect_right(spans.ends, b)
    step = max(1, budget - spans.specials)
    pos = a
    for i in range(first + step, last, step):
        out.append(_Unit(pos, spans.starts[i], -1))
        pos = spans.starts[i]
    out.append(_Unit(pos, b, end_level))


def pack(units: list[_Unit], spans: TokenSpans, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of units into chunks; once a chunk is half full it ends at a strong boundary."""
    chunks: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j = i  # units i..j-1 are in the chunk
        best_end = None
        while j < len(units) and spans.count(units[i].start, units[j].end) <= max_tokens:
            j += 1
            if units[j - 1].level >= 4:  # never across a page break: a citation names one page
                break
            if spans.count(units[i].start, units[j - 1].end) >= max_tokens // 2 and units[j - 1].level >= 2:
                best_end = j  # a paragraph-or-stronger boundary past half the budget
        j = max(j, i + 1)
        if best_end is not None and j < len(units) and units[j - 1].level < 2:
            j = best_end
        chunks.append((units[i].start, units[j - 1].end))
        if j >= len(units):
            break
        # Overlap: step back over whole units (at most `overlap` tokens, never to the chunk start).
        k = j
        while (k - 1 > i and units[k - 1].level < 3
               and spans.count(units[k - 1].start, units[j - 1].end) - spans.specials <= overlap):
            k -= 1
        i = k
    return chunks


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


class Chunker:
    """A configured chunker: the embedding model's tokenizer plus sizes."""

    def __init__(self, tokenizer_json: str, max_tokens: int, overlap: int, window_tokens: int = 0) -> None:
        from tokenizers import Tokenizer

        self.max_tokens, self.overlap = max_tokens, overlap
        self.window_tokens = window_tokens if 0 < window_tokens < max_tokens else 0
        self._tok = Tokenizer.from_str(tokenizer_json)
        self._specials = len(self._tok.encode("").ids)

    def count_tokens(self, text: str) -> int:
        """Tokens as the model sees them, special tokens included."""
        return len(self._tok.encode(text).ids)

    def token_spans(self, text: str) -> TokenSpans:
        enc = self._tok.encode(text, add_special_tokens=False)
        offsets = [o for o in enc.offsets if o[1] > o[0]]
        return TokenSpans([o[0] for o in offsets], [o[1] for o in offsets], self._specials)

    def chunk(self, pages: Sequence[str]) -> list[Chunk]:
        text, starts = join_pages(pages)
        spans = self.token_spans(text)
        units = split_units(text, spans, self.max_tokens)
        out: list[Chunk] = []
        for a, b in pack(units, spans, self.max_tokens, self.overlap):
            a, b = _trim(text, a, b)
            if a >= b or (out and out[-1].char_start <= a and b <= out[-1].char_end):
                continue
            piece = text[a:b]
            n = self.count_tokens(piece)
            assert n <= self.max_tokens + 2, (n, self.max_tokens)  # offsets make this exact for WordPiece
            p0 = bisect.bisect_right(starts, a) - 1
            p1 = bisect.bisect_right(starts, b - 1) - 1
            out.append(Chunk(ordinal=len(out), text=piece, n_tokens=n, char_start=a, char_end=b,
                             page_start=p0 + 1, page_end=p1 + 1, page_char_start=a - starts[p0],
                             page_char_end=min(b - starts[p1], len(pages[p1])),
                             windows=self._windows(text, spans, a, b, n)))
        return out

    def vector_texts(self, text: str) -> list[str]:
        """The texts one chunk's vectors are made from (its windows, or itself): for re-embedding
        stored chunks, cut exactly as `chunk` cut them."""
        spans = self.token_spans(text)
        return Chunk(0, text, 0, 0, len(text), 1, 1, 0, len(text),
                     windows=self._windows(text, spans, 0, len(text), self.count_tokens(text))).vector_texts()

    def _windows(self, text: str, spans: TokenSpans, a: int, b: int, n_tokens: int) -> tuple[tuple[int, int], ...]:
        """Windows of text[a:b], as offsets into it; () when the chunk is small enough to be one."""
        if not self.window_tokens or n_tokens <= self.window_tokens:
            return ()
        units = split_units(text, spans, self.window_tokens, a, b)
        windows = [_trim(text, wa, wb) for wa, wb in pack(units, spans, self.window_tokens, 0)]
        windows = [(wa - a, wb - a) for wa, wb in windows if wa < wb]
        return tuple(windows) if len(windows) > 1 else ()
