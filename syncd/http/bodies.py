"""Reading an API request: its body (capped before and while reading), its JSON, its path and
query parameters. Each refusal is an `ApiError` with the status it becomes."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from syncd.core.model import StepContent
from syncd.http.errors import ApiError

MAX_API_BODY = 4 * 1024 * 1024


async def read_capped(request: Request, limit: int) -> bytes:
    """Refuse by Content-Length before reading, and stop reading once past the limit."""
    check_length(request.headers.get("content-length"), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_length(length: str | None, limit: int) -> None:
    """Refuse a body by its Content-Length, before reading any of it."""
    if length is not None:
        # isdigit() is also true of "²" and of a 5,000-digit run, which int() refuses.
        if not (length.isascii() and length.isdigit()):
            raise ApiError(400, "Content-Length is not a number")
        if len(length.lstrip("0")) > len(str(limit)) or int(length) > limit:
            raise ApiError(413, f"body of {length[:20]} bytes is over the limit of {limit}")


async def json_body(request: Request, allow_empty: bool = False) -> dict[str, Any]:
    raw = await read_capped(request, MAX_API_BODY)
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "a JSON object body is required")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "the body is not valid JSON", str(e)[:200]) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        # JSON may escape half a UTF-16 pair ("\ud800"): valid JSON, but not text; the store,
        # git and the log cannot encode it.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(
            422,
            "the body holds a lone surrogate (half a UTF-16 pair), which is not text",
            f"at character {e.start} of the value",
        ) from None
    return body


def step_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not name.strip() or len(name) > 1024 or "\x00" in name:
        raise ApiError(422, "a step name must be 1 to 1024 characters, without NUL")
    return name


def step_content(body: dict[str, Any]) -> StepContent:
    content = body.get("content", body)
    if not isinstance(content, dict):
        raise ApiError(422, "`content` must be an object with `if` and `do`")
    for key in ("if", "do"):
        if not isinstance(content.get(key), str):
            raise ApiError(422, f"`content.{key}` must be a string")
    for key in ("enabled", "valid"):
        if key in content and not isinstance(content[key], bool):
            raise ApiError(422, f"`content.{key}` must be true or false")
    return StepContent.from_dict(content)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # isdigit() is true of "²" too, which int() refuses (a 500); and 5,000 digits are no count.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise ApiError(400, f"`{name}` must be a whole number from {low} to {high}")
    return int(raw)
