"""Question -> retrieved passages -> a prompt that fits the model -> the answer, its citations
checked, its sources pointing at document, page and characters.

`Answerer.prepare` builds the prompt (and reports what did not fit); the caller streams the
generator's pieces (the UI shows them as they come) and `Answerer.finish` checks the result.
`Answerer.ask` does all three in one call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from llm.generator import Generator, Piece, Prompt, Source
from rag.citations import check
from rag.extractive import NO_ANSWER
from rag.followup import Exchange, rewrite_query
from rag.passages import Passage
from rag.prompt import OVERHEAD_TOKENS, SOURCE_LABEL_TOKENS, TURN_TOKENS, build_prompt
from rag.records import PAGE_SEPARATOR
from rag.retrieval import Retriever, Scope

REASONING_LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class QuoteRef:
    page: int
    start: int  # offsets into that page's text
    end: int
    passage_start: int  # offsets into the source's passage text
    passage_end: int
    verbatim: bool
    text: str


@dataclass(frozen=True)
class SourceRef:
    number: int
    passage: Passage
    cited: bool
    quotes: tuple[QuoteRef, ...] = ()

    def as_json(self) -> dict[str, Any]:
        p = self.passage
        return {"number": self.number, "document_id": p.document_id, "title": p.title, "path": p.path,
                "collection": p.collection, "pages": p.pages, "page_start": p.page_start, "page_end": p.page_end,
                "page_char_start": p.page_char_start, "page_char_end": p.page_char_end, "score": p.score,
                "text": p.text, "cited": self.cited, "quotes": [q.__dict__ for q in self.quotes]}


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    reasoning: str
    backend: str
    extractive: bool
    sources: tuple[SourceRef, ...]
    dropped: tuple[str, ...] = ()  # passages retrieved but left out of the prompt, and why
    problems: tuple[str, ...] = ()  # citation problems found by the check
    search_query: str = ""  # what was searched for: the question, or its standalone rewrite
    turns_used: tuple[int, ...] = ()  # indexes of the earlier exchanges the prompt carried

    @property
    def answered(self) -> bool:
        return any(s.cited for s in self.sources) and self.text.strip() != NO_ANSWER

    def as_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.text, "reasoning": self.reasoning, "backend": self.backend,
                "extractive": self.extractive, "answered": self.answered,
                "sources": [s.as_json() for s in self.sources], "dropped": list(self.dropped),
                "problems": list(self.problems), "searched_for": self.search_query or self.question,
                "turns_used": list(self.turns_used)}


@dataclass(frozen=True)
class Draft:
    question: str
    prompt: Prompt
    passages: tuple[Passage, ...]  # as numbered in the prompt: passages[i] is source i + 1
    dropped: tuple[str, ...]
    search_query: str = ""
    turns_used: tuple[int, ...] = ()


@dataclass
class Collected:
    """What a stream produced, filled in as the pieces pass through `Answerer.stream`."""

    final: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)


class Answerer:
    def __init__(self, retriever: Retriever, generator: Generator, *, passages: int = 5,
                 max_answer_tokens: int = 1024, history_tokens: int = 1024) -> None:
        self.retriever = retriever
        self.generator = generator
        self.k = passages
        self.max_answer_tokens = max_answer_tokens
        self.history_tokens = history_tokens

    def prepare(self, question: str, *, history: Sequence[Exchange] = (), scope: Scope | None = None,
                reasoning: str = "medium", today: date | None = None) -> Draft:
        """`history`: the conversation's earlier exchanges, oldest first. A follow-up is searched
        for as a standalone query; the most recent exchanges that fit the history budget go into
        the prompt before the sources, which take what is left."""
        question = question.strip()
        query = rewrite_query(question, history, self.generator, today=today) if question else question
        found = self.retriever.search(query, self.k, "hybrid", scope) if query else []
        base = build_prompt(question, (), reasoning=reasoning, today=today, max_tokens=self.max_answer_tokens)
        used, dropped = fit_history(base, history, self.generator, self.history_tokens)
        earlier = [history[i] for i in used]
        base = build_prompt(question, (), history=earlier, reasoning=reasoning, today=base.today,
                            max_tokens=self.max_answer_tokens)
        kept, left_out = fit_sources(base, found, self.generator)
        prompt = build_prompt(question, [source_of(i + 1, p) for i, p in enumerate(kept)], history=earlier,
                              reasoning=reasoning, today=base.today, max_tokens=self.max_answer_tokens)
        return Draft(question, prompt, tuple(kept), (*dropped, *left_out), query, tuple(used))

    def stream(self, draft: Draft, into: Collected) -> Iterator[Piece]:
        for piece in self.generator.stream(draft.prompt):
            (into.final if piece.channel == "final" else into.reasoning).append(piece.text)
            yield piece

    def finish(self, draft: Draft, collected: Collected) -> Answer:
        text = "".join(collected.final).strip()
        texts = {i + 1: p.text for i, p in enumerate(draft.passages)}
        report = check(text, texts, self.generator.extractive)
        refs = []
        for i, p in enumerate(draft.passages):
            n = i + 1
            quotes = tuple(quote_ref(p, q.start, q.end, q.verbatim) for q in report.quotes if q.source == n)
            refs.append(SourceRef(n, p, n in report.cited, _unique(quotes)))
        return Answer(draft.question, text, "".join(collected.reasoning).strip(), self.generator.name,
                      self.generator.extractive, tuple(refs), draft.dropped, tuple(report.problems),
                      draft.search_query or draft.question, draft.turns_used)

    def ask(self, question: str, *, history: Sequence[Exchange] = (), scope: Scope | None = None,
            reasoning: str = "medium") -> Answer:
        """Prepare, stream to the end and finish in one call: the answer, for callers that show
        nothing while it is produced (the CLI, the evaluation, the benchmarks)."""
        draft = self.prepare(question, history=history, scope=scope, reasoning=reasoning)
        collected = Collected()
        for _ in self.stream(draft, collected):
            pass
        return self.finish(draft, collected)


def source_of(number: int, p: Passage) -> Source:
    where = f"p. {p.pages}" if p.doc_type == "pdf" else p.path.replace("\\", "/").rsplit("/", 1)[-1]
    return Source(number, p.title, where, p.text)


def _room(base: Prompt, generator: Generator) -> int:
    """Tokens the window leaves beside `base` (instructions, its turns) and the answer's budget."""
    used = generator.count_tokens(base.instructions) + sum(generator.count_tokens(m.text) for m in base.turns)
    return generator.context_tokens - base.max_tokens - OVERHEAD_TOKENS - used


