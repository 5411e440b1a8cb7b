"""Where exceptions become messages: one line on stderr and an exit code, never a traceback.
Unexpected errors are logged in full to the home's log file for whoever debugs them."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import typer

from llm.errors import LlmError
from rag.errors import RagqaError, one_line

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("ragqa")


def fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(home: Callable[[], Path]) -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort, SystemExit):
                raise
            except (RagqaError, LlmError) as exc:
                fail(str(exc), exc.exit_code)
            except KeyboardInterrupt:
                typer.echo("interrupted", err=True)
                raise typer.Exit(130) from None
            except Exception as exc:  # noqa: BLE001 - the last line of defence
                where = log_crash(home(), " ".join(sys.argv), traceback.format_exc())
                fail(f"internal error ({type(exc).__name__}: {one_line(exc)}); details in {where}", 3)

        return cast(F, inner)

    return wrap


def log_crash(home: Path, header: str, text: str) -> Path:
    """Append a traceback `text` under `--- header` to the home's log file (the CLI's and the
    API's); the file's path, to name in the one-line message."""
    path = home / "logs" / "ragqa.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {header}\n{text}\n")
    except OSError:
        pass
    return path
