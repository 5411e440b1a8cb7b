"""One interface for every way of producing an answer: our native gpt-oss engine, an
OpenAI-compatible server, rag's extractive answerer (no model), and a deterministic fake for tests.

A backend receives a `Prompt` (instructions, the conversation as turns, the question and its
numbered sources, reasoning effort, today's date) and streams `Piece`s: text on the `final`
channel is the answer, text on `analysis` is reasoning, never shown as the answer. What the
prompt says is rag's policy (rag/prompt.py); this module only carries it.

Tool use: a prompt may offer `tools`. A backend that can call them (`tools_capable`) may end its
stream with one `ToolCall` instead of a final answer; the caller runs the tool and asks again with
the round appended to `steps`, and so on until the model answers. Running tools (and deciding who
may read what) is rag's business; a backend only renders the offer, the calls and the results in
its own format (harmony for the native engine, `tools`/`tool_calls` for an OpenAI-compatible
server) and parses the model's calls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Source:
    number: int  # cited as [number]
    title: str
    location: str  # e.g. "p. 2"
    text: str


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation, as the model reads it."""

    role: str  # user or assistant
    text: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"a turn's role is user or assistant, not {self.role!r}")


@dataclass(frozen=True)
class Tool:
    """A tool offered to the model: its name within `Prompt.tool_namespace` (e.g. `search`), what it
    does, and a JSON schema (an object) for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model asked to run a tool; a stream ends after yielding one. `arguments` is the text the
    model wrote, unparsed: it may be malformed JSON, and the tool name may be one never offered."""

    name: str  # without the namespace
    arguments: str
    call_id: str  # the server's id, or one the backend made up (`new_call_id`; harmony has none)


def new_call_id() -> str:
    """An id for a call that came without one."""
    return f"call_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ToolStep:
    """One round of tool use inside the current answer: the reasoning that led to the call (kept
    within the turn, as harmony keeps the analysis until the final answer), the call, its result."""

    call: ToolCall
    result: str  # what the tool returned, or an error message for a malformed or refused call
    reasoning: str = ""


@dataclass(frozen=True)
class Prompt:
    instructions: str  # the developer message
    # The conversation as the model reads it; the last is the user's turn, which already holds
    # the rendered sources and the question. Model backends read these.
    turns: tuple[Turn, ...]
    # The question alone and the sources as data, for a backend that reads no text (extractive).
    question: str
    sources: tuple[Source, ...]
    reasoning: str = "medium"  # low, medium, high
    today: date = field(default_factory=date.today)
    max_tokens: int = 1024
    # Tools the model may call now (empty: answer directly), their namespace as the model sees it
    # ("functions" for plain functions; "browser" for gpt-oss's built-in browsing tool shape), and
    # the rounds of tool use so far in this answer, oldest first.
    tools: tuple[Tool, ...] = ()
    tool_namespace: str = "functions"
    steps: tuple[ToolStep, ...] = ()

    def __post_init__(self) -> None:
        # Backends render the last message as the turn to answer: a prompt without one is a bug.
        if not self.turns or self.turns[-1].role != "user":
            raise ValueError("a prompt's turns must end with the user's turn")


@dataclass(frozen=True)
class Piece:
    """A piece of the streamed answer."""

    channel: str  # final or analysis
    text: str


class Generator(Protocol):
    name: str
    #: True when the answer is built from the sources' own sentences (no language model).
    extractive: bool
    #: True when `stream` renders `Prompt.tools` and may end with a `ToolCall`.
    tools_capable: bool

    def stream(self, prompt: Prompt) -> Iterator[Piece | ToolCall]:
        """The answer as it is produced; with tools offered, possibly ending in one ToolCall.
        Raises GeneratorError with a one-line reason."""
        ...

    def check(self) -> str | None:
        """None when the backend can answer now, else why not (one line)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in this backend's own tokenizer (an estimate where it has none)."""
        ...

    @property
    def context_tokens(self) -> int:
        """Prompt plus answer must fit in this many tokens."""
        ...

    def describe(self) -> dict[str, str]:
        """What answers: the backend and, where there is one, the server, model, context window
        and tokenizer in use (`ragqa check --generator`). Asks a server; never raises."""
        ...


class FakeGenerator:
    """Deterministic, instant; for UI tests. Answers with the first source's opening words."""

    name = "fake"
    extractive = False
    tools_capable = False

    def __init__(self, context: int = 8192) -> None:
        self._context = context

    def stream(self, prompt: Prompt) -> Iterator[Piece]:
        yield Piece("analysis", "Looking at the sources.")
        if not prompt.sources:
            yield Piece("final", "The sources do not contain the answer.")
            return
        words = prompt.sources[0].text.split()[:12]
        for w in ["According", "to", "the", "library:", *words]:
            yield Piece("final", w + " ")
        yield Piece("final", f"[{prompt.sources[0].number}]")

    def check(self) -> str | None:
        return None

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    @property
    def context_tokens(self) -> int:
        return self._context

    def describe(self) -> dict[str, str]:
        return {"backend": "fake", "context": str(self._context), "tokenizer": "estimate (4 characters a token)"}
