"""Sentences and content words of a text, for rag's extractive answerer (which quotes the best
sentences) and the citation check (which finds the source sentence a claim rests on).
"""

from __future__ import annotations

import re

# Sentence ends, line breaks and page breaks. Splits keep every sentence a verbatim slice of its
# source, so that a citation can point at its exact characters.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\f|\n(?=\s*(?:[-*•#]|\d+[.)])\s)"
                       r"|\n?```[^\n]*\n?")  # Markdown code fences: code is not a sentence of prose
# A full stop after these is not a sentence end ("Dr. Smith", "e.g. this", "J. Smith").
_ABBREVIATION = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|No|Nr|Fig|Figs|Eq|vs|etc|approx|Inc|Ltd|Co|cf|al|Vol|pp"
                           r"|[ei]\.[eg])|(?<![\w.])[A-Z])\.$")
_LIST_MARKER = re.compile(r"(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+")
_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.S)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset("""a an and are as at be been but by can could did do does for from had has have how i if in
into is it its may might more most much no not of on or our should so such than that the their them then there
these they this those to was we were what when where which while who whom whose why will with would you your
about after also any before between both each few other over same some very""".split())


def split_sentences(text: str, min_words: int = 4) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, trimmed of surrounding whitespace; fragments shorter
    than `min_words` words (headings, page numbers), Markdown headings and code blocks are left out."""
    spans, pos = [], 0
    code = [(m.start(), m.end()) for m in _CODE_BLOCK.finditer(text)]
    for m in [*_BOUNDARY.finditer(text), None]:
        end = m.start() if m else len(text)
        if m is not None and text[m.start() - 1:m.start()] == "." and _ABBREVIATION.search(text[max(0, end - 8):end]):
            continue
        a, b = pos, end
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        a = _after_heading(text, a, b)
        marker = _LIST_MARKER.match(text, a, b)  # a list item's sentence is quoted without its bullet
        a = marker.end() if marker else a
        in_code = any(a < ce and b > cs for cs, ce in code)
        heading = text.startswith("#", a)  # a Markdown heading names a topic; it answers nothing
        if len(_WORD.findall(text[a:b])) >= min_words and not in_code and not heading:
            spans.append((a, b))
        pos = m.end() if m else len(text)
    return spans


def _after_heading(text: str, a: int, b: int) -> int:
    """Where a sentence starts once a heading line glued to it is left out ("Mileage\nThe
    allowance is..."): a short first line without closing punctuation, followed by a capital."""
    newline = text.find("\n", a, b)
    if newline < 0:
        return a
    head, rest = text[a:newline].strip(), text[newline + 1:b].lstrip()
    if head and len(head.split()) <= 6 and head[-1] not in ".,;:!?" and rest[:1].isupper():
        return newline + 1 + (len(text[newline + 1:b]) - len(rest))
    return a


def terms(text: str) -> list[str]:
    """Content words, lower-cased, with a light suffix strip so that 'chunks' meets 'chunk'."""
    out = []
    for w in words(text):
        if w in _STOP or len(w) < 2:
            continue
        for suffix in ("ing", "ies", "es", "ed", "s"):
            if len(w) > len(suffix) + 3 and w.endswith(suffix):
                w = w[: -len(suffix)]
                break
        out.append(w)
    return out


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased."""
    return _WORD.findall(text.lower())
