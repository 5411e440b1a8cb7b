"""The library as tools the model calls while it answers: `search`, `open` and `find`, in the shape
of gpt-oss's browsing tool (the `browser` namespace it was trained with: `ToolNamespaceConfig.browser()`
in openai-harmony, gpt_oss/tools/simple_browser in the `gpt-oss` package). Each result is a page
shown with its cursor `[c]`, a scrollbar line and numbered lines `L0: ...`; links read `【id†text】`;
the model cites lines as `【c†L9-L11】`. docs/architecture.md says why this shape is offered as
plain `functions.*` tools.

Three rules hold whatever the model asks for:
- Scope: a search runs through the retriever inside the asking user's scope (rag.retrieval.Scope),
  and a page opens only when its document holds a chunk that scope allows; a collection the user
  may not read is answered as one that does not exist.
- Sources: every passage a result shows becomes a numbered source, continuing the first round's
  numbers (the same passage keeps its number). A link id *is* a source number, so the model cites
  [n] or opens `open(id=n)` without a second numbering to keep apart.
- Errors: malformed arguments, an unknown tool, a wrong cursor or link get an error text as the
  tool's result, never an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select

from llm.generator import Tool, ToolCall
from rag import schema as s
from rag.errors import NotFoundError, RagqaError, one_line
from rag.passages import Passage
from rag.prompt import source_location
from rag.records import PAGE_SEPARATOR
from rag.retrieval import Retriever, Scope

#: Tokens an opened page shows from `loc` on (the reference browser's view).
VIEW_TOKENS = 1024
#: Tokens a search shows: whole passages, best first, while they fit.
SEARCH_TOKENS = 2048
#: Longest display line, in characters (the reference wraps at 80).
WIDTH = 80
#: `find` shows at most this many matches, each with this many lines.
FIND_MATCHES = 10
FIND_LINES = 4
#: The address of a document's page, shown in an opened page's header and accepted by `open`.
PAGE_URL = "library://doc/{document}/page/{page}"
_PAGE_URL = re.compile(r"library://doc/(\d+)(?:/page/(\d+))?/?")
#: A citation in the browser's format: `【cursor†L9-L11】` (lines) or `【id†text】` (a link).
LINE_CITATION = re.compile(r"【(\d+)†([^†】]*)(?:†[^†】]*)?】")
_LINES = re.compile(r"\s*L(\d+)(?:\s*[-–]\s*L?(\d+))?\s*")
_PARTIAL = re.compile(r"【[^】]*$")

TOOLS: tuple[Tool, ...] = (
    Tool("search", "Searches the library for passages related to `query` and displays up to `topn` of them. "
         "`collection` limits the search to one of the collections this question may use.",
         {"type": "object", "properties": {"query": {"type": "string"}, "topn": {"type": "number", "default": 5},
                                           "collection": {"type": "string"}}, "required": ["query"]}),
    Tool("open", "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing "
         "`num_lines` lines.\nValid link ids are displayed with the formatting: `【{id}†.*】`.\n"
         "If `cursor` is not provided, the most recent page is implied.\n"
         "If `id` is a string, it is treated as a page address: library://doc/{document}/page/{page}.\n"
         "If `loc` is not provided, the viewport is positioned at the linked passage.\n"
         "Use this function without `id` to scroll to a new location of an opened page.",
         {"type": "object", "properties": {"id": {"type": ["number", "string"], "default": -1},
                                           "cursor": {"type": "number", "default": -1},
                                           "loc": {"type": "number", "default": -1},
                                           "num_lines": {"type": "number", "default": -1}}}),
    Tool("find", "Finds exact matches of `pattern` in the current page, or the page given by `cursor`.",
         {"type": "object", "properties": {"pattern": {"type": "string"}, "cursor": {"type": "number", "default": -1}},
          "required": ["pattern"]}),
)


class ToolUsageError(Exception):
    """A call the tool cannot carry out; its message goes back to the model as the result."""


@dataclass(frozen=True)
class Step:
    """One tool call of an answer, as the user and the audit log see it."""

    name: str
    arguments: str  # as the model wrote them
    summary: str  # "searched for ...", "opened ...", "found ..."
    sources: tuple[int, ...] = ()  # the source numbers its result showed (new ones, or earlier ones again)
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments, "summary": self.summary,
                "sources": list(self.sources), "error": self.error}


@dataclass(frozen=True)
class DocumentPage:
    """One page of a document, cut into display lines (`spans`: each line's characters in `text`)."""

    document_id: int
    collection: str
    title: str
    path: str
    doc_type: str
    page_no: int
    pages: int
    text: str
    offset: int  # where this page's text starts in the document's text
    spans: tuple[tuple[int, int], ...]

    @property
    def url(self) -> str:
        return PAGE_URL.format(document=self.document_id, page=self.page_no)


@dataclass
class Page:
    """A browsing display: what one call showed, under its cursor."""

    cursor: int
    title: str
    url: str
    lines: list[str]
    owners: list[int]  # the source number each line shows (0: none)
    start: int = 0  # the lines shown: [start, end)
    end: int = 0
    document: DocumentPage | None = None  # an opened document page (find and scrolling work on it)

    def render(self) -> str:
        header = f"[{self.cursor}] {self.title}" + (f" ({self.url})" if self.url else "")
        body = "\n".join(f"L{i}: {self.lines[i]}" for i in range(self.start, self.end))
        return f"{header}\n**viewing lines [{self.start} - {self.end - 1}] of {len(self.lines) - 1}**\n\n{body}"


class LibraryBrowser:
    """The tools over the library for one answer, inside one scope. `sources` starts as the first
    round's passages (numbered 1..k) and grows with every passage a call shows."""

    def __init__(self, retriever: Retriever, scope: Scope | None, sources: Sequence[Passage], *,
                 count_tokens: Callable[[str], int], topn: int = 5, collections: Sequence[str] = ()) -> None:
        self.retriever = retriever
        self.scope = scope or Scope()
        self.sources: list[Passage] = list(sources)
        self.pages: list[Page] = []
        self.count_tokens = count_tokens
        self.topn = topn
        self.collections = tuple(collections)  # those a search may name (told to the model)
        self.full = False  # a result did not fit in the room left: the loop stops offering tools
        self._documents: frozenset[int] | None = None

    # ---- the model's calls -----------------------------------------------------------------
    def run(self, call: ToolCall, room: int) -> tuple[str, Step]:
        """The result text to give back to the model, and the step to show; `room`: tokens the
        model's window has left for this result."""
        name = call.name.rsplit(".", 1)[-1].strip()  # "browser.search" from a model that mixes namespaces
        args = _arguments(call.arguments)
        if args is None:
            return _error(call, name, "Invalid function arguments: a JSON object was expected")
        handler = {"search": self.search, "open": self.open, "find": self.find}.get(name)
        if handler is None:
            return _error(call, name, f"Unknown function: {name or '(none)'}; use search, open or find")
        try:
            text, summary, shown = handler(args, room)
        except ToolUsageError as exc:
            return _error(call, name, str(exc))
        except RagqaError as exc:  # e.g. a store that changed under us: the answer goes on
            return _error(call, name, one_line(exc))
        return text, Step(name, call.arguments, summary, tuple(shown))

    def search(self, args: dict[str, Any], room: int) -> tuple[str, str, list[int]]:
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolUsageError("`query` is required: the text to search for")
        collection = args.get("collection", args.get("source"))  # `source`: the trained name
        topn = min(max(_integer(args, "topn", self.topn), 1), 10)
        where = f" in {collection}" if collection else ""
        try:
            found = self.retriever.search(query, topn, "hybrid", self._scope(collection))
        except NotFoundError:  # a collection that does not exist, or that the user may not read: the same
            raise ToolUsageError(f"No collection `{collection}`; collections this question may use: "
                                 f"{', '.join(self.collections) or '(none)'}") from None
        lines: list[str] = []
        owners: list[int] = []
        budget, shown = min(SEARCH_TOKENS, room), list[int]()
        for p in found:
            head = f"†{_clean(p.title)}†{source_location(p)}】"
            block = [*(text for _, _, text in _wrap(_clean(p.text))), ""]
            cost = self.count_tokens("# 【00" + head + "\n" + "\n".join(block)) + 3 * (len(block) + 1)
            if cost > budget:
                self.full = self.full or not shown
                break
            budget -= cost
            n = self._number(p)
            shown.append(n)
            lines += [f"# 【{n}{head}", *block]
            owners += [n] * (len(block) + 1)
        if not found:
            lines, owners = [f"No results for `{query}`{where}."], [0]
        elif not shown:
            lines, owners = ["No room is left in the model's window for more results: answer with what you have."], [0]
        page = self._push(f"Search results for `{query}`{where}", "", lines, owners)
        summary = f"searched for “{query}”{where}: " + (_numbers(shown) if shown else "nothing found")
        return page.render(), summary, shown

    def open(self, args: dict[str, Any], room: int) -> tuple[str, str, list[int]]:
        link = args.get("id", -1)
        loc = _integer(args, "loc", -1)
        num_lines = _integer(args, "num_lines", -1)
        if isinstance(link, str) and re.fullmatch(r"\s*-?\d+\s*", link):
            link = int(link)
        if isinstance(link, str):
            doc = self._page_at_url(link)
        elif isinstance(link, int | float) and not isinstance(link, bool) and link >= 0:
            n = int(link)
            if not 1 <= n <= len(self.sources):
                raise ToolUsageError(f"Invalid link id `{n}`: links read 【id†...】 and ids are source numbers "
                                     f"1 to {len(self.sources)}")
            p = self.sources[n - 1]
            doc = self._document_page(p.document_id, p.page_start)
            if loc < 0:  # the reference centres on the linked passage: a few lines before it
                at = next((i for i, (a, b) in enumerate(doc.spans) if b > p.page_char_start), 0)
                loc = at - 4 if at > 4 else 0
        else:
            shown = self._page(_integer(args, "cursor", -1))
            if shown.document is None:
                raise ToolUsageError(f"Page [{shown.cursor}] is a results page: open one of its links 【id†...】")
            doc = shown.document
        return self._view(doc, max(loc, 0), num_lines, room)

    def find(self, args: dict[str, Any], room: int) -> tuple[str, str, list[int]]:
        pattern = args.get("pattern")
        if not isinstance(pattern, str) or not pattern.strip():
            raise ToolUsageError("`pattern` is required: the text to find")
        shown = self._page(_integer(args, "cursor", -1))
        if shown.document is None:
            raise ToolUsageError("Cannot run `find` on search results page or find results page")
        doc, wanted = shown.document, pattern.lower()
        lines: list[str] = []
        owners: list[int] = []
        budget, added = min(VIEW_TOKENS, room), list[int]()
        i = 0
        while i < len(doc.spans) and len(added) < FIND_MATCHES:
            if wanted not in doc.text[doc.spans[i][0]:doc.spans[i][1]].lower():
                i += 1
                continue
            end = min(i + FIND_LINES, len(doc.spans))
            snippet = [_clean(doc.text[a:b]) for a, b in doc.spans[i:end]]
            cost = self.count_tokens("\n".join(snippet)) + 3 * (len(snippet) + 1)
            if cost > budget:
                self.full = self.full or not added
                break
            budget -= cost
            n = self._number(_window(doc, i, end, self._chunk_ids(doc, i, end)))
            added.append(n)
            lines += [f"# 【{n}†match at L{i}】", *snippet, ""]
            owners += [n] * (len(snippet) + 2)
            i = end
        if not added:
            lines, owners = [f"No `find` results for pattern: `{pattern}`"], [0]
        title = f"Find results for text: `{pattern}` in `{doc.title}`"
        page = self._push(title, f"{doc.url}/find?pattern={pattern}", lines, owners)
        summary = (f"found “{pattern}” in {doc.title}, p. {doc.page_no}: "
                   + (f"{len(added)} match{'es' if len(added) > 1 else ''} {_numbers(added)}" if added else "no match"))
        return page.render(), summary, added

    # ---- citations ---------------------------------------------------------------------------
    def cited_sources(self, cursor: int, first: int, last: int) -> list[int]:
        """Source numbers shown on lines first..last of the page at `cursor` (none if no such lines)."""
        if not 0 <= cursor < len(self.pages):
            return []
        page = self.pages[cursor]
        lo, hi = max(first, page.start), min(last, page.end - 1)
        return list(dict.fromkeys(page.owners[i] for i in range(lo, hi + 1) if page.owners[i]))

    # ---- helpers -------------------------------------------------------------------------------
    def _view(self, doc: DocumentPage, loc: int, num_lines: int, room: int) -> tuple[str, str, list[int]]:
        if loc >= len(doc.spans):
            raise ToolUsageError(f"Invalid location parameter: `{loc}`. Cannot exceed page maximum of "
                                 f"{len(doc.spans) - 1}.")
        budget, end = min(VIEW_TOKENS, room), loc
        limit = len(doc.spans) if num_lines <= 0 else min(len(doc.spans), loc + num_lines)
        while end < limit:
            a, b = doc.spans[end]
            cost = self.count_tokens(doc.text[a:b]) + 3
            if cost > budget:
                break
            budget -= cost
            end += 1
        if end == loc:
            self.full = True
            raise ToolUsageError("No room is left in the model's window to show this page: answer with what you have")
        n = self._number(_window(doc, loc, end, self._chunk_ids(doc, loc, end)))
        lines = [_clean(doc.text[a:b]) for a, b in doc.spans]
        owners = [n if loc <= i < end else 0 for i in range(len(lines))]
        title = f"{doc.title}, page {doc.page_no} of {doc.pages}: source [{n}]"
        page = self._push(title, doc.url, lines, owners, loc, end, doc)
        return page.render(), f"opened {doc.title}, p. {doc.page_no} (lines {loc}–{end - 1}) [{n}]", [n]

    def _push(self, title: str, url: str, lines: list[str], owners: list[int], start: int = 0, end: int | None = None,
              document: DocumentPage | None = None) -> Page:
        page = Page(len(self.pages), title, url, lines, owners, start, len(lines) if end is None else end, document)
        self.pages.append(page)
        return page

    def _page(self, cursor: int) -> Page:
        if not self.pages:
            raise ToolUsageError("No pages to access! Search first, or open a source by its number")
        if cursor == -1:
            return self.pages[-1]
        if not 0 <= cursor < len(self.pages):
            raise ToolUsageError(f"Cursor `{cursor}` is out of range. Available cursor indices: "
                                 f"[0 - {len(self.pages) - 1}].")
        return self.pages[cursor]

    def _number(self, p: Passage) -> int:
        """The passage's source number: its old one if it was shown before, else the next."""
        for i, q in enumerate(self.sources):
            if (q.document_id, q.char_start, q.char_end) == (p.document_id, p.char_start, p.char_end):
                return i + 1
        self.sources.append(p)
        return len(self.sources)

    def _scope(self, collection: Any) -> Scope:
        """The question's scope, narrowed to `collection` when the model names one it may search."""
        if collection is None or collection == "":
            return self.scope
        if not isinstance(collection, str):
            raise ToolUsageError("`collection` should be a collection's name")
        if self.scope.collections and collection not in self.scope.collections:
            raise NotFoundError(collection)
        # The retriever answers a collection the user may not read as one that does not exist.
        return Scope((collection,), self.scope.documents, self.scope.readable)

    def _allowed(self, document_id: int) -> bool:
        """Whether the scope allows a chunk of this document: the same rule a search applies."""
        if self._documents is None:
            snap = self.retriever.snapshot()
            ids = self.retriever.scope_ids(snap, self.scope)
            docs = snap.table.document if ids is None else snap.table.document[np.isin(snap.table.ids, ids)]
            self._documents = frozenset(int(d) for d in np.unique(docs))
        return document_id in self._documents

    def _page_at_url(self, url: str) -> DocumentPage:
        m = _PAGE_URL.fullmatch(url.strip())
        if m is None:
            raise ToolUsageError(f"`{url[:80]}` is not a page address: library://doc/{{document}}/page/{{page}}")
        return self._document_page(int(m.group(1)), int(m.group(2) or 1))

    def _document_page(self, document_id: int, page_no: int) -> DocumentPage:
        missing = ToolUsageError(f"No page {page_no} of document {document_id} in the collections searched")
        if not self._allowed(document_id):
            raise missing  # the same answer for a document that is not there and one out of scope
        engine = self.retriever.store.engine
        p, d, c = s.pages.c, s.documents.c, s.collections.c
        with engine.connect() as conn:
            doc = conn.execute(select(d.title, d.path, d.doc_type, c.name).join(s.collections, c.id == d.collection_id)
                               .where(d.id == document_id)).first()
            text = conn.execute(select(p.text).where(p.document_id == document_id, p.page_no == page_no)).scalar()
            before = conn.execute(select(func.count(), func.coalesce(func.sum(func.length(p.text)), 0))
                                  .where(p.document_id == document_id, p.page_no < page_no)).one()
            pages = conn.execute(select(func.count()).where(p.document_id == document_id)).scalar() or 0
        if doc is None or text is None:
            raise missing
        offset = int(before[1]) + int(before[0]) * len(PAGE_SEPARATOR)
        spans = tuple((a, b) for a, b, _ in _wrap(text))
        return DocumentPage(document_id, doc.name, doc.title, doc.path, doc.doc_type, page_no, int(pages), text,
                            offset, spans)

    def _chunk_ids(self, doc: DocumentPage, first: int, end: int) -> tuple[int, ...]:
        """The stored chunks the lines first..end-1 show (what the audit log records)."""
        a, b = doc.offset + doc.spans[first][0], doc.offset + doc.spans[end - 1][1]
        ch = s.chunks.c
        with self.retriever.store.engine.connect() as conn:
            ids = conn.execute(select(ch.id).where(ch.document_id == doc.document_id, ch.char_start < b,
                                                   ch.char_end > a).order_by(ch.id)).scalars()
            return tuple(int(i) for i in ids)


def rewrite_citations(text: str, browser: LibraryBrowser) -> tuple[str, list[str]]:
    """The answer with the browser's citations (`【cursor†L9-L11】`, `【n†title】`) turned into the
    [n] of the sources they point at, and a problem for each that points at nothing shown."""
    problems: list[str] = []

    def replace(m: re.Match[str]) -> str:
        number, content = int(m.group(1)), m.group(2)
        lines = _LINES.fullmatch(content)
        if lines:
            first = int(lines.group(1))
            found = browser.cited_sources(number, first, int(lines.group(2) or first))
        else:  # a link: its id is a source number
            found = [number] if 1 <= number <= len(browser.sources) else []
        if not found:
            problems.append(f"{m.group(0)} points at no lines or source that were shown")
            return ""
        before = text[m.start() - 1] if m.start() else " "
        return (" " if not before.isspace() else "") + "[" + ", ".join(map(str, found)) + "]"

    out = _PARTIAL.sub("", LINE_CITATION.sub(replace, text))
    return out, problems


def _error(call: ToolCall, name: str, message: str) -> tuple[str, Step]:
    return json.dumps({"error": message}), Step(name or call.name, call.arguments, f"{name or 'tool'}: {message}",
                                               error=message)


def _arguments(text: str) -> dict[str, Any] | None:
    """The call's arguments as an object ({} for none); None when they are not a JSON object."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _integer(args: dict[str, Any], key: str, default: int) -> int:
    value = args.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ToolUsageError(f"`{key}` should be an integer, not `{type(value).__name__}`")
    try:
        number = float(value)
    except ValueError:
        raise ToolUsageError(f"`{key}` should be an integer, not `{str(value)[:40]}`") from None
    if not number.is_integer():
        raise ToolUsageError(f"`{key}` should be an integer, not `{value}`")
    return int(number)


def _wrap(text: str, width: int = WIDTH) -> list[tuple[int, int, str]]:
    """Display lines of `text` as (start, end, text): its own lines, long ones broken at a space
    (or at `width` when a word is longer), keeping every character's offset."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    for line in text.split("\n"):
        a, end = pos, pos + len(line)
        while end - a > width:
            cut = text.rfind(" ", a, a + width + 1)
            b = cut + 1 if cut > a else a + width
            out.append((a, b, text[a:b]))
            a = b
        out.append((a, end, text[a:end]))
        pos = end + 1
    return out


def _window(doc: DocumentPage, first: int, end: int, chunk_ids: tuple[int, ...]) -> Passage:
    """Lines first..end-1 of a document page as a passage: the source the model read."""
    a, b = doc.spans[first][0], doc.spans[end - 1][1]
    return Passage(document_id=doc.document_id, collection=doc.collection, title=doc.title, path=doc.path,
                   doc_type=doc.doc_type, chunk_ids=chunk_ids, text=doc.text[a:b], score=0.0,
                   char_start=doc.offset + a, char_end=doc.offset + b, page_start=doc.page_no, page_end=doc.page_no,
                   page_char_start=a, page_char_end=b)


def _clean(text: str) -> str:
    """Document text as display: its own 【】 cannot pass for links or citations (as the reference
    browser does), and page breaks show as empty lines."""
    return text.replace("【", "〖").replace("】", "〗").replace("\f", "")


def _numbers(ns: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, ns)) + "]"
