"""A local stand-in for an OpenAI-compatible server (vLLM, llama.cpp, Ollama): streams a fixed
answer, with reasoning in the `reasoning_content` field, and records what it was asked.

`flavour` decides what it says about itself, as the real servers do: "vllm" lists `max_model_len`
with its model and counts tokens at `/tokenize` from `{"model", "prompt"}`; "llama.cpp" serves
`/props` with `default_generation_settings.n_ctx` and counts from `{"content"}`; "plain" says
nothing beyond `/v1/models`. `fail` makes every chat request answer with that status and error
message; `stream_error` sends an error event in the middle of the stream, as llama-server does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandIn:
    def __init__(self, answer: list[str], reasoning: list[str], model: str = "gpt-oss-test", *,
                 flavour: str = "plain", context: int = 4096, fail: tuple[int, str] | None = None,
                 stream_error: str | None = None) -> None:
        self.answer, self.reasoning, self.model = answer, reasoning, model
        self.flavour, self.context, self.fail, self.stream_error = flavour, context, fail, stream_error
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
                outer.requests.append(request)
                if outer.fail is not None:
                    status, message = outer.fail
                    self._json(status, {"error": {"code": status, "message": message, "type": "server_error"}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                deltas = [{"role": "assistant", "content": ""}]
                deltas += [{"reasoning_content": r} for r in outer.reasoning]
                deltas += [{"content": a} for a in outer.answer]
                for n, d in enumerate(deltas):
                    if outer.stream_error is not None and n == len(deltas) // 2 + 1:
                        error = {"error": {"code": 500, "message": outer.stream_error, "type": "server_error"}}
                        self.wfile.write(f"data: {json.dumps(error)}\n\n".encode())
                        self.wfile.flush()
                        return
                    event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": outer.model,
                             "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        return Handler
