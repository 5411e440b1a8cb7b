"""The tool loop (rag/answer.py with rag/tools.py): scripted generators that can call tools, as a
gpt-oss backend does, search the library, open pages and answer; the loop keeps every passage as a
numbered source, checks the citations against all of them, keeps to the user's scope and stops a
model that never stops calling."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from llm.generator import Piece, Prompt, ToolCall
from rag.answer import NO_TOOL_ANSWER, Answerer, Collected, _room
from rag.audit import answer_detail, entries, record
from rag.retrieval import Retriever, Scope
from rag.tools import Step
from tests.helpers import FileSpec, Library, ScriptedModel

MAIN = str(Path(__file__).parents[1] / "ragqa" / "ui_app.py")
HANDBOOK: dict[str, FileSpec] = {
    "leave.md": "# Parental leave\n\nStaff receive 26 weeks of parental leave on full pay after one year of "
                "service.",
    "canteen.md": "# Canteen\n\nThe canteen opens at 8 am and closes at 3 pm. Hot meals are served from noon.",
    "parttime.md": "# Part-time contracts\n\nPart-time staff receive parental leave pro rata to their contracted "
                   "hours, with a minimum of ten weeks.",
}
SALARIES: dict[str, FileSpec] = {"pay.md": "# Salaries\n\nThe finance director earns 200000 pounds a year."}

Round = Callable[[Prompt], Sequence[Piece | ToolCall]]


class Scripted(ScriptedModel):
    """A tools-capable generator that plays one scripted round per request (the last round again
    once the script runs out), recording every prompt it was given."""

    tools_capable = True

    def __init__(self, rounds: Sequence[Round], context: int = 8192) -> None:
        super().__init__(context)
        self.rounds = list(rounds)

    def stream(self, prompt: Prompt) -> Iterator[Piece | ToolCall]:
        self.prompts.append(prompt)
        yield from self.rounds[min(len(self.prompts), len(self.rounds)) - 1](prompt)


def call(name: str, arguments: object) -> Round:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return lambda prompt: [Piece("analysis", f"I should call {name}."), ToolCall(name, text, f"call-{name}")]


def link(result: str, title: str) -> int:
    """The source number a tool result shows for the document titled `title`."""
    found = re.search(r"【(\d+)†" + re.escape(title), result)
    assert found, result
    return int(found.group(1))


@pytest.fixture
def answerer_for(library: Library, store, embedder) -> Callable[..., Answerer]:
    library(HANDBOOK, collection="handbook", folder="handbook")
    library(SALARIES, collection="hr", folder="hr")
    retriever = Retriever(store, lambda: embedder)
    return lambda generator, **kw: Answerer(retriever, generator, passages=1, **kw)


def test_two_searches_then_an_answer_citing_what_only_the_second_found(answerer_for, store) -> None:
    def answer(prompt: Prompt) -> list[Piece | ToolCall]:
        n = link(prompt.steps[1].result, "Part-time contracts")
        return [Piece("analysis", "The second search has it."),
                Piece("final", f"Part-time staff receive parental leave pro rata to their contracted hours [{n}].")]

    model = Scripted([call("search", {"query": "canteen opening hours"}),
                      call("search", {"query": "part-time staff leave", "topn": 2}), answer])
    answerer = answerer_for(model)
    answer_ = answerer.ask("How long is parental leave?", scope=Scope(readable=("handbook",)))
    assert [s.name for s in answer_.steps] == ["search", "search"] and not answer_.notes
    n = link(model.prompts[2].steps[1].result, "Part-time contracts")
    assert n > 1 and n not in answer_.steps[0].sources and n in answer_.steps[1].sources
    cited = [s for s in answer_.sources if s.cited]
    assert [s.number for s in cited] == [n] and cited[0].passage.title == "Part-time contracts"
    assert not answer_.problems and cited[0].quotes and answer_.answered
    assert [s.number for s in answer_.sources] == list(range(1, len(answer_.sources) + 1))
    assert "second search" not in answer_.text and answer_.reasoning.startswith("I should call search")
    # Each request carried the tools and the rounds so far; the first round's source stayed [1].
    assert [len(p.steps) for p in model.prompts] == [0, 1, 2] and all(p.tools for p in model.prompts)
    assert model.prompts[1].steps[0].reasoning == "I should call search."
    assert answer_.sources[0].passage.title == "Parental leave"
    record(store.engine, "hannah", "ask", **answer_detail(answer_))
    logged = entries(store.engine)[-1]["detail"]
    assert [c["name"] for c in logged["tool_calls"]] == ["search", "search"]
    assert json.loads(logged["tool_calls"][1]["arguments"])["query"] == "part-time staff leave"
    assert set(cited[0].passage.chunk_ids) <= set(logged["chunks"])
    as_json = answer_.as_json()
    assert as_json["steps"][1]["sources"] == list(answer_.steps[1].sources)


def test_open_and_find_then_line_citations_become_source_numbers(answerer_for) -> None:
    def open_it(prompt: Prompt) -> list[Piece | ToolCall]:
        return list(call("open", {"id": link(prompt.steps[0].result, "Part-time contracts")})(prompt))

    def answer(prompt: Prompt) -> list[Piece | ToolCall]:
        return [Piece("final", "Part-time staff get at least ten weeks 【2†L0-L1】, pro rata to their hours 【1†L0】.")]

    model = Scripted([call("search", {"query": "part-time contracts"}), open_it,
                      call("find", {"pattern": "MINIMUM"}), answer])
    answer_ = answerer_for(model).ask("How long is parental leave?")
    opened, found = answer_.steps[1], answer_.steps[2]
    assert opened.summary.startswith("opened Part-time contracts") and found.summary.startswith("found “MINIMUM”")
    page = model.prompts[2].steps[1].result
    assert page.startswith("[1] Part-time contracts") and "library://doc/" in page and "\nL0: " in page
    assert "**viewing lines [0 - " in page
    assert model.prompts[3].steps[2].result.startswith("[2] Find results for text: `MINIMUM`")
    assert "【" not in answer_.text and not answer_.problems
    cited = {s.number for s in answer_.sources if s.cited}
    assert cited == {found.sources[0], opened.sources[0]}
    assert all(answer_.sources[n - 1].passage.title == "Part-time contracts" for n in cited)
    window = answer_.sources[opened.sources[0] - 1]
    assert window.quotes and "ten weeks" in window.passage.text and window.passage.chunk_ids


def test_a_collection_the_user_may_not_read_gives_nothing(answerer_for, store) -> None:
    hr_doc = next(d.id for d in store.documents("hr"))
    model = Scripted([call("search", {"query": "finance director salary", "collection": "hr"}),
                      call("search", {"query": "finance director salary", "collection": "no-such"}),
                      call("search", {"query": "finance director salary pounds a year", "topn": 10}),
                      call("open", {"id": f"library://doc/{hr_doc}/page/1"}),
                      lambda prompt: [Piece("final", "The documents do not say.")]])
    answer_ = answerer_for(model, tool_rounds=4).ask("How much does the finance director earn?",
                                                    scope=Scope(readable=("handbook",)))
    results = [st.result for st in model.prompts[-1].steps]
    assert json.loads(results[0])["error"] == "No collection `hr`; collections this question may use: handbook"
    assert results[0].replace("hr", "no-such") == results[1]  # as if it did not exist
    assert "200000" not in "".join(results) and "Salaries" not in "".join(results)
    assert "No page 1 of document" in results[3]
    assert {s.passage.collection for s in answer_.sources} == {"handbook"}
    assert not any(st.sources for st in (answer_.steps[0], answer_.steps[1], answer_.steps[3]))
    hr_chunks = {c for s in answer_.sources for c in s.passage.chunk_ids if s.passage.document_id == hr_doc}
    assert not hr_chunks and not set(answer_detail(answer_)["documents"]) & {hr_doc}


def test_bad_calls_get_error_results_and_the_answer_still_comes(answerer_for) -> None:
    model = Scripted([call("search", "{not json"), call("browse", {"url": "x"}), call("open", {"cursor": 7}),
                      call("find", {"pattern": "x"}), call("functions.search", {"query": ""}),
                      lambda prompt: [Piece("final", "Staff receive 26 weeks of parental leave [1].")]])
    answer_ = answerer_for(model, tool_rounds=5).ask("How long is parental leave?")
    errors = [st.error for st in answer_.steps]
    assert errors[0].startswith("Invalid function arguments") and errors[1].startswith("Unknown function: browse")
    assert errors[2] == errors[3] == "No pages to access! Search first, or open a source by its number"
    assert errors[4].startswith("`query` is required")
    assert all(json.loads(st.result)["error"] for st in model.prompts[-1].steps)
    assert answer_.answered and not answer_.problems and not answer_.notes


def test_a_model_that_never_stops_calling_is_stopped_by_the_round_cap(answerer_for) -> None:
    model = Scripted([call("search", {"query": "leave"})])
    answer_ = answerer_for(model, tool_rounds=2).ask("How long is parental leave?")
    assert len(answer_.steps) == 2 and len(model.prompts) == 4
    assert not model.prompts[3].tools and model.prompts[3].instructions.endswith("from the sources and the tool "
                                                                                 "results you have.")
    assert answer_.text == NO_TOOL_ANSWER and not answer_.answered
    assert any("limit of 2 tool calls" in n for n in answer_.notes) and any("kept calling" in n for n in answer_.notes)


def test_the_time_limit_asks_for_the_answer_with_what_was_found(answerer_for) -> None:
    now = [0.0]

    def tick() -> float:
        now[0] += 50.0
        return now[0]

    def searching_or_answering(prompt: Prompt) -> list[Piece | ToolCall]:
        if prompt.tools:
            return list(call("search", {"query": "part-time"})(prompt))
        return [Piece("final", "Staff receive 26 weeks of parental leave [1].")]

    model = Scripted([searching_or_answering])
    answer_ = answerer_for(model, tool_rounds=50, tool_time_s=120, clock=tick).ask("How long is parental leave?")
    assert 1 <= len(answer_.steps) < 5 and answer_.answered and answer_.sources[0].cited
    assert any("RAGQA_TOOL_TIME_S" in n for n in answer_.notes)


def test_tool_results_count_against_the_window(answerer_for, library: Library) -> None:
    long_page = "# Travel\n\n" + "\n".join(f"Rule {i}: claims for journey type {i} go to the travel desk."
                                           for i in range(400))
    library({"travel.md": long_page}, collection="handbook", folder="travel")

    def opening(prompt: Prompt) -> list[Piece | ToolCall]:
        if not prompt.tools:
            return [Piece("final", "Claims go to the travel desk [1].")]
        last = prompt.steps[-1].result if prompt.steps else ""
        if "【" not in last and prompt.steps:
            return list(call("open", {"cursor": len(prompt.steps) - 1, "loc": 20 * len(prompt.steps)})(prompt))
        return list(call("search", {"query": "travel desk claims journey"})(prompt))

    model = Scripted([opening], context=4200)
    answerer = answerer_for(model, tool_rounds=40)
    draft = answerer.prepare("Where do travel claims go?")
    collected = Collected()
    streamed = list(answerer.stream(draft, collected))
    answer_ = answerer.finish(draft, collected)
    assert any(isinstance(x, Step) for x in streamed) and 1 <= len(answer_.steps) < 40
    assert any("window is full" in n for n in answer_.notes)
    assert all(_room(p, model) >= 0 for p in model.prompts)  # every request fitted, results included
    assert answer_.answered


def test_tools_off_or_a_backend_without_tools_gets_no_tools(answerer_for) -> None:
    model = Scripted([lambda prompt: [Piece("final", "Staff receive 26 weeks of parental leave [1].")]])
    assert not answerer_for(model, tools="off").prepare("How long is parental leave?").prompt.tools
    model.tools_capable = False
    draft = answerer_for(model).prepare("How long is parental leave?")
    assert not draft.prompt.tools and "Searching the library" not in draft.prompt.instructions
    model.tools_capable = True
    draft = answerer_for(model).prepare("How long is parental leave?", scope=Scope(readable=("handbook",)))
    assert draft.prompt.tools and "Collections this question may use: handbook." in draft.prompt.instructions


def test_ask_page_shows_the_steps_in_a_closed_box(monkeypatch: pytest.MonkeyPatch, answerer_for, settings,
                                                  store) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from rag.conversations import Conversations

    def answer(prompt: Prompt) -> list[Piece | ToolCall]:
        n = link(prompt.steps[0].result, "Part-time contracts")
        return [Piece("analysis", "SECRET REASONING"), Piece("final", f"Part-time staff receive parental leave pro "
                                                                      f"rata to their contracted hours [{n}].")]

    model = Scripted([call("search", {"query": "part-time staff"}), answer])
    for key, value in {"RAGQA_HOME": str(settings.home), "RAGQA_DATABASE_URL": settings.database_url,
                       "RAGQA_CHUNK_TOKENS": "64", "RAGQA_CHUNK_OVERLAP": "8"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("ragqa.wiring.generator", lambda settings, retriever=None: model)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(MAIN, default_timeout=120)
        at.run()
        at.chat_input[0].set_value("How long is parental leave for part-time staff?").run()
    finally:
        st.cache_resource.clear()
    assert not at.exception and not at.error
    [box] = at.status
    assert box.label == "Searched the library: 1 step" and box.state == "complete" and not box.proto.expanded
    assert [m.value.replace("\\", "") for m in box.markdown][0].startswith("searched for “part-time staff”: [")
    [conv] = Conversations(store.engine).recent()
    stored = Conversations(store.engine).messages(conv.id)[-1]
    assert stored.answer is not None and stored.answer["steps"][0]["name"] == "search"
    assert "SECRET" not in stored.content and "pro rata" in stored.content
    cited = [s for s in stored.answer["sources"] if s["cited"]]
    assert [s["title"] for s in cited] == ["Part-time contracts"]
    # Reasoning only in its own closed box, never as the answer.
    [reasoning] = [e for e in at.expander if e.label == "Reasoning"]
    secret = [m for m in reasoning.markdown if "SECRET" in m.value]
    assert secret and [m for m in at.markdown if "SECRET" in m.value] == secret


# ---- through the real backends ------------------------------------------------------------------
SECOND = "Part-time contracts"


def second_link(seen: str) -> int:
    """The source number the last search showed for the part-time passage."""
    return int(re.findall(r"【(\d+)†" + SECOND, seen)[-1])


def test_native_engine_on_a_scripted_token_stream_searches_twice_then_answers(
        answerer_for, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The native backend renders the offer, the calls and the results in harmony (here under the
    `browser` namespace, as gpt-oss was trained) and parses the engine's tokens back into calls."""
    from llm.harmony import HarmonyTokenizer
    from llm.native import NativeGenerator
    from llm.tiny import write_tokenizer
    from tests.test_harmony_tools import published_ids

    write_tokenizer(tmp_path)
    tok = HarmonyTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    browse = ("<|channel|>analysis<|message|>{why}<|end|><|start|>assistant<|channel|>analysis to=browser.search "
              "<|constrain|>json<|message|>{args}<|call|>")
    replies: list[Callable[[str], str]] = [
        lambda seen: browse.format(why="Canteen first.", args='{"query": "canteen opening hours"}'),
        lambda seen: browse.format(why="Now part-time.", args='{"query": "part-time staff leave", "topn": 2}'),
        lambda seen: browse.format(why="Broken call.", args='{"query": '),
        lambda seen: ("<|channel|>analysis<|message|>The second search has it.<|end|><|start|>assistant<|channel|>"
                      "final<|message|>Part-time staff receive parental leave pro rata to their contracted hours "
                      f"[{second_link(seen)}].<|return|>")]
    prompts: list[str] = []

    def tokens(ids: list[int], params: object) -> Iterator[int]:
        prompts.append(tok.decode(ids))
        for token in published_ids(tok, replies[len(prompts) - 1](prompts[-1])):
            yield token
            if token in tok.stop_ids:
                return

    native = NativeGenerator(tmp_path, device="cpu", context=32768)
    monkeypatch.setattr(native, "_tokens", tokens)
    answer_ = answerer_for(native, tool_namespace="browser").ask("How long is parental leave?")
    assert "namespace browser {" in prompts[0] and "to=browser.search" in prompts[1]
    assert [s.name for s in answer_.steps] == ["search", "search", "search"] and answer_.steps[2].error
    assert "Invalid function arguments" in prompts[3] and "The second search has it." not in answer_.text
    check_second_search_cited(answer_, store)


