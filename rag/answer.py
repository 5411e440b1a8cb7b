"""Question -> retrieved passages -> a prompt that fits the model -> the answer, its citations
checked, its sources pointing at document, page and characters.

`Answerer.prepare` builds the prompt (and reports what did not fit); the caller streams the
generator's pieces (the UI shows them as they come) and `Answerer.finish` checks the result.
`Answerer.ask` does all three in one call.

Tool use: with tools on (`tools="auto"` and a generator that can call them) the model gets the
first round of passages and the library's tools (rag/tools.py). A stream that ends in a ToolCall
is answered by running the tool inside the question's scope and asking again with the round
appended, up to `tool_rounds` calls, a time limit and the room left in the model's window; past a
limit the model is asked once more, without tools, for its answer with what it has, and the
answer carries a note saying so. Every passage any round showed is a numbered source.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from llm.generator import Generator, Piece, Prompt, Source, ToolCall, ToolStep
from rag.citations import check
from rag.extractive import NO_ANSWER
from rag.followup import Exchange, rewrite_query
from rag.passages import Passage
from rag.prompt import OVERHEAD_TOKENS, TOOLS_OVER, TURN_TOKENS, build_prompt, source_location, sources_block
from rag.records import PAGE_SEPARATOR
from rag.retrieval import Retriever, Scope
from rag.tools import TOOLS, VIEW_TOKENS, LibraryBrowser, Step, rewrite_citations

REASONING_LEVELS = ("low", "medium", "high")
TOOL_MODES = ("auto", "off")
#: Tokens of one tool round beyond its arguments, result and reasoning (headers, recipient).
STEP_TOKENS = 24
#: With tools on, the first round's passages leave this much of the window for tool results.
TOOL_RESERVE_TOKENS = VIEW_TOKENS
#: A result needs at least this much room; with less, the model is asked for its answer.
MIN_RESULT_TOKENS = 64
#: The answer when the model never stopped calling tools, even when asked to answer without them.
NO_TOOL_ANSWER = "No answer: the model kept searching the library past its limits and did not answer."


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
    steps: tuple[Step, ...] = ()  # the tool calls the model made, in order
    notes: tuple[str, ...] = ()  # what the user should know about how the answer was made (a limit hit)

    @property
    def answered(self) -> bool:
        return any(s.cited for s in self.sources) and self.text.strip() != NO_ANSWER

    def as_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.text, "reasoning": self.reasoning, "backend": self.backend,
                "extractive": self.extractive, "answered": self.answered,
                "sources": [s.as_json() for s in self.sources], "dropped": list(self.dropped),
                "problems": list(self.problems), "searched_for": self.search_query or self.question,
                "turns_used": list(self.turns_used), "steps": [st.as_json() for st in self.steps],
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Draft:
    question: str
    prompt: Prompt
    passages: tuple[Passage, ...]  # as numbered in the prompt: passages[i] is source i + 1
    dropped: tuple[str, ...]
    search_query: str = ""
    turns_used: tuple[int, ...] = ()
    scope: Scope | None = None  # the question's scope: tool calls run inside it
    notes: tuple[str, ...] = ()  # for the user: tools left off for want of room
    collections: tuple[str, ...] = ()  # with tools, the collections a tool search may name


@dataclass
class Collected:
    """What a stream produced, filled in as the pieces pass through `Answerer.stream`."""

    final: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    browser: LibraryBrowser | None = None  # the tools' state: the sources the rounds added


class Answerer:
    def __init__(self, retriever: Retriever, generator: Generator, *, passages: int = 5,
                 max_answer_tokens: int = 1024, history_tokens: int = 1024, tools: str = "auto",
                 tool_rounds: int = 4, tool_time_s: float = 180.0, tool_namespace: str = "functions",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if tools not in TOOL_MODES:
            raise ValueError(f"tools must be one of {', '.join(TOOL_MODES)}")
        self.retriever = retriever
        self.generator = generator
        self.k = passages
        self.max_answer_tokens = max_answer_tokens
        self.history_tokens = history_tokens
        self.tools = tools
        self.tool_rounds = tool_rounds
        self.tool_time_s = tool_time_s
        self.tool_namespace = tool_namespace
        self.clock = clock

    @property
    def tools_on(self) -> bool:
        """auto: on when the generator can call tools; off: never."""
        return self.tools == "auto" and self.generator.tools_capable

    def prepare(self, question: str, *, history: Sequence[Exchange] = (), scope: Scope | None = None,
                reasoning: str = "medium", today: date | None = None) -> Draft:
        """`history`: the conversation's earlier exchanges, oldest first. A follow-up is searched
        for as a standalone query; the most recent exchanges that fit the history budget go into
        the prompt before the sources, which take what is left."""
        question = question.strip()
        query = rewrite_query(question, history, self.generator, today=today) if question else question
        found = self.retriever.search(query, self.k, "hybrid", scope) if query else []
        day = today or date.today()
        tools, notes = self.tools_on and bool(question), []
        collections = self._collections(scope) if tools else ()  # read once: every prompt below names them

        def make(sources: Sequence[Source], earlier: Sequence[Exchange] = (), offer: bool = False) -> Prompt:
            return build_prompt(question, sources, history=earlier, reasoning=reasoning, today=day,
                                max_tokens=self.max_answer_tokens, tools=TOOLS if offer else (),
                                tool_namespace=self.tool_namespace, tool_rounds=self.tool_rounds,
                                collections=collections)

        used, dropped = fit_history(make(()), history, self.generator, self.history_tokens)
        earlier = [history[i] for i in used]
        kept, left_out = fit_sources(make((), earlier), found, self.generator)
        if tools:
            # Tools come on top of the first round, never instead of it: they need room for their
            # description and for results, and without it the answer goes on without them.
            with_tools = fit_sources(make((), earlier, True), found, self.generator, reserve=TOOL_RESERVE_TOKENS)
            tools = len(with_tools[0]) == len(kept)
            if not tools:
                notes.append(f"The model could not search the library itself for this answer: its "
                             f"{self.generator.context_tokens}-token window has no room for tools beside the sources.")
        prompt = make([source_of(i + 1, p) for i, p in enumerate(kept)], earlier, tools)
        return Draft(question, prompt, tuple(kept), (*dropped, *left_out), query, tuple(used), scope, tuple(notes),
                     collections)

    def stream(self, draft: Draft, into: Collected) -> Iterator[Piece | Step]:
        """The answer's pieces as they come and, with tools, each tool step once it has run."""
        if draft.prompt.tools:
            yield from self._tool_loop(draft, into)
            return
        for item in self.generator.stream(draft.prompt):
            if isinstance(item, ToolCall):  # no tools were offered: there is nothing to run
                into.notes.append(f"The model asked for a tool ({item.name}) that was not offered; it was not run.")
                return
            _collect(item, into)
            yield item

    def finish(self, draft: Draft, collected: Collected) -> Answer:
        text = "".join(collected.final).strip()
        passages = collected.browser.sources if collected.browser is not None else list(draft.passages)
        problems: list[str] = []
        if collected.browser is not None:
            text, problems = rewrite_citations(text, collected.browser)
            text = text.strip() or (NO_TOOL_ANSWER if collected.steps else "")
        texts = {i + 1: p.text for i, p in enumerate(passages)}
        report = check(text, texts, self.generator.extractive)
        refs = []
        for i, p in enumerate(passages):
            n = i + 1
            quotes = tuple(quote_ref(p, q.start, q.end, q.verbatim) for q in report.quotes if q.source == n)
            refs.append(SourceRef(n, p, n in report.cited, _unique(quotes)))
        return Answer(draft.question, text, "".join(collected.reasoning).strip(), self.generator.name,
                      self.generator.extractive, tuple(refs), draft.dropped, (*problems, *report.problems),
                      draft.search_query or draft.question, draft.turns_used, tuple(collected.steps),
                      (*draft.notes, *collected.notes))

    # ---- tool use ------------------------------------------------------------------------------
    def _tool_loop(self, draft: Draft, into: Collected) -> Iterator[Piece | Step]:
        """Ask; run the call the stream ends with; ask again with the round appended; until the
        model answers. Past a limit, the model is asked once more without tools."""
        browser = into.browser = LibraryBrowser(self.retriever, draft.scope, draft.passages,
                                                count_tokens=self.generator.count_tokens, topn=self.k,
                                                collections=draft.collections)
        prompt, steps = draft.prompt, list[ToolStep]()
        deadline = self.clock() + self.tool_time_s
        while True:
            final_before, reasoning = len(into.final), list[str]()
            call = None
            for item in self.generator.stream(prompt):
                if isinstance(item, ToolCall):
                    call = item
                    break
                _collect(item, into)
                if item.channel != "final":
                    reasoning.append(item.text)
                yield item
            if call is None:
                return  # answered
            # Text on the final channel before a call was a preamble to it, not the answer.
            del into.final[final_before:]
            if not prompt.tools:  # asked to answer without tools, it called one anyway
                into.notes.append(f"The model did not answer: it kept calling tools after {len(steps)} calls.")
                return
            room = self._result_room(prompt, call, reasoning)
            limit = self._limit(len(steps), deadline, room)
            if limit is None:
                result, step = browser.run(call, room)
                steps.append(ToolStep(call, result, "".join(reasoning)))
                into.steps.append(step)
                yield step
                prompt = replace(prompt, steps=tuple(steps))
                if not browser.full:
                    continue
                limit = self._window_full()
            into.notes.append(limit)
            prompt = replace(prompt, tools=(), steps=tuple(steps), instructions=prompt.instructions + TOOLS_OVER)

    def _limit(self, calls: int, deadline: float, room: int) -> str | None:
        """Why no more tool calls may run now (one line for the user), or None."""
        if calls >= self.tool_rounds:
            return (f"The model stopped searching at the limit of {self.tool_rounds} tool calls "
                    f"(RAGQA_TOOL_ROUNDS): the answer uses what it found so far.")
        if self.clock() > deadline:
            return (f"The model stopped searching after {self.tool_time_s:g} s (RAGQA_TOOL_TIME_S): the answer "
                    f"uses what it found so far.")
        if room < MIN_RESULT_TOKENS:
            return self._window_full()
        return None

    def _window_full(self) -> str:
        return (f"The model's {self.generator.context_tokens}-token window is full: the answer uses what the "
                f"searches found so far.")

    def _result_room(self, prompt: Prompt, call: ToolCall, reasoning: Sequence[str]) -> int:
        """Tokens the window leaves for this call's result, after the prompt, the earlier rounds,
        this call and its reasoning, and the answer's budget."""
        count = self.generator.count_tokens
        this = count(call.arguments) + count("".join(reasoning)) + STEP_TOKENS
        return _room(prompt, self.generator) - this

    def _collections(self, scope: Scope | None) -> tuple[str, ...]:
        """The collections a tool search may name: those chosen for the question, or all the
        asking user may read."""
        if scope is not None and scope.collections:
            return scope.collections
        everything = self.retriever.store.collections()
        readable = scope.readable if scope is not None else None
        return tuple(c for c in everything if readable is None or c in readable)

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
    return Source(number, p.title, source_location(p), p.text)


