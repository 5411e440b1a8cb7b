"""Keys of the HTTP API: each acts as one account (its role and groups, read afresh at every
request), until it expires or is revoked.

A key is `ragqa_` and 43 characters of `secrets.token_urlsafe(32)`: 256 random bits. Only its SHA-256
is stored. Why not argon2, as for passwords: a slow, salted hash protects *guessable* secrets from a
stolen database by making each guess expensive; nobody guesses 256 random bits, so slowness buys
nothing, and it would cost every request tens of milliseconds and megabytes of memory on a small
server (a lever for overloading it). A salted hash would also make a key impossible to look up:
each stored hash would have to be tried in turn. An unsalted SHA-256 is looked up by its index.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from rag import schema as s
from rag.access import Principal
from rag.errors import ConfigError, NotFoundError, RagqaError

PREFIX = "ragqa_"
#: Characters of a key shown in listings: enough to tell keys apart, far too few to guess the rest.
SHOWN = len(PREFIX) + 6


class KeyRefusedError(RagqaError):
    """No key, an unknown key, or one that expired or was revoked (HTTP 401)."""


@dataclass(frozen=True)
class KeyInfo:
    id: int
    prefix: str
    user: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "prefix": self.prefix, "user": self.user, "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "state": self.state()}


@dataclass(frozen=True)
class Caller:
    """Who a request acts as: the account and the key it came with."""

    principal: Principal
    key_id: int


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # SQLite returns naive UTC


class ApiKeys:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, user: str, expires_at: datetime | None = None) -> tuple[KeyInfo, str]:
        """A new key for `user` (an existing account): its record and the key itself, which is
        shown once and never stored."""
        with self.engine.connect() as conn:
            if conn.execute(select(s.users.c.id).where(s.users.c.name == user)).first() is None:
                raise NotFoundError(f"no account {user!r} (add it with `ragqa users add`)")
        key = PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expires = _aware(expires_at) if expires_at is not None else None
        with self.engine.begin() as conn:
            key_id = conn.execute(s.api_keys.insert().values(
                key_hash=digest(key), prefix=key[:SHOWN], user_name=user, created_at=now, expires_at=expires)
                .returning(s.api_keys.c.id)).scalar_one()
        return KeyInfo(int(key_id), key[:SHOWN], user, now, expires, None), key

    def _infos(self, *where: Any) -> list[KeyInfo]:
        """The keys that match `where` (all without it), oldest first."""
        k = s.api_keys.c
        q = select(k.id, k.prefix, k.user_name, k.created_at, k.expires_at, k.revoked_at).where(*where).order_by(k.id)
        with self.engine.connect() as conn:
            return [KeyInfo(r.id, r.prefix, r.user_name, _aware(r.created_at),
                            _aware(r.expires_at) if r.expires_at else None,
                            _aware(r.revoked_at) if r.revoked_at else None) for r in conn.execute(q)]

    def list(self, user: str | None = None) -> list[KeyInfo]:
        return self._infos(s.api_keys.c.user_name == user) if user else self._infos()

    def revoke(self, key_id: int) -> KeyInfo:
        with self.engine.begin() as conn:
            done = conn.execute(update(s.api_keys).where(s.api_keys.c.id == key_id, s.api_keys.c.revoked_at.is_(None))
                                .values(revoked_at=datetime.now(UTC))).rowcount
        found = self._infos(s.api_keys.c.id == key_id)
        if not found:
            raise NotFoundError(f"no key {key_id} (see `ragqa keys list`)")
        if not done:
            raise ConfigError(f"key {key_id} was already revoked")
        return found[0]

    def authenticate(self, key: str | None) -> Caller:
        """The account a presented key acts as; KeyRefusedError (one line, the same for an unknown
        key as for a malformed one) otherwise."""
        if not key:
            raise KeyRefusedError("no API key: send the header 'Authorization: Bearer KEY' (`ragqa keys create`)")
        if not key.startswith(PREFIX) or len(key) > 200:
            raise KeyRefusedError("unknown API key")
        k, u = s.api_keys.c, s.users.c
        with self.engine.connect() as conn:
            row = conn.execute(select(k.id, k.expires_at, k.revoked_at, k.user_name, u.role, u.groups)
                               .outerjoin(s.users, u.name == k.user_name)
                               .where(k.key_hash == digest(key))).first()
        if row is None:
            raise KeyRefusedError("unknown API key")
        if row.revoked_at is not None:
            raise KeyRefusedError(f"API key {row.id} was revoked")
        if row.expires_at is not None and _aware(row.expires_at) <= datetime.now(UTC):
            raise KeyRefusedError(f"API key {row.id} expired on {_aware(row.expires_at):%Y-%m-%d %H:%M} UTC")
        if row.role is None:
            raise KeyRefusedError(f"API key {row.id} belongs to an account that no longer exists")
        return Caller(Principal(row.user_name, row.role, tuple(row.groups)), int(row.id))


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """`--expires`: an ISO date (the key works through that day, UTC) or date and time; never past."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--expires {text!r} is not an ISO date such as 2027-01-31") from None
    if len(text.strip()) <= 10:  # a date alone: the end of that day
        when = when.replace(hour=23, minute=59, second=59)
    when = _aware(when)
    if when <= (now or datetime.now(UTC)):
        raise ConfigError(f"--expires {text}: that is already past")
    return when
