"""What stands before every endpoint, as plain ASGI middleware (so that it runs before the body is
read or parsed): the body size limit, the API key of /v1 requests and its rate limit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from rag.keys import ApiKeys, KeyRefusedError
from ragqa.api.errors import ApiError, body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body(status, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Refuses a body over `limit` bytes with 413: by its Content-Length before reading a byte,
    or, for a chunked body, as soon as the bytes read pass the limit."""

    def __init__(self, app: Asgi, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive)
            await send_error(send, 413, self._message(), {"Connection": "close"})
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"the request body is larger than the API's {self.limit / 2**20:g} MB limit (RAGQA_API_MAX_BODY_MB)"

    async def _drain(self, receive: Receive, most: int = 256 * 2**20) -> None:
        """Read and drop a refused body (up to `most` bytes), so that a client still sending it
        gets the 413 rather than a reset connection."""
        drained = 0
        with anyio.move_on_after(30):
            while drained < most:
                message = await receive()
                drained += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body"):
                    break


class RateLimiter:
    """A token bucket per key: `per_minute` requests at once, refilled evenly over a minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: int) -> float:
        """0 when the request may go ahead; else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1:
                self._buckets[key_id] = (tokens, now)
                return (1 - tokens) / rate
            self._buckets[key_id] = (tokens - 1, now)
            return 0.0


class KeyGuard:
    """Every /v1 request must carry a valid key (401 otherwise) within its rate (429); the account
    it acts as is left in `scope["state"]["caller"]` for the endpoints."""

    def __init__(self, app: Asgi, keys: ApiKeys, limiter: RateLimiter, prefix: str = "/v1/") -> None:
        self.app, self.keys, self.limiter, self.prefix = app, keys, limiter, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1").strip()
        scheme, _, token = header.partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
        try:
            caller = await anyio.to_thread.run_sync(self.keys.authenticate, key)
        except KeyRefusedError as exc:
            await send_error(send, 401, str(exc), {"WWW-Authenticate": "Bearer"})
            return
        wait = self.limiter.take(caller.key_id)
        if wait > 0:
            await send_error(send, 429, f"rate limit of {self.limiter.per_minute} requests a minute for this key "
                             f"reached (RAGQA_API_RATE_LIMIT); retry in {wait:.1f} s",
                             {"Retry-After": str(max(1, round(wait)))})
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)
