"""`POST /hooks[/{provider}]`: the webhook endpoint as a bare ASGI app, and the middleware
that hands it its requests before routing. The work itself (verify, parse, dedupe, match,
queue) is `syncd.service.intake`'s; here are the HTTP sides of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.core.errors import SyncdError
from syncd.http.bodies import check_length
from syncd.http.errors import RETRY_AFTER_SECONDS, ApiError
from syncd.service.answers import status_of
from syncd.service.intake import DeliveryOutcome, Intake, Overloaded, Receipt
from syncd.webhooks import BadSignature, Lowered, MalformedPayload, UnknownProvider

if TYPE_CHECKING:  # the daemon's parts only for the annotations
    from syncd.app import Parts


class WebhookEndpoint:
    """`POST /hooks[/{provider}]` as a bare ASGI app: the busiest route by far, so it skips
    Request and Response objects (a fifth of a webhook's time went to them). Same checks in
    the same order as the other routes would do them: provider, stopping, the body's size
    (by Content-Length before reading, then while reading), then Intake (signature before
    parsing); each error type becomes its status here.

    The daemon's endpoint takes a delivery whole; an intake process's (`syncd.intake_front`)
    screens it and hands a matched push on to the daemon: `take` is where they differ."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    @property
    def intake(self) -> Intake:
        return self._intake

    def accepting(self) -> bool:
        return True

    def max_body_bytes(self) -> int:
        raise NotImplementedError

    async def take(
        self,
        provider: str,
        headers: Lowered,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Receipt | None:
        """The receipt to answer with, or None when the request was answered already."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        intake = self.intake
        headers = _lowered(scope["headers"])
        try:
            provider = intake.provider_of(scope.get("path_params", {}).get("provider"), headers)
            if not self.accepting():
                intake.refused(provider, "unavailable")
                raise ApiError(503, "syncd is stopping", None, {"Retry-After": RETRY_AFTER_SECONDS})
            try:
                body = await _read_asgi_body(
                    headers.get("content-length"), receive, self.max_body_bytes()
                )
            except ApiError as e:
                intake.refused(provider, "too_large" if e.status == 413 else "malformed")
                raise
            receipt = await self.take(provider, headers, body, scope, receive, send)
        except ApiError as e:
            return await _send_json(send, e.status, _error(e.error, e.detail), e.headers)
        except (UnknownProvider, BadSignature, MalformedPayload, Overloaded) as e:
            return await _send_json(send, status_of(e), *_refusal(e))
        if receipt is not None:
            await _send_receipt(send, receipt)


def _refusal(e: SyncdError) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A refused delivery's body and headers; its status is the one table's."""
    if isinstance(e, UnknownProvider):
        detail = {"providers": list(e.known)}
        return _error(f"unknown webhook provider {e.provider[:40]!r}", detail), None
    if isinstance(e, Overloaded):  # the delivery may be sent again: say how far it got
        detail = {"matched": list(e.matched), "queued": list(e.queued)}
        return _error(str(e), detail), {"Retry-After": RETRY_AFTER_SECONDS}
    return _error(str(e)), None


class DaemonWebhooks(WebhookEndpoint):
    """The daemon's own endpoint: every delivery is taken here."""

    def __init__(self, parts: Parts) -> None:
        # Nothing of the parts is read until a request comes: the routes (and with them the
        # OpenAPI document) are built without one, `create_app(None)`.
        self.parts = parts

    @property
    def intake(self) -> Intake:
        return self.parts.intake

    def accepting(self) -> bool:
        return not self.parts.stopping and self.parts.scheduler.accepting

    def max_body_bytes(self) -> int:
        return self.parts.config.server.max_body_bytes

    async def take(
        self,
        provider: str,
        headers: Lowered,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Receipt | None:
        # Most webhooks are answered by the screen alone (ignored, pings, pushes no workspace
        # follows): no coroutine for them; only a matched push awaits its dedupe and request.
        screened = self.intake.screen(provider, headers, body)
        if screened.receipt is not None:
            return screened.receipt
        return await self.intake.take(screened)


class HooksFirst:
    """Hands `POST /hooks[/{provider}]` straight to the webhook endpoint, before routing:
    the router would try the path against the routes and wrap the call for exception
    handlers the endpoint does not need (it answers every error itself). Anything else, and
    a path under a root_path, goes through the router as before; the routes still list the
    webhook's, for 405s and the OpenAPI document."""

    def __init__(self, app: ASGIApp, endpoint: WebhookEndpoint) -> None:
        self.app, self.endpoint = app, endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path == "/hooks":
                scope["path_params"] = {}
                return await self.endpoint(scope, receive, send)
            if path.startswith("/hooks/") and len(path) > 7 and "/" not in path[7:]:
                scope["path_params"] = {"provider": path[7:]}
                return await self.endpoint(scope, receive, send)
        await self.app(scope, receive, send)


# Header names as str, lower-cased, by their bytes: every request of a sender repeats the same
# dozen names, and decoding each anew was a tenth of the endpoint's own time. Bounded: a sender
# making up names costs the decoding again, not memory.
_NAMES: dict[bytes, str] = {}
_NAMES_KEPT = 512


def _lowered(raw: Iterable[tuple[bytes, bytes]]) -> Lowered:
    """An ASGI scope's headers as the str mapping the webhook code reads (latin-1, as Starlette
    decodes them). ASGI servers send lower-case names already; lower() keeps any other caller
    right."""
    headers = Lowered()
    for name, value in raw:
        key = _NAMES.get(name)
        if key is None:
            if len(_NAMES) >= _NAMES_KEPT:
                _NAMES.clear()
            key = _NAMES[name] = name.decode("latin-1").lower()
        headers[key] = value.decode("latin-1")
    return headers


def _error(error: str, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "detail": detail}


async def _read_asgi_body(length: str | None, receive: Receive, limit: int) -> bytes:
    """`read_capped` for a bare ASGI app: by Content-Length before reading, then chunk by
    chunk."""
    check_length(length, limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(
    send: Send, status: int, content: Any, headers: dict[str, str] | None = None
) -> None:
    """What JSONResponse sends, without building one."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    await _send_body(send, status, body.encode("utf-8"), headers)


async def _send_body(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await _send_raw(send, status, body, raw + _json_headers(body))


async def _send_raw(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]


# The answers to nearly every webhook, rendered once, headers and all (each answer gets a copy
# of the list: a server or middleware may add to a message's headers).
_UNMATCHED = b'{"matched":[],"queued":[]}'
_UNMATCHED_HEADERS = _json_headers(_UNMATCHED)
_FIXED = {
    outcome: (status, body, _json_headers(body))
    for outcome, status, body in (
        (DeliveryOutcome.PING, 200, b'{"ping":"ok"}'),
        (DeliveryOutcome.IGNORED, 200, b'{"ignored":true,"matched":[],"queued":[]}'),
        (DeliveryOutcome.DUPLICATE, 200, b'{"duplicate":true,"matched":[],"queued":[]}'),
    )
}


async def _send_receipt(send: Send, receipt: Receipt) -> None:
    fixed = _FIXED.get(receipt.outcome)
    if fixed is not None:
        status, body, headers = fixed
        return await _send_raw(send, status, body, list(headers))
    if not receipt.matched and not receipt.queued:
        return await _send_raw(send, 202, _UNMATCHED, list(_UNMATCHED_HEADERS))
    content = {"matched": list(receipt.matched), "queued": list(receipt.queued)}
    await _send_json(send, 202, content)
