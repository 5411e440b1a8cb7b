"""The openai backend against servers that are not ragqa's own (stand-ins that answer as vLLM and
llama.cpp's llama-server do): the server's reason for an error reaches the user, the window the
server reports is the one prompts are built for, its /tokenize counts them, and `ragqa check
--generator` says what is in use."""

from __future__ import annotations

import json

import pytest

from llm.errors import GeneratorError
from llm.generator import Source
from llm.openai_server import OpenAIGenerator
from llm.server_facts import context_from_models, context_from_props, root_of, tokens_counted
from rag.prompt import build_prompt
from tests.helpers import Library, no_traceback, ragqa
from tests.openai_standin import StandIn

PROMPT = build_prompt("When did the bridge open?", [Source(1, "Bridges", "p. 1", "It opened in 1932.")],
                      reasoning="low", max_tokens=32)
LLAMA_CONTEXT_ERROR = "the request exceeds the available context size, try increasing it"


def test_a_servers_error_reaches_the_user_with_its_reason() -> None:
    with StandIn([], [], fail=(400, LLAMA_CONTEXT_ERROR)) as server:
        gen = OpenAIGenerator(server.url, "gpt-oss-test")
        with pytest.raises(GeneratorError) as failed:
            list(gen.stream(PROMPT))
    assert str(failed.value) == f"the generator server answered 400: {LLAMA_CONTEXT_ERROR}"


def test_an_error_in_the_middle_of_the_stream_reaches_the_user_with_its_reason() -> None:
    with StandIn(["It opened ", "in 1932 [1]."], ["Looking."], stream_error="slot 0 was cancelled: out of memory") \
            as server:
        gen = OpenAIGenerator(server.url, "gpt-oss-test")
        with pytest.raises(GeneratorError) as failed:
            list(gen.stream(PROMPT))
    assert str(failed.value) == "the generator server failed: slot 0 was cancelled: out of memory"
    assert "\n" not in str(failed.value)


@pytest.mark.parametrize("flavour, server_name, source", [("vllm", "vLLM", "/v1/models max_model_len"),
                                                           ("llama.cpp", "llama.cpp", "/props n_ctx")])
def test_the_window_and_the_token_counts_come_from_the_server(flavour: str, server_name: str, source: str) -> None:
    with StandIn([], [], flavour=flavour, context=3000) as server:
        gen = OpenAIGenerator(server.url, "gpt-oss-test", context=8192)
        assert gen.context_tokens == 3000
        assert gen.count_tokens("one two three four five") == 5  # the stand-in counts words
        facts = gen.describe()
        dialect = server.tokenized[-1]
    assert facts["server"] == f"{server_name} at {server.url}"
    assert facts["context"] == f"3000 (from the server's {source})"
    assert facts["tokenizer"] == "the server's /tokenize"
    assert ("prompt" in dialect) == (flavour == "vllm") and ("content" in dialect) == (flavour == "llama.cpp")


def test_a_server_that_says_nothing_keeps_the_configured_window_and_an_estimate() -> None:
    with StandIn([], [], flavour="plain") as server:
        gen = OpenAIGenerator(server.url, "gpt-oss-test", context=5000)
        assert gen.context_tokens == 5000 and gen.count_tokens("x" * 30) == 11
        assert gen.describe()["context"] == "5000 (configured; the server does not say)"


def test_a_window_the_operator_set_limits_the_servers() -> None:
    with StandIn([], [], flavour="vllm", context=32768) as server:
        assert OpenAIGenerator(server.url, "gpt-oss-test", max_context=4096).context_tokens == 4096
        assert OpenAIGenerator(server.url, "gpt-oss-test", max_context=65536).context_tokens == 32768


def test_the_server_facts_are_read_from_real_answer_shapes() -> None:
    vllm_models = {"object": "list", "data": [{"id": "openai/gpt-oss-20b", "object": "model", "owned_by": "vllm",
                                               "max_model_len": 131072}]}
    assert context_from_models(vllm_models, "openai/gpt-oss-20b") == 131072
    assert context_from_models(vllm_models, "other") == 131072  # the only model served
    assert context_from_models({"data": [{"id": "a"}, {"id": "b", "max_model_len": 9}]}, "c") is None
    assert context_from_props({"default_generation_settings": {"n_ctx": 65536}, "total_slots": 4}) == 65536
    assert context_from_props({"n_ctx": 2048}) == 2048 and context_from_props({"error": "x"}) is None
    assert tokens_counted({"count": 7, "tokens": [1]}) == 7 and tokens_counted({"tokens": [1, 2]}) == 2
    assert root_of("http://h:8000/v1/") == "http://h:8000" and root_of("http://h:8080") == "http://h:8080"


@pytest.mark.db
def test_a_prompt_is_never_larger_than_the_window_the_server_reports(library: Library,
                                                                     cli_env: dict[str, str]) -> None:
    long_text = " ".join(f"word{i}" for i in range(120)) + "."
    library({f"doc{i}.md": f"# Canteen {i}\n\nThe canteen opens at eight. {long_text}" for i in range(5)})
    with StandIn(["At eight [1]."], [], flavour="llama.cpp", context=800) as server:
        env = {**cli_env, "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_OPENAI_MODEL": "gpt-oss-test",
               "RAGQA_ANSWER_MAX_TOKENS": "256"}
        out = ragqa(env, "ask", "When does the canteen open?", "--json")
        sent = server.requests[0]
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    words = sum(len(m["content"].split()) for m in sent["messages"])  # the stand-in's tokens
    assert words + sent["max_tokens"] <= 800
    assert answer["dropped"] and all("800-token window" in d for d in answer["dropped"])
    assert answer["sources"]  # what fits is still used


@pytest.mark.db
def test_check_generator_prints_the_facts_or_why_none_answers(cli_env: dict[str, str]) -> None:
    with StandIn([], [], flavour="vllm", context=16384) as server:
        env = {**cli_env, "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_OPENAI_MODEL": "gpt-oss-test"}
        text = ragqa(env, "check", "--generator")
        as_json = ragqa(env, "check", "--generator", "--json")
    assert text.returncode == 0, text.stderr
    assert f"server:     vLLM at {server.url}" in text.stdout and "model:      gpt-oss-test" in text.stdout
    assert "context:    16384 (from the server's /v1/models max_model_len)" in text.stdout
    assert "tokenizer:  the server's /tokenize" in text.stdout
    facts = json.loads(as_json.stdout)
    assert facts["ok"] and facts["backend"] == "openai" and facts["problem"] is None
    down = ragqa({**cli_env, "RAGQA_OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "check", "--generator")
    no_traceback(down)
    assert down.returncode == 1 and "problem: cannot reach the generator server at http://127.0.0.1:9/v1" in down.stdout
    extractive = ragqa(cli_env, "check", "--generator", "--json")
    assert extractive.returncode == 0 and json.loads(extractive.stdout)["backend"] == "extractive"


@pytest.mark.db
def test_ask_shows_the_servers_reason_in_one_line(library: Library, cli_env: dict[str, str]) -> None:
    library({"canteen.md": "# Canteen\n\nThe canteen opens at eight and serves soup on Fridays."})
    with StandIn([], [], fail=(500, "model is loading, retry in a minute")) as server:
        env = {**cli_env, "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_OPENAI_MODEL": "gpt-oss-test"}
        out = ragqa(env, "ask", "When does the canteen open?")
    no_traceback(out)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: the generator server answered 500: model is loading, retry in a minute"