def _collect(piece: Piece, into: Collected) -> None:
    (into.final if piece.channel == "final" else into.reasoning).append(piece.text)


def _room(base: Prompt, generator: Generator) -> int:
    """Tokens the window leaves beside `base` (instructions, its turns, the tools offered and the
    rounds of tool use so far) and the answer's budget."""
    count = generator.count_tokens
    used = count(base.instructions) + sum(count(m.text) for m in base.turns)
    used += sum(count(f"{t.name} {t.description} {json.dumps(t.parameters)}") for t in base.tools)
    used += sum(count(st.call.arguments) + count(st.result) + count(st.reasoning) + STEP_TOKENS for st in base.steps)
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


def fit_sources(base: Prompt, found: list[Passage], generator: Generator,
                reserve: int = 0) -> tuple[list[Passage], list[str]]:
    """The passages, best first, that fit in the generator's window beside the instructions and
    the answer's budget (`base`: the prompt without sources), keeping `reserve` tokens free (for
    tool results); the rest are reported, never cut silently."""
    budget = _room(base, generator) - reserve
    kept: list[Passage] = []
    dropped: list[str] = []
    for p in found:
        # Counted as rendered (label, location, fences, the blank line between sources): an
        # estimate per label fell short by 15 tokens a source against llama.cpp's real count.
        cost = generator.count_tokens(sources_block([source_of(len(kept) + 1, p)]) + "\n\n")
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
