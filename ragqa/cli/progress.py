"""Progress on a terminal (rich), silence elsewhere."""

from __future__ import annotations

import sys
from typing import Any


class TerminalProgress:
    """Two bars, files and chunks, drawn on stderr only when it is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=self.console, transient=True)
        self._files: Any = None
        self._chunks: Any = None

    def __enter__(self) -> TerminalProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def start(self, files: int) -> None:
        self._files = self._bar.add_task("files", total=files)
        self._chunks = self._bar.add_task("chunks embedded", total=None)

    def file_done(self, path: str, outcome: str) -> None:
        self._bar.update(self._files, advance=1)

    def chunks_embedded(self, n: int) -> None:
        self._bar.update(self._chunks, advance=n)

    def message(self, text: str) -> None:
        self.console.print(text)


def terminal_progress(enabled: bool) -> TerminalProgress | None:
    return TerminalProgress() if enabled and sys.stderr.isatty() else None
