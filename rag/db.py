"""Engine creation: one place that knows the dialects' quirks."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from rag.errors import StoreError, one_line
from rag.migrations import migrate

#: How long opening a database waits out another process's lock before giving up.
LOCK_WAIT_S = 60.0

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    # First: the switch to WAL below needs a lock that another process starting at the same moment
    # may hold, and without a busy timeout it fails at once ("database is locked").
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE needs it, per connection
    cur.execute("PRAGMA journal_mode=WAL")  # readers keep reading while an ingest writes
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            # The driver's own busy timeout (5 s by default) also guards what runs before the pragmas.
            engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {safe_url(url)}: {exc}") from None
    return engine


def open_database(url: str, lock_wait_s: float = LOCK_WAIT_S) -> Engine:
    """An engine on an up-to-date schema (pending migrations are applied here)."""
    engine = make_engine(url)
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            migrate(engine)
            return engine
        except OperationalError as exc:
            if _locked(exc) and time.monotonic() < deadline:
                # SQLite answers "locked" at once, without waiting, where waiting could deadlock:
                # two processes switching a new file to WAL together, one of them must back off.
                # Every migration step is its own transaction, so trying again is safe.
                engine.dispose()
                time.sleep(random.uniform(0.05, 0.25))
                continue
            raise StoreError(f"cannot open database {safe_url(url)}: {one_line(exc.orig or exc)}") from None


def _locked(exc: OperationalError) -> bool:
    text = str(exc.orig or exc).lower()
    return "database is locked" in text or "database is busy" in text


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: show nothing of it
        return "<unparsable URL>"
