"""Errors as HTTP answers: JSON `{"error": ..., "detail": ...}` that never carry a secret.

Which of syncd's errors becomes which status is one table, `syncd.service.answers`, which the
console and the audit read too; here it is extended to the API's own errors.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from syncd.core.errors import SyncdError
from syncd.ops.logs import fields
from syncd.service import answers
from syncd.service.remote_reads import Busy

# The API's logger, whichever of its modules writes.
log = logging.getLogger("syncd.api")

RETRY_AFTER_SECONDS = str(answers.RETRY_AFTER_SECONDS)  # as a header has it


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
    return answers.status_of(exc)


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
        status = answers.status_of(exc)
        if not answers.retry_later(status):
            return error_response(status, str(exc))
        wait = str(exc.retry_after) if isinstance(exc, Busy) else RETRY_AFTER_SECONDS
        return error_response(status, str(exc), None, {"Retry-After": wait})

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("request failed", extra=fields(path=request.url.path))
        return error_response(500, "internal error; see syncd's log")

    return {
        ApiError: api_error,
        HTTPException: http_error,
        SyncdError: syncd_error,
        Exception: crash,
    }
