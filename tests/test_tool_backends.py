"""Both model backends speak the tool-use protocol of llm/generator.py the same way: offered
tools, a streamed ToolCall, the round sent back in `steps`, then the answer. The openai backend
runs against a stand-in server that answers with streamed `tool_calls`, through the official
client as in production; the native backend on a scripted token stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from llm.errors import GeneratorError
from llm.generator import Generator, Piece, Prompt, Tool, ToolCall, ToolStep, Turn
from llm.harmony import HarmonyTokenizer
from llm.native import NativeGenerator
from llm.openai_server import OpenAIGenerator
from llm.tiny import write_tokenizer
from tests.openai_standin import StandIn
from tests.test_harmony_tools import Scripted, native

SEARCH = Tool("search", "Search the library for passages.", {
    "type": "object", "required": ["query"],
    "properties": {"query": {"type": "string", "description": "What to look for"},
                   "collection": {"type": "string", "description": "Only this collection"}}})
OPEN = Tool("open", "Open a document's page.", {"type": "object", "properties": {"id": {"type": "string"}}})
FIRST_ARGS = json.dumps({"query": "parental leave part-time", "collection": "hr"})
SECOND_ARGS = json.dumps({"query": "part-time pro rata"})
ANSWER = "Part-time staff get leave pro rata [2]."


def ask(steps: tuple[ToolStep, ...] = (), tools: tuple[Tool, ...] = (SEARCH, OPEN)) -> Prompt:
    question = "And for part-time staff?"
    return Prompt("Answer from the library; cite passages as [n].", (Turn("user", question),), question, (),
                  today=date(2026, 11, 30), tools=tools, steps=steps)


def run_loop(gen: Generator, results: list[str], rounds: int = 4) -> tuple[list[ToolStep], str]:
    """What rag's loop does, reduced: run each call, send the round back, until an answer."""
    steps: list[ToolStep] = []
    for _ in range(rounds):
        reasoning, answer, call = "", "", None
        for item in gen.stream(ask(tuple(steps))):
            if isinstance(item, ToolCall):
                call = item
            elif item.channel == "analysis":
                reasoning += item.text
            else:
                answer += item.text
        if call is None:
            return steps, answer
        steps.append(ToolStep(call, results[len(steps)], reasoning))
    raise AssertionError("the loop did not end")


@pytest.fixture
def standin() -> Iterator[StandIn]:
    script: list[dict[str, Any]] = [
        {"reasoning": ["Search ", "first."], "tool_call": {"name": "search", "arguments": FIRST_ARGS}},
        {"reasoning": ["Narrower."], "tool_call": {"name": "search", "arguments": SECOND_ARGS}},
        {"reasoning": ["Passage 2 says it."], "answer": ["Part-time staff get leave ", "pro rata [2]."]}]
    with StandIn([], [], script=script) as server:
        yield server


@pytest.fixture
def tok_folder(tmp_path: Path) -> Path:
    write_tokenizer(tmp_path)
    return tmp_path


