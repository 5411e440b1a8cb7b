"""The openai backend against a real llama.cpp `llama-server` (tests/test_generator_server.py checks
the same behaviour against a stand-in): a random tiny checkpoint is converted to GGUF with
llama.cpp's own converter (scripts/convert_gguf.py, experts kept MXFP4) and served on a free port;
ragqa must read the server's facts, pass its errors on in one line and never send a prompt larger
than the window the server reports.

llama-server is looked for in RAGQA_LLAMA_SERVER, then in the cache scripts/llamacpp.sh builds
into, then on PATH; without it (or without the llama.cpp tree the converter comes from) the tests
skip, naming the script that builds it. Nothing is downloaded here."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llm import server_facts
from llm.openai_server import OpenAIGenerator
from llm.server_facts import ServerFacts
from tests.helpers import Library, no_traceback, ragqa

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("RAGQA_LLAMACPP_DIR") or Path.home() / ".cache" / "ragqa" / "llama.cpp")
BUILD_HINT = "build it with scripts/llamacpp.sh server (or set RAGQA_LLAMA_SERVER)"
CONTEXT = 4096  # the server's window (-c, one slot): the tiny tokenizer spends a token per byte
MODEL = "gpt-oss-tiny"  # the name the server serves the model under (--alias)


def find_llama_server() -> Path | None:
    """RAGQA_LLAMA_SERVER, then scripts/llamacpp.sh's cache, then PATH."""
    candidates = [os.environ.get("RAGQA_LLAMA_SERVER"), str(CACHE / "bin" / "llama-server"),
                  shutil.which("llama-server")]
    return next((Path(c) for c in candidates if c and os.access(c, os.X_OK)), None)


def find_llama_cpp_source() -> Path | None:
    """The llama.cpp tree whose convert_hf_to_gguf.py writes the GGUF (RAGQA_LLAMACPP_SRC or the cache's)."""
    candidates = [os.environ.get("RAGQA_LLAMACPP_SRC"), str(CACHE / "src" / "llama.cpp")]
    return next((Path(c) for c in candidates if c and (Path(c) / "convert_hf_to_gguf.py").is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return 0, {}


@dataclass(frozen=True)
class LlamaServer:
    url: str  # the OpenAI base URL (…/v1)
    root: str
    log: Path

    def props(self) -> dict:
        return _get(f"{self.root}/props")[1]


def _wait_healthy(proc: subprocess.Popen[bytes], root: str, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if _get(f"{root}/health")[0] == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"llama-server did not become healthy in {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """llama-server and a random tiny checkpoint converted to GGUF by llama.cpp's own converter
    (which also writes gpt-oss's chat template into it, as a real gpt-oss GGUF has)."""
    binary, source = find_llama_server(), find_llama_cpp_source()
    if binary is None:
        pytest.skip(f"llama-server not found: {BUILD_HINT}")
    if source is None:
        pytest.skip(f"llama.cpp's converter (convert_hf_to_gguf.py) not found: {BUILD_HINT}")
    from llm.tiny import TinySpec, make_tiny_checkpoint

    work = tmp_path_factory.mktemp("llama")
    checkpoint = make_tiny_checkpoint(work / "tiny", TinySpec(sliding_window=128))
    gguf = work / "tiny.gguf"
    converted = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_gguf.py"), str(checkpoint), str(gguf),
                                "--llama-cpp", str(source)], capture_output=True, text=True, timeout=600, check=False)
    assert converted.returncode == 0, converted.stderr[-3000:]
    return binary, gguf


@contextmanager
def serving(binary: Path, gguf: Path, *args: str) -> Iterator[LlamaServer]:
    """llama-server on a free port with one slot of CONTEXT tokens, stopped on the way out."""
    port, log = _free_port(), gguf.parent / f"llama-server-{time.monotonic_ns()}.log"
    root = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                                 "--alias", MODEL, "-c", str(CONTEXT), "-np", "1", "-t", "2", *args],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, root, log)
        yield LlamaServer(f"{root}/v1", root, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: tuple[Path, Path]) -> Iterator[LlamaServer]:
    """The server with a plain chat template: random weights cannot write harmony, and with
    gpt-oss's template llama-server rejects every reply it cannot parse (the test below)."""
    with serving(*tiny_gguf, "--chat-template", "chatml") as server:
        yield server


