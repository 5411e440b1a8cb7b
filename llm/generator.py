"""One interface for every way of producing an answer: our native gpt-oss engine, an
OpenAI-compatible server, rag's extractive answerer (no model), and a deterministic fake for tests.

A backend receives a `Prompt` (instructions, the conversation as turns, the question and its
numbered sources, reasoning effort, today's date) and streams `Piece`s: text on the `final`
channel is the answer, text on `analysis` is reasoning, never shown as the answer. What the
prompt says is rag's policy (rag/prompt.py); this module only carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

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

    def stream(self, prompt: Prompt) -> Iterator[Piece]:
        """The answer as it is produced. Raises GeneratorError with a one-line reason."""
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