def scripted_native(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[NativeGenerator, Scripted]:
    tok = HarmonyTokenizer.from_file(str(folder / "tokenizer.json"))
    call = ("<|channel|>analysis<|message|>{why}<|end|><|start|>assistant<|channel|>commentary to=functions.search "
            "<|constrain|>json<|message|>{args}<|call|>")
    return native(folder, tok, [call.format(why="Search first.", args=FIRST_ARGS),
                                call.format(why="Narrower.", args=SECOND_ARGS),
                                f"<|channel|>analysis<|message|>Passage 2 says it.<|end|><|start|>assistant"
                                f"<|channel|>final<|message|>{ANSWER}<|return|>"], monkeypatch)


def test_both_backends_call_search_twice_then_answer(standin: StandIn, tok_folder: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    local, _ = scripted_native(tok_folder, monkeypatch)
    remote = OpenAIGenerator(standin.url, "gpt-oss-test")
    for gen in (local, remote):
        assert gen.tools_capable
        steps, answer = run_loop(gen, ["[1] Leave: 20 weeks.", "[2] Part-time: pro rata."])
        assert [(s.call.name, json.loads(s.call.arguments)) for s in steps] == \
            [("search", json.loads(FIRST_ARGS)), ("search", json.loads(SECOND_ARGS))]
        assert [s.reasoning for s in steps] == ["Search first.", "Narrower."]
        assert answer == ANSWER
        assert all(s.call.call_id for s in steps) and steps[0].call.call_id != steps[1].call.call_id


def test_openai_backend_offers_tools_and_sends_each_round_back(standin: StandIn) -> None:
    gen = OpenAIGenerator(standin.url, "gpt-oss-test")
    steps, _ = run_loop(gen, ["[1] Leave: 20 weeks.", "[2] Part-time: pro rata."])
    first, second, third = standin.requests
    assert first["tools"] == [
        {"type": "function", "function": {"name": "search", "description": "Search the library for passages.",
                                          "parameters": SEARCH.parameters}},
        {"type": "function", "function": {"name": "open", "description": "Open a document's page.",
                                          "parameters": OPEN.parameters}}]
    assert first["stream"] is True and [m["role"] for m in first["messages"]] == ["system", "user"]
    assert steps[0].call.call_id == "chatcmpl-tool-10"  # the server's id, gathered from the first fragment
    rounds = third["messages"][2:]
    assert rounds[0] == {"role": "assistant", "content": None, "reasoning_content": "Search first.", "tool_calls": [
        {"id": "chatcmpl-tool-10", "type": "function", "function": {"name": "search", "arguments": FIRST_ARGS}}]}
    assert rounds[1] == {"role": "tool", "tool_call_id": "chatcmpl-tool-10", "name": "search",
                         "content": "[1] Leave: 20 weeks."}
    assert [m["role"] for m in rounds] == ["assistant", "tool", "assistant", "tool"]
    assert rounds[3]["tool_call_id"] == rounds[2]["tool_calls"][0]["id"] == "chatcmpl-tool-20"
    assert second["messages"] == third["messages"][:4]


def test_openai_backend_without_tools_sends_none_and_ignores_stray_calls() -> None:
    script = [{"answer": ["Plain answer."], "tool_call": {"name": "search", "arguments": "{}"}}]
    with StandIn([], [], script=script) as server:
        out = list(OpenAIGenerator(server.url, "gpt-oss-test").stream(ask(tools=())))
        assert "tools" not in server.requests[0]
    assert out == [Piece("final", "Plain answer.")]


def test_openai_backend_yields_one_call_of_parallel_calls() -> None:
    script = [{"tool_call": [{"name": "open", "arguments": '{"id": "a"}'}, {"name": "search", "arguments": "{}"}]}]
    with StandIn([], [], script=script) as server:
        out = list(OpenAIGenerator(server.url, "gpt-oss-test").stream(ask()))
    assert out == [ToolCall("open", '{"id": "a"}', "chatcmpl-tool-10")]


def test_openai_backend_passes_a_malformed_call_on_as_it_came() -> None:
    script = [{"tool_call": {"name": "serach", "arguments": '{"query": '}}]
    with StandIn([], [], script=script) as server:
        (call,) = list(OpenAIGenerator(server.url, "gpt-oss-test").stream(ask()))
    assert isinstance(call, ToolCall) and (call.name, call.arguments) == ("serach", '{"query": ')


@pytest.mark.parametrize(("message", "shown"), [
    ("tools param requires --jinja flag", "answered 400: tools param requires --jinja flag"),
    ("unsupported parameter", "answered 400: unsupported parameter (the request offered tools, which some servers"),
])
def test_a_server_that_rejects_tools_gets_a_one_line_reason(message: str, shown: str) -> None:
    with StandIn(["Fine."], [], reject_tools=message) as server:
        gen = OpenAIGenerator(server.url, "gpt-oss-test")
        with pytest.raises(GeneratorError) as err:
            list(gen.stream(ask()))
        assert shown in str(err.value) and "\n" not in str(err.value)
        assert gen.check() is None and gen.describe()["backend"] == "openai"
        assert [p.text for p in gen.stream(ask(tools=())) if isinstance(p, Piece)] == ["Fine."]
