"""The engine's errors. They subclass the project's RagqaError when rag is importable is NOT
assumed: llm stands alone, so these derive from its own base, which the CLI maps to messages."""

from __future__ import annotations


class LlmError(Exception):
    """Something the user can fix; the message is one line."""

    exit_code = 1


class CheckpointError(LlmError):
    """The checkpoint folder is missing, incomplete or not gpt-oss."""

    exit_code = 2


class OutOfMemoryError(LlmError):
    """Refused before loading: the model would not fit."""


class GeneratorError(LlmError):
    """A generator backend cannot answer now (server unreachable, model missing); one line."""
