"""Checking an answer's citations against the sources it was given (pure functions).

Every `[n]` must name a source that was given. An extractive answer's sentences must stand
verbatim in the source they cite; a model's sentence is matched to the cited source's sentence
that shares most of its words, so the reader sees which part of the source it rests on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rag.sentences import split_sentences, terms

CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_SUPPORT_MIN = 0.3  # share of a claim's content words a source sentence must hold to be shown as support


@dataclass(frozen=True)
class Quote:
    """The part of source `source` that a claim of the answer rests on (offsets into its text)."""

    source: int
    start: int
    end: int
    verbatim: bool  # the claim is this exact text (extractive answers)


@dataclass
class CitationReport:
    cited: list[int] = field(default_factory=list)  # valid source numbers, in order of first citation
    invalid: list[int] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def claims(answer: str) -> list[tuple[str, list[int]]]:
    """The answer cut at its citation markers: (text before the marker, numbers cited)."""
    out: list[tuple[str, list[int]]] = []
    pos = 0
    for m in CITATION.finditer(answer):
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", m.group(1))]
        text = answer[pos:m.start()].strip()
        if not text and out:  # "[1][2]": the second marker cites the same claim
            out[-1][1].extend(numbers)
        else:
            out.append((text, numbers))
        pos = m.end()
    return out


def check(answer: str, sources: Mapping[int, str], extractive: bool) -> CitationReport:
    report = CitationReport()
    for text, numbers in claims(answer):
        for n in numbers:
            if n not in sources:
                if n not in report.invalid:
                    report.invalid.append(n)
                    report.problems.append(f"[{n}] cites no source that was given")
                continue
            if n not in report.cited:
                report.cited.append(n)
            quote = _verbatim(n, text, sources[n]) if extractive else _support(n, text, sources[n])
            if quote is not None:
                report.quotes.append(quote)
            elif extractive:
                report.problems.append(f"a quoted sentence is not in source [{n}]: {text[:60]!r}")
    return report


def _verbatim(n: int, text: str, source: str) -> Quote | None:
    at = source.find(text) if text else -1
    return Quote(n, at, at + len(text), True) if at >= 0 else None


def _support(n: int, claim: str, source: str) -> Quote | None:
    """The source sentence holding the largest share of the claim's last sentence's words."""
    last = claim.rsplit("\n", 1)[-1]
    sentences = split_sentences(last, min_words=1)
    want = set(terms(last[sentences[-1][0]:] if sentences else last))
    if not want:
        return None
    best, best_share = None, 0.0
    for a, b in split_sentences(source, min_words=3):
        share = len(want & set(terms(source[a:b]))) / len(want)
        if share > best_share:
            best, best_share = (a, b), share
    if best is None or best_share < _SUPPORT_MIN:
        return None
    return Quote(n, best[0], best[1], False)
