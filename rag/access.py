"""Who may do what. Accounts (built-in, argon2-hashed passwords; or OIDC identities mapped to an
account by e-mail), roles, and the groups that may read each collection.

Roles: admin (everything), editor (ingest into and delete from the collections their groups may
read), reader (ask). A collection that lists no reader groups is open to every account; once it
lists groups, only members of those groups (and admins) see it, in search, counts and citations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, select

from rag import schema as s
from rag.errors import ConfigError, NotFoundError, RagqaError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

ROLES = ("admin", "editor", "reader")


class AccessDeniedError(RagqaError):
    """Signed in, but not allowed to do this."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


#: Who acts when no accounts are configured (one person on their own machine) and on the CLI.
LOCAL_ADMIN = Principal("local", "admin")


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- accounts ------------------------------------------------------------------------
    def add(self, name: str, role: str, groups: tuple[str, ...] = (), password: str | None = None) -> None:
        name = name.strip()
        if not name:
            raise ConfigError("an account needs a name")
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: use {', '.join(ROLES)}")
        if password is not None and len(password) < 8:
            raise ConfigError("a password needs at least 8 characters")
        digest = _hasher().hash(password) if password is not None else None
        with self.engine.begin() as conn:
            if conn.execute(select(s.users.c.id).where(s.users.c.name == name)).first():
                raise ConfigError(f"account {name!r} exists")
            conn.execute(s.users.insert().values(name=name, password_hash=digest, role=role,
                                                 groups=sorted(set(groups)), created_at=datetime.now(UTC)))

    def remove(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(delete(s.users).where(s.users.c.name == name)).rowcount:
                raise NotFoundError(f"no account {name!r}")

    def list(self) -> list[Principal]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(s.users.c.name, s.users.c.role, s.users.c.groups).order_by(s.users.c.name))
            return [Principal(n, r, tuple(g)) for n, r, g in rows]

    def any(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(s.users.c.id).limit(1)).first() is not None

    def get(self, name: str) -> Principal:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.users.c.role, s.users.c.groups).where(s.users.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no account {name!r}")
        return Principal(name, row.role, tuple(row.groups))

    def verify(self, name: str, password: str) -> Principal | None:
        """The account when the password is right; None otherwise (the same for a wrong name,
        which is hashed against a dummy so that timing does not tell names apart)."""
        from argon2.exceptions import VerificationError

        with self.engine.connect() as conn:
            row = conn.execute(select(s.users.c.password_hash, s.users.c.role, s.users.c.groups)
                               .where(s.users.c.name == name.strip())).first()
        digest = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH()
        try:
            _hasher().verify(digest, password)
        except VerificationError:
            return None
        return Principal(name.strip(), row.role, tuple(row.groups)) if row is not None else None

    # ---- collections ---------------------------------------------------------------------
    def grant(self, collection: str, group: str) -> None:
        cid = self._collection(collection)
        with self.engine.begin() as conn:
            readers = s.collection_readers.c
            exists = conn.execute(select(s.collection_readers).where(readers.collection_id == cid,
                                                                     readers.group_name == group)).first()
            if not exists:
                conn.execute(s.collection_readers.insert().values(collection_id=cid, group_name=group))

    def revoke(self, collection: str, group: str) -> None:
        cid = self._collection(collection)
        with self.engine.begin() as conn:
            conn.execute(delete(s.collection_readers).where(s.collection_readers.c.collection_id == cid,
                                                            s.collection_readers.c.group_name == group))

    def readers(self) -> dict[str, tuple[str, ...]]:
        """Every collection and the groups that may read it (empty: open to all)."""
        c, r = s.collections.c, s.collection_readers.c
        with self.engine.connect() as conn:
            names = [n for (n,) in conn.execute(select(c.name).order_by(c.name))]
            pairs = conn.execute(select(c.name, r.group_name).join(s.collection_readers, r.collection_id == c.id)).all()
        out: dict[str, list[str]] = {n: [] for n in names}
        for name, group in pairs:
            out[name].append(group)
        return {n: tuple(sorted(g)) for n, g in out.items()}

    def readable(self, who: Principal) -> tuple[str, ...] | None:
        """Collections `who` may read; None means all (admins)."""
        if who.is_admin:
            return None
        mine = set(who.groups)
        return tuple(n for n, groups in self.readers().items() if not groups or mine & set(groups))

    def may_write(self, who: Principal, collection: str) -> bool:
        """Admins anywhere; editors in collections their groups may read (or new ones)."""
        if who.is_admin:
            return True
        if who.role != "editor":
            return False
        groups = self.readers().get(collection)
        return groups is None or not groups or bool(set(who.groups) & set(groups))

    def require_write(self, who: Principal, collection: str) -> None:
        if not self.may_write(who, collection):
            raise AccessDeniedError(f"{who.name} may not change the collection {collection!r}")

    def _collection(self, name: str) -> int:
        with self.engine.connect() as conn:
            cid = conn.execute(select(s.collections.c.id).where(s.collections.c.name == name)).scalar()
        if cid is None:
            raise NotFoundError(f"no collection {name!r}")
        return int(cid)


_dummy: list[str] = []


def _DUMMY_HASH() -> str:  # noqa: N802 - a lazily computed constant
    if not _dummy:
        _dummy.append(_hasher().hash("not a password of anyone"))
    return _dummy[0]
