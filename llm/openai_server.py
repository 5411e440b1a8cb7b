"""The openai backend: any OpenAI-compatible server that serves gpt-oss (vLLM, llama.cpp server,
Ollama), over its streaming chat-completions API. The server renders harmony itself; we pass the
reasoning effort on and read its reasoning back from the field each server uses for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm.errors import GeneratorError
from llm.generator import Chunk, Prompt, user_message

# Where servers put the analysis channel in a streamed delta: vLLM and llama.cpp say
# `reasoning_content`, Ollama and newer vLLM say `reasoning`.
_REASONING_FIELDS = ("reasoning_content", "reasoning")


def _dated(prompt: Prompt) -> str:
    """The server writes its own system message; the date and the cutoff go in ours."""
    return (f"Current date: {prompt.today.isoformat()}. Your knowledge stops in June 2024; "
            f"anything later is known only from the sources.\n\n{prompt.instructions}")


class OpenAIGenerator:
    name = "openai"
    extractive = False

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, context: int = 8192,
                 timeout_s: float = 120.0, count_tokens: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or "not-needed"  # local servers accept any key; the client wants one
        self._context = context
        self._timeout = timeout_s
        self._count = count_tokens  # the model's own tokenizer when a local copy is configured
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self._timeout,
                                         max_retries=1)
        return self._client

    def _failure(self, exc: Exception) -> GeneratorError:
        import openai

        if isinstance(exc, openai.APIConnectionError):
            return GeneratorError(f"cannot reach the generator server at {self.base_url}")
        if isinstance(exc, openai.APIStatusError):
            detail = " ".join(str(exc.message).split())[:160]
            return GeneratorError(f"the generator server answered {exc.status_code}: {detail}")
        return GeneratorError(f"the generator server failed: {type(exc).__name__}")

    def check(self) -> str | None:
        import openai

        try:
            names = [m.id for m in self._connect().with_options(timeout=5.0).models.list()]
        except openai.OpenAIError as exc:
            return str(self._failure(exc))
        if names and self.model not in names:
            return f"the server at {self.base_url} does not serve {self.model!r} (it serves {', '.join(names[:5])})"
        return None

    def stream(self, prompt: Prompt) -> Iterator[Chunk]:
        import openai

        messages = [{"role": "system", "content": _dated(prompt)}, {"role": "user", "content": user_message(prompt)}]
        try:
            response = self._connect().chat.completions.create(
                model=self.model, messages=messages, stream=True, max_tokens=prompt.max_tokens,
                reasoning_effort=prompt.reasoning)
            for event in response:
                if not event.choices:
                    continue
                delta = event.choices[0].delta
                extra = delta.model_extra or {}
                for field in _REASONING_FIELDS:
                    if extra.get(field):
                        yield Chunk("analysis", str(extra[field]))
                        break
                if delta.content:
                    yield Chunk("final", delta.content)
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return int(self._count(text))
        return len(text) // 3 + 1  # without the tokenizer: a cautious estimate (o200k averages ~4 chars)

    @property
    def context_tokens(self) -> int:
        return self._context
