"""What every endpoint shares, built once per server process (the same parts as the UI's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.access import Accounts
from rag.keys import ApiKeys, Caller
from rag.settings import Settings
from ragqa.api.metrics import Metrics

#: Documents the scheme in /openapi.json; the check itself is `guard.KeyGuard`, before the body is read.
bearer = HTTPBearer(auto_error=False, description="An API key from `ragqa keys create USER`.")


@dataclass
class Parts:
    settings: Settings
    store: Any
    retriever: Any
    generator: Any
    accounts: Accounts
    keys: ApiKeys
    metrics: Metrics
    tracer: Any
    tracer_provider: Any = None

    def readable(self, caller: Caller) -> tuple[str, ...] | None:
        return self.accounts.readable(caller.principal)

    def models(self, caller: Caller) -> list[str]:
        """`library` (everything the caller may read) and each collection the caller may read."""
        readable = self.readable(caller)
        names = self.store.collections() if readable is None else sorted(readable)
        return ["library", *[n for n in names if n != "library"]]


def parts_of(request: Request) -> Parts:
    parts: Parts = request.app.state.parts
    return parts


def caller_of(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Caller:
    """The account the request's key acts as (checked by the guard before the endpoint runs)."""
    caller: Caller = request.state.caller
    return caller


CallerDep = Annotated[Caller, Depends(caller_of)]