def test_openai_backend_against_a_server_answering_with_tool_calls(answerer_for, store) -> None:
    from llm.openai_server import OpenAIGenerator
    from tests.openai_standin import StandIn

    def reply(request: dict[str, Any]) -> dict[str, Any]:
        results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        if len(results) == 0:
            return {"reasoning": ["Canteen first."],
                    "tool_call": {"name": "search", "arguments": '{"query": "canteen opening hours"}'}}
        if len(results) == 1:
            return {"reasoning": ["Now part-time."],
                    "tool_call": {"name": "search", "arguments": '{"query": "part-time staff leave", "topn": 2}'}}
        n = second_link(str(results[-1]))
        return {"reasoning": ["The second search has it."],
                "answer": ["Part-time staff receive parental leave pro rata ", f"to their contracted hours [{n}]."]}

    with StandIn([], [], script=reply) as server:
        answer_ = answerer_for(OpenAIGenerator(server.url, "gpt-oss-test")).ask("How long is parental leave?")
        requests = server.requests
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["search", "open", "find"]
    assert [m["role"] for m in requests[2]["messages"]][-4:] == ["assistant", "tool", "assistant", "tool"]
    assert answer_.reasoning.endswith("The second search has it.") and "second search" not in answer_.text
    check_second_search_cited(answer_, store)


