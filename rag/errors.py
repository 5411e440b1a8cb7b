"""The project's exceptions. Each carries a one-line message meant for a user; the edges (CLI, UI)
turn them into exit codes and messages. Anything else that escapes is a bug and is logged."""


class RagqaError(Exception):
    """Base class: a failure the user can understand and act on."""

    exit_code = 1


class ConfigError(RagqaError):
    """Settings or arguments that cannot work (a wrong path, an unknown model)."""

    exit_code = 2


class LoadError(RagqaError):
    """One file could not be read; the message is the reason, in one line."""


class StoreError(RagqaError):
    """The store is missing, locked, or inconsistent."""


class NotFoundError(RagqaError):
    """A named document, collection or run does not exist."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its first line of text, or its type's name."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
