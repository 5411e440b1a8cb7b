"""The library's tools (rag/tools.py) on their own: pages shown as gpt-oss's browsing tool shows
them, source numbers as link ids, scope on every call, and line citations mapped back to sources."""

from __future__ import annotations

import json

import pytest

from llm.generator import ToolCall
from rag.retrieval import Retriever, Scope
from rag.tools import WIDTH, LibraryBrowser, Step, _wrap, rewrite_citations
from tests.helpers import Library

CANTEEN = ("# Canteen\n\nThe canteen opens at 8 am and closes at 3 pm. Hot meals are served from noon.\n\n"
           + "\n\n".join(f"On day {d} of the week the menu offers soup number {d}, bread and a salad of the season, "
                         f"and the coffee machine on floor {d} is cleaned in the afternoon." for d in range(1, 8))
           + "\n\nVegetarian dishes are marked green on the board by the door of the kitchen.")
DOCS = {"canteen.md": CANTEEN,
        "parking.md": "# Parking\n\nStaff park in the north car park. Visitors park by the main entrance."}


@pytest.fixture
def browser_for(library: Library, store, embedder):
    library(DOCS, collection="general")
    library({"pay.md": "# Salaries\n\nThe finance director earns 200000 pounds a year."}, collection="hr",
            folder="hr")
    retriever = Retriever(store, lambda: embedder)
    return lambda scope=None: LibraryBrowser(retriever, scope, [], count_tokens=lambda t: len(t) // 4 + 1,
                                             collections=("general",))


def run(browser: LibraryBrowser, name: str, args: object, room: int = 4000) -> tuple[str, Step]:
    return browser.run(ToolCall(name, args if isinstance(args, str) else json.dumps(args), "c1"), room)


def test_lines_keep_their_offsets() -> None:
    text = "short line\n\n" + "word " * 60 + "\n" + "x" * 200
    lines = _wrap(text)
    assert all(len(t) <= WIDTH and text[a:b] == t for a, b, t in lines)
    assert "".join(t + ("\n" if i + 1 < len(lines) and lines[i + 1][0] == b + 1 else "")
                   for i, (a, b, t) in enumerate(lines)) == text


def test_search_open_find_show_pages_as_the_browsing_tool_does(browser_for, store) -> None:
    browser = browser_for(Scope(readable=("general",)))
    text, step = run(browser, "search", {"query": "canteen hot meals", "topn": 1})
    assert text.startswith("[0] Search results for `canteen hot meals`\n**viewing lines [0 - ")
    assert "\nL0: # 【1†Canteen†canteen.md】\nL1: " in text and step.sources == (1,)
    assert step.summary == "searched for “canteen hot meals”: [1]"
    text, step = run(browser, "open", {"id": 1})
    doc = next(d.id for d in store.documents("general") if d.title == "Canteen")
    assert text.startswith(f"[1] Canteen, page 1 of 1: source [2] (library://doc/{doc}/page/1)\n**viewing lines [0 - ")
    assert step.sources == (2,) and browser.sources[1].chunk_ids and "noon" in browser.sources[1].text
    text, step = run(browser, "find", {"pattern": "VEGETARIAN"})
    assert text.startswith("[2] Find results for text: `VEGETARIAN` in `Canteen`") and "# 【3†match at L" in text
    assert step.summary.startswith("found “VEGETARIAN” in Canteen, p. 1: 1 match [3]")
    # A page seen before keeps its number; the same window opened twice is one source.
    _, again = run(browser, "open", {"id": f"library://doc/{doc}/page/1"})
    assert again.sources == (2,) and len(browser.sources) == 3
    text, step = run(browser, "find", {"pattern": "nowhere to be found"}, room=4000)
    assert "No `find` results for pattern: `nowhere to be found`" in text and not step.sources


def test_every_call_stays_inside_the_scope(browser_for, store) -> None:
    hr_doc = next(d.id for d in store.documents("hr"))
    parking = next(d.id for d in store.documents("general") if d.title == "Parking")
    browser = browser_for(Scope(readable=("general",)))
    for args in ({"id": f"library://doc/{hr_doc}/page/1"}, {"id": "library://doc/99999/page/1"},
                 {"id": f"library://doc/{parking}/page/7"}):
        text, step = run(browser, "open", args)
        assert json.loads(text)["error"].startswith("No page ") and not step.sources and step.error
    text, _ = run(browser, "search", {"query": "finance director salary", "source": "hr"})
    assert json.loads(text) == {"error": "No collection `hr`; collections this question may use: general"}
    text, _ = run(browser, "search", {"query": "finance director salary pounds"})
    assert "200000" not in text and all(p.collection == "general" for p in browser.sources)
    # A question about one document: another one of the same collection does not open either.
    canteen = next(d.id for d in store.documents("general") if d.title == "Canteen")
    only = browser_for(Scope(documents=(canteen,)))
    assert "error" in json.loads(run(only, "open", {"id": f"library://doc/{parking}/page/1"})[0])
    assert run(only, "open", {"id": f"library://doc/{canteen}"})[1].sources == (1,)


def test_bad_arguments_are_answered_not_raised(browser_for) -> None:
    browser = browser_for()
    for name, args, error in [("search", "[1, 2]", "Invalid function arguments"),
                              ("search", {"query": 3}, "`query` is required"),
                              ("search", {"query": "x", "topn": True}, "`topn` should be an integer"),
                              ("open", {"id": 4}, "Invalid link id `4`"),
                              ("open", {"id": "http://example.com"}, "`http://example.com` is not a page address"),
                              ("find", {"pattern": "x", "cursor": "abc"}, "`cursor` should be an integer"),
                              ("python", {}, "Unknown function: python")]:
        text, step = run(browser, name, args)
        assert json.loads(text)["error"].startswith(error) and step.error.startswith(error), (name, text)
    run(browser, "search", {"query": "parking"})
    text, _ = run(browser, "find", {"pattern": "car"})
    assert json.loads(text)["error"] == "Cannot run `find` on search results page or find results page"
    assert json.loads(run(browser, "open", {"cursor": 9})[0])["error"].startswith("Cursor `9` is out of range")


def test_line_citations_become_source_numbers(browser_for) -> None:
    browser = browser_for()
    run(browser, "search", {"query": "canteen hot meals", "topn": 1})
    run(browser, "open", {"id": 1})
    answer = "Meals from noon【0†L1-L2】; see 【1†L0】 and 【2†Canteen】 or【7†L3】. Also 【1†"
    text, problems = rewrite_citations(answer, browser)
    assert text == "Meals from noon [1]; see [2] and [2] or. Also " and problems == [
        "【7†L3】 points at no lines or source that were shown"]
    assert browser.cited_sources(1, 500, 600) == []