def check_second_search_cited(answer_, store) -> None:
    n = next(s.number for s in answer_.sources if s.passage.title == SECOND)
    assert n not in answer_.steps[0].sources and n in answer_.steps[1].sources
    assert [s.number for s in answer_.sources if s.cited] == [n] and not answer_.problems and answer_.answered
    record(store.engine, "hannah", "ask", **answer_detail(answer_))
    calls = entries(store.engine)[-1]["detail"]["tool_calls"]
    assert [json.loads(c["arguments"])["query"] for c in calls[:2]] == ["canteen opening hours",
                                                                        "part-time staff leave"]


def test_openai_backend_a_runaway_model_ends_with_a_clear_message(answerer_for) -> None:
    from llm.openai_server import OpenAIGenerator
    from tests.openai_standin import StandIn

    def reply(request: dict[str, Any]) -> dict[str, Any]:
        return {"tool_call": {"name": "search", "arguments": '{"query": "leave", "collection": "hr"}'}}

    with StandIn([], [], script=reply) as server:
        answer_ = answerer_for(OpenAIGenerator(server.url, "gpt-oss-test"), tool_rounds=2).ask(
            "How long is parental leave?", scope=Scope(readable=("handbook",)))
        requests = server.requests
    assert len(requests) == 4 and "tools" not in requests[-1] and requests[2].get("tools")
    assert answer_.text == NO_TOOL_ANSWER and any("limit of 2 tool calls" in n for n in answer_.notes)
    assert all(st.error.startswith("No collection `hr`") for st in answer_.steps)


