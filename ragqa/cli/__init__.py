"""The `ragqa` command line: one module per command group, built into one Typer app in `main`."""

from ragqa.cli.main import app, main

__all__ = ["app", "main"]
