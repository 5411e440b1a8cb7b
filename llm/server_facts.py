"""What an OpenAI-compatible server says about itself: which server it is, the context window it
accepts, and whether it counts tokens for us.

vLLM lists `max_model_len` with each model in `/v1/models` and counts at `/tokenize` (`{"model",
"prompt"}` -> `{"count"}`); llama.cpp's `llama-server` gives `default_generation_settings.n_ctx`
(the window of one slot) in `/props` and counts at `/tokenize` (`{"content"}` -> `{"tokens"}`).
A server that says neither is left to the configured window and an estimate. The parsing is pure;
`probe` and `count` do the HTTP (the standard library's: a few small JSON requests).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServerFacts:
    server: str  # "vLLM", "llama.cpp" or "an OpenAI-compatible server"
    models: tuple[str, ...]
    context: int | None  # what the server accepts per request, when it says
    context_from: str  # where `context` was read ("" when it was not)
    tokenize: str | None  # the /tokenize dialect that answered: "vllm", "llama.cpp" or None


def root_of(base_url: str) -> str:
    """The server's root, where vLLM and llama.cpp serve /tokenize and /props (beside /v1)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def context_from_models(payload: Any, model: str) -> int | None:
    """vLLM's `max_model_len` for `model` (or for the only model served) in a /v1/models answer."""
    entries = [e for e in (payload or {}).get("data", []) if isinstance(e, dict)] if isinstance(payload, dict) else []
    chosen = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    value = chosen[0].get("max_model_len") if chosen else None
    return value if isinstance(value, int) and value > 0 else None


def context_from_props(payload: Any) -> int | None:
    """llama.cpp's per-slot window in a /props answer (older builds put `n_ctx` at the top)."""
    if not isinstance(payload, dict):
        return None
    settings = payload.get("default_generation_settings")
    value = settings.get("n_ctx") if isinstance(settings, dict) else payload.get("n_ctx")
    return value if isinstance(value, int) and value > 0 else None


def tokens_counted(payload: Any) -> int | None:
    """The token count in a /tokenize answer of either dialect."""
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("count"), int):
        return int(payload["count"])
    tokens = payload.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


def _tokenize_body(dialect: str, model: str, text: str) -> dict[str, Any]:
    return {"model": model, "prompt": text} if dialect == "vllm" else {"content": text, "add_special": False}


def request_json(url: str, api_key: str, body: dict[str, Any] | None = None,
                 timeout_s: float = PROBE_TIMEOUT_S) -> Any:
    """GET (or POST `body` to) `url`; the decoded JSON answer, or None for anything but a 200 with JSON."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout_s) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):  # refused, 404, timeout, not JSON: it does not say
        return None


def count(base_url: str, api_key: str, dialect: str, model: str, text: str) -> int | None:
    """Tokens of `text` by the server's own tokenizer; None when it does not answer."""
    return tokens_counted(request_json(f"{root_of(base_url)}/tokenize", api_key, _tokenize_body(dialect, model, text)))


def count_chat(base_url: str, api_key: str, dialect: str, model: str, chat: dict[str, Any]) -> int | None:
    """Tokens of the whole prompt the server builds from a chat request (`messages`, `tools`): its
    chat template applied, framing and its own system message included. llama.cpp renders at
    `/apply-template` and counts the text at `/tokenize`; vLLM counts chat messages at `/tokenize`.
    None when the server does not say."""
    root = root_of(base_url)
    if dialect == "llama.cpp":
        rendered = request_json(f"{root}/apply-template", api_key, chat)
        prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(prompt, str):
            return None
        return tokens_counted(request_json(f"{root}/tokenize", api_key, {"content": prompt, "add_special": True}))
    return tokens_counted(request_json(f"{root}/tokenize", api_key,
                                       {"model": model, **chat, "add_generation_prompt": True}))


def probe(base_url: str, api_key: str, model: str) -> ServerFacts | None:
    """Ask the server about itself; None when it does not answer /v1/models, i.e. when it is not
    reachable as a chat server at all."""
    listed = request_json(f"{base_url.rstrip('/')}/models", api_key)
    if not isinstance(listed, dict):
        return None
    models = tuple(str(e.get("id")) for e in listed.get("data", []) if isinstance(e, dict))
    context = context_from_models(listed, model)
    server, context_from = ("vLLM", "/v1/models max_model_len") if context else ("an OpenAI-compatible server", "")
    if context is None:
        props = request_json(f"{root_of(base_url)}/props", api_key)
        context = context_from_props(props)
        if props is not None and context is not None:
            server, context_from = "llama.cpp", "/props n_ctx"
    dialects = {"vLLM": ("vllm",), "llama.cpp": ("llama.cpp",)}.get(server, ("llama.cpp", "vllm"))
    tokenize = next((d for d in dialects if count(base_url, api_key, d, model, "hello world") is not None), None)
    return ServerFacts(server, models, context, context_from, tokenize)
