"""`ragqa users`, `ragqa collections` and `ragqa audit`: accounts, who may read what, and the log."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from ragqa.cli.common import edge, print_json, settings

users_app = typer.Typer(no_args_is_help=True, help="Staff accounts for the UI.")
collections_app = typer.Typer(no_args_is_help=True, help="Collections and the groups that may read them.")


def register(app: typer.Typer) -> None:
    """`ragqa users ...`, `ragqa collections ...` and `ragqa audit` on the app."""
    app.add_typer(users_app, name="users")
    app.add_typer(collections_app, name="collections")
    app.command()(audit)


def accounts() -> Any:
    from rag.access import Accounts
    from ragqa import wiring

    return Accounts(wiring.open_store(settings()).engine)


@users_app.command("add")
@edge
def users_add(
    name: Annotated[str, typer.Argument(help="Login name (or the e-mail an identity provider reports).")],
    role: Annotated[str, typer.Option(help="admin, editor or reader.")] = "reader",
    group: Annotated[list[str] | None, typer.Option(help="A group (repeatable).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    no_password: Annotated[bool, typer.Option("--no-password", help="Signs in through OIDC only.")] = False,
) -> None:
    """Create an account (the password is asked for unless --no-password)."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not no_password:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    accounts().add(name, role, tuple(group or ()), password)
    record_cli("users.add", account=name, role=role, groups=sorted(group or ()))
    typer.echo(f"added {name} ({role})")


@users_app.command("remove")
@edge
def users_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Delete an account."""
    accounts().remove(name)
    record_cli("users.remove", account=name)
    typer.echo(f"removed {name}")


@users_app.command("list")
@edge
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Accounts with their role and groups."""
    rows = accounts().list()
    if as_json:
        print_json([{"name": p.name, "role": p.role, "groups": list(p.groups)} for p in rows])
        return
    for p in rows:
        typer.echo(f"{p.name:<30} {p.role:<7} {', '.join(p.groups)}")


@collections_app.command("list")
@edge
def collections_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Collections and their reader groups (none: open to every account)."""
    readers = accounts().readers()
    if as_json:
        print_json({name: list(groups) for name, groups in readers.items()})
        return
    for name, groups in readers.items():
        typer.echo(f"{name:<30} {', '.join(groups) if groups else '(open to every account)'}")


@collections_app.command("grant")
@edge
def collections_grant(collection: Annotated[str, typer.Argument()], group: Annotated[str, typer.Argument()]) -> None:
    """Let GROUP read COLLECTION (the collection is then closed to everyone else)."""
    accounts().grant(collection, group)
    record_cli("collections.grant", collection=collection, group=group)


@collections_app.command("revoke")
@edge
def collections_revoke(collection: Annotated[str, typer.Argument()], group: Annotated[str, typer.Argument()]) -> None:
    """Stop GROUP reading COLLECTION."""
    accounts().revoke(collection, group)
    record_cli("collections.revoke", collection=collection, group=group)


@edge
def audit(
    user: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    since: Annotated[str | None, typer.Option(help="Only from this date or time (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who asked what and was shown which chunks; who added or removed which documents."""
    from rag.audit import entries
    from rag.errors import ConfigError
    from ragqa import wiring

    try:
        when = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise ConfigError(f"--since {since!r} is not an ISO date such as 2026-11-25") from None
    rows = entries(wiring.open_store(settings()).engine, user, when, limit)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        d = r["detail"]
        what = d.get("question") or d.get("path") or d.get("account") or ""
        typer.echo(f"{r['at'][:19]}  {r['user']:<20} {r['action']:<18} {what}")


def cli_user() -> str:
    """Who runs a command on this machine (recorded in the audit log)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def record_cli(action: str, **detail: Any) -> None:
    """An audit entry for a command run on this machine (as `cli_user()`)."""
    from rag.audit import record
    from ragqa import wiring

    record(wiring.open_store(settings()).engine, cli_user(), action, **detail)
