"""The openai backend: any OpenAI-compatible server that serves gpt-oss (vLLM, llama.cpp server,
Ollama), over its streaming chat-completions API. The server renders harmony itself; we pass the
reasoning effort on and read its reasoning back from the field each server uses for it.

The context window is the server's when it says (llm/server_facts.py), so a prompt is never built
larger than the server accepts; without a local tokenizer, prompt sizes are counted by the server's
`/tokenize` where it has one. A server's error reaches the user with the server's own reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from llm import server_facts
from llm.errors import GeneratorError
from llm.generator import Piece, Prompt, Tool, ToolCall, new_call_id
from llm.server_facts import ServerFacts

# Where servers put the analysis channel in a streamed delta: vLLM and llama.cpp say
# `reasoning_content`, Ollama and newer vLLM say `reasoning`.
_REASONING_FIELDS = ("reasoning_content", "reasoning")
REPROBE_S = 30.0  # how long a server that did not answer is taken at its configured facts


def _dated(prompt: Prompt) -> str:
    """The server writes its own system message; the date and the cutoff go in ours."""
    return (f"Current date: {prompt.today.isoformat()}. Your knowledge stops in June 2024; "
            f"anything later is known only from the sources.\n\n{prompt.instructions}")


class OpenAIGenerator:
    name = "openai"
    extractive = False
    tools_capable = True  # chat completions' `tools` and streamed `tool_calls`

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, context: int = 8192,
                 max_context: int | None = None, timeout_s: float = 120.0, count_tokens: Any = None) -> None:
        """`context`: the window when the server does not say; `max_context`: a limit the operator
        set, kept even when the server accepts more."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or "not-needed"  # local servers accept any key; the client wants one
        self._context = context
        self._max_context = max_context
        self._timeout = timeout_s
        self._count = count_tokens  # the model's own tokenizer when a local copy is configured
        self._client: Any = None
        self._facts: ServerFacts | None = None
        self._next_probe = 0.0

    def _connect(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self._timeout,
                                         max_retries=1)
        return self._client

    def _failure(self, exc: Exception, offered_tools: bool = False) -> GeneratorError:
        import openai

        if isinstance(exc, openai.APIConnectionError):
            return GeneratorError(f"cannot reach the generator server at {self.base_url}")
        if isinstance(exc, openai.APIStatusError):
            reason = server_reason(exc)
            # A server that cannot take `tools` refuses the request as malformed or unsupported; a
            # 500 is the server's own trouble (loading, out of memory) and needs no hint.
            if offered_tools and exc.status_code in (400, 422, 501) and "tool" not in reason.lower():
                reason += " (the request offered tools, which some servers and models do not support)"
            return GeneratorError(f"the generator server answered {exc.status_code}: {reason}")
        return GeneratorError(f"the generator server failed: {server_reason(exc)}")

    def facts(self) -> ServerFacts | None:
        """What the server says about itself, asked once it answers (None while it does not)."""
        if self._facts is None and time.monotonic() >= self._next_probe:
            self._facts = server_facts.probe(self.base_url, self._api_key, self.model)
            if self._facts is None:  # a server that is down is not asked again at every token count
                self._next_probe = time.monotonic() + REPROBE_S
        return self._facts

    def check(self) -> str | None:
        import openai

        try:
            names = [m.id for m in self._connect().with_options(timeout=5.0).models.list()]
        except openai.OpenAIError as exc:
            return str(self._failure(exc))
        if names and self.model not in names:
            return f"the server at {self.base_url} does not serve {self.model!r} (it serves {', '.join(names[:5])})"
        return None

    def stream(self, prompt: Prompt) -> Iterator[Piece | ToolCall]:
        """Reasoning and answer as Pieces; with tools offered, a reply that calls one ends with one
        ToolCall, its arguments gathered from the streamed fragments. Text a server streams as
        `content` before a call is the model's preamble (harmony's commentary), not an answer."""
        import openai

        offer: dict[str, Any] = {"tools": [_tool_param(t) for t in prompt.tools]} if prompt.tools else {}
        messages = _messages(prompt)
        try:
            response = self._connect().chat.completions.create(
                model=self.model, messages=messages, stream=True,
                max_tokens=self._answer_room({"messages": messages, **offer}, prompt.max_tokens),
                reasoning_effort=prompt.reasoning, **offer)
            calls: dict[int, dict[str, str]] = {}
            for event in response:
                if not event.choices:
                    continue
                delta = event.choices[0].delta
                extra = delta.model_extra or {}
                for field in _REASONING_FIELDS:
                    if extra.get(field):
                        yield Piece("analysis", str(extra[field]))
                        break
                if delta.content:
                    yield Piece("final", delta.content)
                for fragment in delta.tool_calls or ():
                    _gather(calls, fragment)
        except openai.OpenAIError as exc:
            raise self._failure(exc, offered_tools=bool(prompt.tools)) from None
        if calls and prompt.tools:
            # gpt-oss makes one call a round (it stops at <|call|>); a server's parallel calls
            # beyond the first are not run: the model sees its first call answered and may ask again.
            first = calls[min(calls)]
            yield ToolCall(first["name"], first["arguments"], first["id"] or new_call_id())

    def _answer_room(self, chat: dict[str, Any], wanted: int) -> int:
        """The answer's budget, cut to what the server's window leaves after the prompt as the
        server itself counts it. The prompt is budgeted piece by piece with allowances for the
        framing (rag.prompt.OVERHEAD_TOKENS); the server's template and system message can spend
        more (with a byte-level tokenizer, llama-server's prompt came out 250 tokens over the
        estimate), and vLLM refuses a request whose prompt plus max_tokens passes its window."""
        facts = self.facts()
        if facts is None or facts.context is None or facts.tokenize is None:
            return wanted
        used = server_facts.count_chat(self.base_url, self._api_key, facts.tokenize, self.model, chat)
        # A prompt that fills the window is sent as it is: the server's own reason reaches the user.
        return wanted if used is None else max(1, min(wanted, facts.context - used))

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return int(self._count(text))
        facts = self.facts()
        if facts is not None and facts.tokenize is not None:
            counted = server_facts.count(self.base_url, self._api_key, facts.tokenize, self.model, text)
            if counted is not None:
                return counted
        return _estimate(text)

    @property
    def context_tokens(self) -> int:
        facts = self.facts()
        if facts is None or facts.context is None:
            return self._max_context or self._context
        return min(facts.context, self._max_context) if self._max_context else facts.context

    def describe(self) -> dict[str, str]:
        facts = self.facts()
        out = {"backend": "openai", "server": self.base_url, "model": self.model}
        if facts is None:
            out["context"] = f"{self.context_tokens} (configured; the server does not answer)"
            out["tokenizer"] = "local tokenizer.json" if self._count is not None else "estimate (3 characters a token)"
            return out
        out["server"] = f"{facts.server} at {self.base_url}"
        source = f"from the server's {facts.context_from}" if facts.context else "configured; the server does not say"
        capped = " (capped by RAGQA_CONTEXT_TOKENS)" if facts.context and self.context_tokens < facts.context else ""
        out["context"] = f"{self.context_tokens} ({source}){capped}"
        if self._count is not None:
            out["tokenizer"] = "local tokenizer.json"
        else:
            out["tokenizer"] = "the server's /tokenize" if facts.tokenize else "estimate (3 characters a token)"
        return out


