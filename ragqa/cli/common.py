"""What every `ragqa` subcommand module shares: settings read once at the edge, the error edge,
and JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragqa.cli.edge import user_errors

_settings: Any = None


def settings() -> Any:
    """Read once, at the edge."""
    global _settings
    if _settings is None:
        from rag.settings import load_settings

        _settings = load_settings()
    return _settings


def _home() -> Path:
    try:
        return settings().home
    except Exception:  # noqa: BLE001 - settings themselves may be what failed
        return Path(".ragqa")


edge = user_errors(_home)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=None, default=str))