class Recorder:
    """A pass-through in front of the server that keeps the chat requests ragqa sends, so the test
    can ask the server itself how many tokens each prompt is."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.chats: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self, body: bytes | None) -> None:
                request = urllib.request.Request(outer.upstream + self.path, data=body,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=300) as r:
                        status, kind, payload = r.status, r.headers.get("Content-Type", ""), r.read()
                except urllib.error.HTTPError as e:
                    status, kind, payload = e.code, e.headers.get("Content-Type", ""), e.read()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/chat/completions"):
                    outer.chats.append(json.loads(body))
                self._forward(body)

        return Handler


def prompt_tokens(server: LlamaServer, chat: dict[str, Any]) -> int:
    """The server's own count of a chat request's prompt (the template applied): its usage."""
    body = json.dumps({**chat, "stream": False, "max_tokens": 1}).encode()
    request = urllib.request.Request(f"{server.url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as r:
        return int(json.loads(r.read())["usage"]["prompt_tokens"])


def _env(cli_env: dict[str, str], server: LlamaServer, **extra: str) -> dict[str, str]:
    return {**cli_env, "RAGQA_GENERATOR": "openai", "RAGQA_OPENAI_BASE_URL": server.url, "RAGQA_OPENAI_MODEL": MODEL,
            **extra}


@pytest.mark.slow
def test_the_gguf_is_the_same_model(tiny_gguf: tuple[Path, Path], llama_server: LlamaServer) -> None:
    """llama.cpp's greedy tokens on the converted GGUF are our engine's on the checkpoint (float32),
    so the two engines are compared on one model (scripts/bench_llamacpp.sh)."""
    ids = list(b"The canteen opens at eight.")  # the tiny tokenizer: one token per byte
    ours = ragqa(None, "llm", "generate", "--model", str(tiny_gguf[1].parent / "tiny"), "--token-ids",
                 ",".join(map(str, ids)), "--max-new-tokens", "8", "--greedy", "--dtype", "float32", "--json")
    assert ours.returncode == 0, ours.stderr
    body = json.dumps({"prompt": ids, "n_predict": 8, "top_k": 1, "temperature": 0, "ignore_eos": True,
                       "return_tokens": True, "cache_prompt": False}).encode()
    request = urllib.request.Request(f"{llama_server.root}/completion", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        theirs = json.loads(r.read())["tokens"]
    assert json.loads(ours.stdout)["token_ids"] == theirs


@pytest.mark.slow
@pytest.mark.db
def test_check_generator_prints_the_real_servers_facts(llama_server: LlamaServer, cli_env: dict[str, str]) -> None:
    n_ctx = llama_server.props()["default_generation_settings"]["n_ctx"]
    text = ragqa(_env(cli_env, llama_server), "check", "--generator")
    as_json = ragqa(_env(cli_env, llama_server), "check", "--generator", "--json")
    no_traceback(text)
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"server:     llama.cpp at {llama_server.url}" in text.stdout
    assert f"model:      {MODEL}" in text.stdout
    assert f"context:    {n_ctx} (from the server's /props n_ctx)" in text.stdout
    assert "tokenizer:  the server's /tokenize" in text.stdout
    facts = json.loads(as_json.stdout)
    assert facts["ok"] and facts["backend"] == "openai" and facts["problem"] is None
    wrong = ragqa(_env(cli_env, llama_server, RAGQA_OPENAI_MODEL="openai/gpt-oss-20b"), "check", "--generator")
    no_traceback(wrong)
    assert wrong.returncode == 1 and f"does not serve 'openai/gpt-oss-20b' (it serves {MODEL})" in wrong.stdout


@pytest.mark.slow
@pytest.mark.db
def test_the_real_servers_errors_reach_the_user_in_one_line(tiny_gguf: tuple[Path, Path], llama_server: LlamaServer,
                                                            library: Library, cli_env: dict[str, str]) -> None:
    library({"canteen.md": "# Canteen\n\nThe canteen opens at eight and serves soup on Fridays."})
    # Refused before the answer starts: a pasted question longer than the whole window.
    pasted = "When does the canteen open? " + "Please read this pasted e-mail thread carefully. " * 100
    refused = ragqa(_env(cli_env, llama_server), "ask", pasted)
    # Failed in the middle of the stream: with gpt-oss's template, llama-server parses the reply as
    # harmony, and the random model's reply is not.
    with serving(*tiny_gguf) as harmony_server:
        unparsed = ragqa(_env(cli_env, harmony_server), "ask", "When does the canteen open?")
    for out in (refused, unparsed):
        no_traceback(out)
        assert out.returncode == 1 and out.stdout == "" and out.stderr.count("\n") == 1
    assert refused.stderr.startswith("error: the generator server answered 400: request (")
    assert f"exceeds the available context size ({CONTEXT} tokens)" in refused.stderr  # llama-server's own words
    # llama-server's words (this version: "The model produced output that does not match the
    # expected peg-native format"), not the client's exception class
    assert unparsed.stderr.startswith("error: the generator server failed: The model produced output")


@pytest.mark.slow
@pytest.mark.db
def test_a_prompt_fits_the_window_the_real_server_reports(llama_server: LlamaServer, library: Library,
                                                          cli_env: dict[str, str]) -> None:
    """The configured window (8192 by default) is larger than the server's: only the server's is
    used, and the request never asks for more than it holds, prompt and answer together, as the
    server itself counts them."""
    filler = " ".join(f"The annex lists rule {i} of the canteen, which staff keep in mind." for i in range(60))
    library({f"rules{i}.md": f"# Canteen rules {i}\n\nThe canteen opens at eight. {filler}" for i in range(8)})
    recorder = Recorder(llama_server.root)
    try:
        # Tools off: with them on, room is also kept for their results, and none is left for sources here.
        env = _env(cli_env, llama_server, RAGQA_OPENAI_BASE_URL=recorder.url, RAGQA_ANSWER_PASSAGES="20",
                   RAGQA_TOOLS="off")
        out = ragqa(env, "ask", "When does the canteen open?", "--json")
    finally:
        recorder.close()
    no_traceback(out)
    assert out.returncode == 0, out.stderr  # never the server's 400 about its context
    answer = json.loads(out.stdout)
    assert answer["backend"] == "openai" and answer["sources"]  # what fits is used
    assert answer["dropped"] and all(f"{CONTEXT}-token window" in d for d in answer["dropped"])
    [chat] = recorder.chats
    assert prompt_tokens(llama_server, chat) + chat["max_tokens"] <= CONTEXT


def test_the_answer_budget_is_cut_to_what_the_servers_window_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above without a server: the prompt as the server counts it (template applied)
    and the answer's budget never ask for more than the server's window."""
    gen = OpenAIGenerator("http://127.0.0.1:9/v1", MODEL)
    gen._facts = ServerFacts("llama.cpp", (MODEL,), CONTEXT, "/props n_ctx", "llama.cpp")
    counted: list[int | None] = [3500]
    monkeypatch.setattr(server_facts, "count_chat", lambda *args: counted[0])
    assert gen._answer_room({"messages": []}, 1024) == CONTEXT - 3500
    counted[0] = 1000
    assert gen._answer_room({"messages": []}, 1024) == 1024  # room to spare: the budget as asked
    counted[0] = CONTEXT + 10
    assert gen._answer_room({"messages": []}, 1024) == 1  # sent as it is: the server says why not
    counted[0] = None
    assert gen._answer_room({"messages": []}, 1024) == 1024  # a server that cannot count: as asked