def fit_history(base: Prompt, history: Sequence[Exchange], generator: Generator,
                history_tokens: int) -> tuple[list[int], list[str]]:
    """Indexes of the most recent earlier exchanges that fit in `history_tokens` (and in what the
    window leaves beside the instructions, the current turn and the answer's budget: `base`), in
    order; the older ones are reported, as dropped passages are, never cut silently."""
    room = _room(base, generator)
    budget = min(history_tokens, room)
    used: list[int] = []
    for i in range(len(history) - 1, -1, -1):
        ex = history[i]
        cost = generator.count_tokens(ex.question) + generator.count_tokens(ex.answer) + 2 * TURN_TOKENS
        if cost > budget:
            break  # an older turn without the ones after it would read out of order
        used.append(i)
        budget -= cost
    dropped = [f"earlier turn {i + 1}: did not fit in the conversation's {min(history_tokens, max(room, 0))}-token "
               f"budget" for i in range(len(history) - len(used))]
    return used[::-1], dropped


def fit_sources(base: Prompt, found: list[Passage], generator: Generator) -> tuple[list[Passage], list[str]]:
    """The passages, best first, that fit in the generator's window beside the instructions and
    the answer's budget (`base`: the prompt without sources); the rest are reported, never cut
    silently."""
    budget = _room(base, generator)
    kept, dropped = [], []
    for p in found:
        cost = generator.count_tokens(p.text) + generator.count_tokens(p.title) + SOURCE_LABEL_TOKENS
        if cost <= budget:
            kept.append(p)
            budget -= cost
        else:
            dropped.append(f"{p.title} (p. {p.pages}): did not fit in the model's "
                           f"{generator.context_tokens}-token window")
    return kept, dropped


def quote_ref(p: Passage, start: int, end: int, verbatim: bool) -> QuoteRef:
    """A span of a passage's text as a page and offsets into that page's text (a span that
    crosses a page break is shown on its first page)."""
    page, page_start = page_offset(p, start)
    on_page = p.text[start:end].split(PAGE_SEPARATOR)[0]
    return QuoteRef(page, page_start, page_start + len(on_page), start, end, verbatim, p.text[start:end])


def page_offset(p: Passage, offset: int) -> tuple[int, int]:
    """(page number, offset into that page's text) of an offset into the passage's text."""
    before = p.text[:offset]
    breaks = before.count(PAGE_SEPARATOR)
    if breaks == 0:
        return p.page_start, p.page_char_start + offset
    return p.page_start + breaks, offset - (before.rfind(PAGE_SEPARATOR) + len(PAGE_SEPARATOR))


def _unique(quotes: tuple[QuoteRef, ...]) -> tuple[QuoteRef, ...]:
    seen, out = set(), []
    for q in quotes:
        if (q.passage_start, q.passage_end) not in seen:
            seen.add((q.passage_start, q.passage_end))
            out.append(q)
    return tuple(out)