def test_ask_with_tools_on_the_tiny_random_checkpoint_completes(library: Library, cli_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    from llm.tiny import TinySpec, make_tiny_checkpoint
    from tests.helpers import no_traceback, ragqa

    library(HANDBOOK)
    model = make_tiny_checkpoint(tmp_path / "tiny", TinySpec())
    # One token a byte: a window wide enough for the tools' description beside the sources.
    env = {**cli_env, "RAGQA_MODEL_PATH": str(model), "RAGQA_TOOLS": "auto", "RAGQA_ANSWER_MAX_TOKENS": "48",
           "RAGQA_CONTEXT_TOKENS": "12000", "RAGQA_GENERATOR_SEED": "0", "RAGQA_TOOL_ROUNDS": "2"}
    out = ragqa(env, "ask", "How long is parental leave?", "--json", "--reasoning", "low")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["backend"] == "native" and answer["sources"] and len(answer["steps"]) <= 2
    assert not any("could not search" in n for n in answer["notes"])  # the tools were offered
    assert not answer["reasoning"].strip() or answer["reasoning"].strip() not in answer["answer"]
    assert "<|channel|>" not in answer["answer"] and "<|message|>" not in answer["answer"]
    text = ragqa(env, "ask", "How long is parental leave?", "--reasoning", "low")
    assert text.returncode == 0 and "reasoning:" not in text.stdout


def test_a_window_too_small_for_tools_keeps_the_first_passages(answerer_for) -> None:
    model = Scripted([lambda prompt: [Piece("final", "Staff receive 26 weeks of parental leave [1].")]], context=2600)
    answer_ = answerer_for(model).ask("How long is parental leave?")
    assert not model.prompts[0].tools and answer_.sources and answer_.answered
    assert any("no room for tools beside the sources" in n for n in answer_.notes)


def test_ragqa_ask_prints_the_steps_and_lists_them_in_json(library: Library, cli_env: dict[str, str]) -> None:
    from tests.helpers import no_traceback, ragqa
    from tests.openai_standin import StandIn

    library(HANDBOOK)

    def reply(request: dict[str, Any]) -> dict[str, Any]:
        results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        if not results:
            return {"reasoning": ["HIDDEN THOUGHT"],
                    "tool_call": {"name": "search", "arguments": '{"query": "part-time staff leave"}'}}
        return {"answer": [f"Part-time staff receive leave pro rata to their contracted hours "
                           f"【{len(results) - 1}†L1】."]}

    with StandIn([], [], script=reply) as server:
        env = {**cli_env, "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_ANSWER_PASSAGES": "1"}
        text = ragqa(env, "ask", "How long is parental leave?")
        as_json = ragqa(env, "ask", "How long is parental leave?", "--json")
        off = ragqa({**env, "RAGQA_TOOLS": "off"}, "ask", "How long is parental leave?", "--json")
        offered = [bool(r.get("tools")) for r in server.requests]
    no_traceback(text)
    assert text.returncode == 0 and "- searched for “part-time staff leave”: [" in text.stdout
    assert "HIDDEN THOUGHT" not in text.stdout and "【" not in text.stdout
    answer = json.loads(as_json.stdout)
    assert [s["name"] for s in answer["steps"]] == ["search"] and answer["steps"][0]["sources"]
    cited = [s for s in answer["sources"] if s["cited"]]
    assert cited and cited[0]["title"] == "Part-time contracts" and not answer["problems"]
    assert offered[:2] == [True, True] and offered[-1] is False and json.loads(off.stdout)["steps"] == []
