"""Every failure as a JSON body in OpenAI's error shape, `{"error": {"message", "type", "code"}}`,
with a one-line message and the right status; never a traceback (those go to the server's log)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llm.errors import LlmError
from rag.access import AccessDeniedError
from rag.errors import ConfigError, LoadError, NotFoundError, RagqaError, StoreError, one_line
from rag.keys import KeyRefusedError

log = logging.getLogger("ragqa.api")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "request_too_large", 422: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 502: "generator_error", 503: "unavailable"}


class ApiError(Exception):
    """A refusal with its status and one-line message, raised anywhere in a request."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "code": code}}


def response(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body(status, message, code), status_code=status, headers=headers)


def status_of(exc: BaseException) -> int:
    """The HTTP status of a project error."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, KeyRefusedError):
        return 401
    if isinstance(exc, AccessDeniedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, ConfigError | LoadError | RagqaError):
        return 400
    if isinstance(exc, LlmError):
        return 502
    return 500


def describe(exc: BaseException, home: Path) -> tuple[int, str]:
    """(status, one-line message) of any exception; an unexpected one is logged with its traceback."""
    status = status_of(exc)
    if status == 500:
        where = log_crash(home, exc)
        return 500, f"internal error ({type(exc).__name__}); details in the server's log {where}"
    return status, exc.message if isinstance(exc, ApiError) else one_line(exc, 400)


def log_crash(home: Path, exc: BaseException) -> Path:
    """The traceback to the server's log and to the home's log file, as the CLI's edge writes it."""
    from ragqa.cli.edge import log_crash as append

    text = "".join(traceback.format_exception(exc))
    log.error("request failed:\n%s", text)
    return append(home, "ragqa serve", text)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return 400, f"the request body is not valid JSON ({ctx.get('error', 'cannot be parsed')})"
    if tuple(first.get("loc", ())) == ("body",):
        return 400, "the request body must be a JSON object (Content-Type: application/json)"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return 422, f"{where}: {first.get('msg', 'invalid')}"


def install(app: FastAPI, home: Path) -> None:
    """The handlers that turn every exception into a JSON error."""

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        status, message = _validation_message(exc)  # type: ignore[arg-type]
        return response(status, message)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if isinstance(exc.__cause__, ApiError):  # FastAPI wraps what failed while reading the body
            return response(exc.__cause__.status, exc.__cause__.message)
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint (see /openapi.json)"
        return response(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def project(_: Request, exc: Exception) -> JSONResponse:
        status, message = describe(exc, home)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else getattr(exc, "headers", None)
        return response(status, message, getattr(exc, "code", None), headers)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    for kind in (ApiError, RagqaError, LlmError, Exception):
        app.add_exception_handler(kind, project)
