"""A local stand-in for an OpenAI-compatible server (vLLM, llama.cpp, Ollama): streams a fixed
answer, with reasoning in the `reasoning_content` field, and records what it was asked.

`flavour` decides what it says about itself, as the real servers do: "vllm" lists `max_model_len`
with its model and counts tokens at `/tokenize` from `{"model", "prompt"}`; "llama.cpp" serves
`/props` with `default_generation_settings.n_ctx` and counts from `{"content"}`; "plain" says
nothing beyond `/v1/models`. `fail` makes every chat request answer with that status and error
message; `stream_error` sends an error event in the middle of the stream, as llama-server does.

Tool calls: `script` answers request after request, each reply a dict with optional `reasoning`
and `answer` (lists of deltas) and `tool_call` (`{"name", "arguments"}`, or a list of them for
parallel calls), streamed as vLLM streams gpt-oss's calls: the id and name first, the arguments
in fragments, `finish_reason: "tool_calls"`. `script` may also be a function of the request
(dict) returning the reply. When the script runs out, the fixed answer follows. `reject_tools`
makes any request that offers `tools` fail with 400 and that message (servers without tool use)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandIn:
    def __init__(self, answer: list[str], reasoning: list[str], model: str = "gpt-oss-test", *,
                 flavour: str = "plain", context: int = 4096, fail: tuple[int, str] | None = None,
                 stream_error: str | None = None,
                 script: list[dict[str, Any]] | Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 reject_tools: str | None = None) -> None:
        self.answer, self.reasoning, self.model = answer, reasoning, model
        self.flavour, self.context, self.fail, self.stream_error = flavour, context, fail, stream_error
        self.script, self.reject_tools = script, reject_tools
        self.requests: list[dict[str, Any]] = []
        self.tokenized: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def models(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.model, "object": "model"}
        if self.flavour == "vllm":
            entry["max_model_len"] = self.context
        return {"object": "list", "data": [entry]}

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Counts words as tokens, in the dialect of the flavour; None: no such endpoint."""
        self.tokenized.append(body)
        if self.flavour == "vllm" and "prompt" in body:
            n = len(str(body["prompt"]).split())
            return {"count": n, "max_model_len": self.context, "tokens": list(range(n))}
        if self.flavour == "llama.cpp" and "content" in body:
            return {"tokens": list(range(len(str(body["content"]).split())))}
        return None

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        """What to answer the n-th chat request with (the script's, else the fixed answer)."""
        if callable(self.script):
            return self.script(request)
        n = len(self.requests) - 1
        if self.script is not None and n < len(self.script):
            return self.script[n]
        return {"reasoning": self.reasoning, "answer": self.answer}

    def deltas(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The streamed deltas of one reply and its finish reason."""
        reply = self.reply(request)
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"reasoning_content": r} for r in reply.get("reasoning", [])]
        deltas += [{"content": a} for a in reply.get("answer", [])]
        calls = reply.get("tool_call") or []
        for index, call in enumerate([calls] if isinstance(calls, dict) else calls):
            deltas.append({"tool_calls": [{"index": index, "id": f"chatcmpl-tool-{len(self.requests)}{index}",
                                           "type": "function", "function": {"name": call["name"], "arguments": ""}}]})
            args = call["arguments"]
            deltas += [{"tool_calls": [{"index": index, "function": {"arguments": args[i:i + 7]}}]}
                       for i in range(0, len(args), 7)]
        return deltas, "tool_calls" if calls else "stop"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, outer.models())
                elif self.path == "/props" and outer.flavour == "llama.cpp":
                    self._json(200, {"default_generation_settings": {"n_ctx": outer.context}, "total_slots": 1})
                else:
                    self._json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/tokenize":
                    counted = outer.tokenize(request)
                    self._json(200, counted) if counted is not None else self._json(404, {"error": "no such route"})
                    return
                if not self.path.endswith("/chat/completions"):  # e.g. llama.cpp's /apply-template: not here
                    self._json(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
                    return
                outer.requests.append(request)
                if outer.fail is not None:
                    status, message = outer.fail
                    self._json(status, {"error": {"code": status, "message": message, "type": "server_error"}})
                    return
                if outer.reject_tools is not None and request.get("tools"):
                    self._json(400, {"error": {"code": 400, "message": outer.reject_tools,
                                               "type": "invalid_request_error"}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                deltas, finish = outer.deltas(request)
                deltas.append({})  # the last event carries only the finish reason
                for n, d in enumerate(deltas):
                    if outer.stream_error is not None and n == len(deltas) // 2 + 1:
                        error = {"error": {"code": 500, "message": outer.stream_error, "type": "server_error"}}
                        self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
                        self.wfile.flush()
                        return
                    event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": outer.model,
                             "choices": [{"index": 0, "delta": d,
                                          "finish_reason": finish if n == len(deltas) - 1 else None}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler
