"""Errors to HTTP statuses: the one table the API's routes and its webhook endpoint share.

Errors are JSON `{"error": ..., "detail": ...}` and never carry a secret.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from syncd.core.errors import Conflict, GitError, NotFound, RevisionNotFound, SyncdError
from syncd.ops.logs import fields
from syncd.runs.requests import QueueFull, ShuttingDown
from syncd.service.remote_reads import Busy
from syncd.store.protocol import StoreError

# The API's logger, whichever of its modules writes.
log = logging.getLogger("syncd.api")

RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def error_response(
    status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def status_of(exc: BaseException) -> int:
    """The HTTP status an error becomes."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, Busy):
        return 429
    if isinstance(exc, QueueFull | ShuttingDown | StoreError):
        return 503
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, GitError) and not isinstance(exc, RevisionNotFound):
        return 502  # the git remote failed us, not the caller
    if isinstance(exc, SyncdError):
        return 422
    return 500


def exception_handlers() -> dict[Any, Any]:
    """Starlette's exception handlers: each error type as its status and JSON answer."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, str(exc.detail), None, headers)

    async def syncd_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, Busy):
            return error_response(429, str(exc), None, {"Retry-After": str(exc.retry_after)})
        if isinstance(exc, QueueFull | ShuttingDown | StoreError):  # StoreError: locked, full
            return error_response(503, str(exc), None, {"Retry-After": RETRY_AFTER_SECONDS})
        return error_response(status_of(exc), str(exc))

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("request failed", extra=fields(path=request.url.path))
        return error_response(500, "internal error; see syncd's log")

    return {
        ApiError: api_error,
        HTTPException: http_error,
        SyncdError: syncd_error,
        Exception: crash,
    }