def _messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The conversation as chat messages, then this answer's tool rounds: each call as an
    assistant message with `tool_calls` (its reasoning in `reasoning_content`, which vLLM and
    llama.cpp read back as the analysis that led to it) and the result as a `tool` message; the
    result names its function too, since vLLM renders the harmony author from `name`."""
    out: list[dict[str, Any]] = [{"role": "system", "content": _dated(prompt)},
                                 *({"role": m.role, "content": m.text} for m in prompt.turns)]
    for step in prompt.steps:
        call = step.call
        assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]}
        if step.reasoning:
            assistant["reasoning_content"] = step.reasoning
        out += [assistant, {"role": "tool", "tool_call_id": call.call_id, "name": call.name, "content": step.result}]
    return out


def _tool_param(tool: Tool) -> dict[str, Any]:
    """A tool as chat completions take it. Names cannot hold dots, so no namespace: the server
    declares every tool under harmony's `functions` (the browser shape is the native backend's)."""
    parameters = tool.parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": parameters}}


def _gather(calls: dict[int, dict[str, str]], fragment: Any) -> None:
    """One streamed piece of a tool call: the id and name come first, the arguments in pieces."""
    call = calls.setdefault(fragment.index or 0, {"id": "", "name": "", "arguments": ""})
    call["id"] = call["id"] or (fragment.id or "")
    if fragment.function is not None:
        call["name"] += fragment.function.name or ""
        call["arguments"] += fragment.function.arguments or ""


def _estimate(text: str) -> int:
    return len(text) // 3 + 1  # without a tokenizer: cautious (o200k averages ~4 characters a token)


def server_reason(exc: Exception) -> str:
    """The server's own reason for an error, in one line: the `message` of its error object
    (OpenAI, vLLM and llama.cpp all send one) or, failing that, what the client says."""
    body = getattr(exc, "body", None)
    reason: Any = None
    if isinstance(body, dict):
        reason = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(reason, dict):
            reason = reason.get("message")
    if not reason:
        reason = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        reason = str(reason).split(" - ", 1)[-1] if str(reason).startswith("Error code:") else reason
    return " ".join(str(reason).split())[:240]
