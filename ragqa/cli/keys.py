"""`ragqa serve` and `ragqa keys`: the HTTP API and the keys that act as accounts in it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ragqa.cli.access import record_cli
from ragqa.cli.common import JsonOpt, edge, print_json, settings

keys_app = typer.Typer(no_args_is_help=True, help="Keys of the HTTP API (`ragqa serve`): each acts as one account.")


def register(app: typer.Typer) -> None:
    """`ragqa serve` and `ragqa keys ...` on the app."""
    app.command()(serve)
    app.add_typer(keys_app, name="keys")


@edge
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Start the HTTP API (OpenAI-compatible chat, search, ask, documents, /metrics) at http://HOST:PORT."""
    import uvicorn

    from ragqa import wiring
    from ragqa.api.app import create_app

    wiring.offline()
    cfg = settings()  # a bad setting is reported here, in one line, before the server starts
    api = create_app(cfg)
    typer.echo(f"ragqa API on http://{host}:{port}  (OpenAPI at /openapi.json; Ctrl+C stops it)", err=True)
    # One process: the retriever, the generator and its batching are shared by every request.
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)


def _keys() -> Any:
    from rag.keys import ApiKeys
    from ragqa import wiring

    return ApiKeys(wiring.open_store(settings()).engine)


@keys_app.command("create")
@edge
def keys_create(
    user: Annotated[str, typer.Argument(help="The account the key acts as (see `ragqa users list`).")],
    expires: Annotated[str | None, typer.Option(help="Last day (or ISO date and time, UTC) the key works.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print it once (only its hash is stored: keep it somewhere safe)."""
    from rag.keys import parse_expiry

    info, key = _keys().create(user, parse_expiry(expires) if expires else None)
    record_cli("keys.create", key_id=info.id, account=user)
    if as_json:
        print_json({"key": key, **info.as_json()})
        return
    typer.echo(key)
    until = f", expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else ""
    typer.echo(f"key {info.id} for {user}{until}: shown once, store it now "
               "(send it as 'Authorization: Bearer KEY')", err=True)


@keys_app.command("list")
@edge
def keys_list(
    user: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Keys with their account, state and dates (never the keys themselves)."""
    rows = _keys().list(user)
    if as_json:
        print_json([k.as_json() for k in rows])
        return
    if not rows:
        typer.echo("no keys (create one with `ragqa keys create USER`)")
    for k in rows:
        until = f"{k.expires_at:%Y-%m-%d}" if k.expires_at else "never"
        typer.echo(f"{k.id:>5}  {k.prefix}…  {k.user:<24} {k.state():<8} created {k.created_at:%Y-%m-%d}  "
                   f"expires {until}")


@keys_app.command("revoke")
@edge
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see `ragqa keys list`).")]) -> None:
    """Revoke a key: its next request gets 401."""
    info = _keys().revoke(key_id)
    record_cli("keys.revoke", key_id=key_id, account=info.user)
    typer.echo(f"revoked key {key_id} of {info.user}")

