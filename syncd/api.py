"""The HTTP API: routes only. Each parses its request, calls the workspace use cases in
`syncd.service`, and shapes the answer. The only place errors become statuses.

Every request a stranger can send is checked: bearer tokens with scopes, body size before the
body is read, signatures before parsing, JSON shape before use. Errors are JSON
`{"error": ..., "detail": ...}` and never carry a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.app import App
from syncd.badge import render_badge
from syncd.config import TokenConfig, WorkspaceConfig
from syncd.errors import Conflict, GitError, NotFound, RevisionNotFound, SyncdError
from syncd.export import parse_export_request
from syncd.logs import fields
from syncd.model import Mode, StepContent, Trigger
from syncd.openapi import openapi_document
from syncd.refs import is_revision
from syncd.scheduler import QueueFull, ShuttingDown, Ticket
from syncd.service.intake import Outcome, Overloaded, Receipt
from syncd.service.remote_reads import Busy
from syncd.store import StoreError
from syncd.views import diff_view, replica_view, sync_result_view
from syncd.webhooks import BadSignature, Lowered, MalformedPayload, UnknownProvider

log = logging.getLogger("syncd.api")
# Who changed what: its own logger, so that it can be routed or kept apart.
audit = logging.getLogger("syncd.audit")

MAX_API_BODY = 4 * 1024 * 1024
WAIT_TIMEOUT = 600.0
RETRY_AFTER_SECONDS = "5"
Handler = Callable[[Request], Awaitable[Response]]


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


def create_app(rt: App, lifespan: Any = None) -> Starlette:
    def scoped(scope: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            authorize(rt, request, scope)
            return await handler(request)

        return endpoint

    def audited(scope: str, action: str, handler: Handler) -> Handler:
        """A mutating call: one audit line saying who (the token's name, never its value) did
        what to which workspace, and how it ended."""

        async def endpoint(request: Request) -> Response:
            token = authorize(rt, request, scope)
            workspace = request.path_params.get("id")
            try:
                response = await handler(request)
            except Exception as e:
                _audit(token.name, action, workspace, request, status_of(e), e)
                raise
            _audit(token.name, action, workspace, request, response.status_code, None)
            return response

        return endpoint

    async def list_workspaces(request: Request) -> Response:
        chosen = rt.workspaces.tagged(request.query_params.get("tag"))
        return JSONResponse({"workspaces": await asyncio.to_thread(rt.workspaces.views, chosen)})

    async def get_workspace(request: Request) -> Response:
        ws = _workspace(rt, request)
        return JSONResponse(await asyncio.to_thread(rt.workspaces.view, ws))

    async def diff(request: Request) -> Response:
        ws = _workspace(rt, request)
        # It talks to the remote: on threads of its own, bounded (429 past the bound).
        return JSONResponse(diff_view(ws, await rt.remote_reads.run(rt.workspaces.preview, ws)))

    async def sync(request: Request) -> Response:
        ws = _workspace(rt, request)
        body = await _json_body(request, allow_empty=True)
        dry_run, revision = body.get("dry_run", False), body.get("revision")
        if not isinstance(dry_run, bool):
            raise ApiError(422, "`dry_run` must be true or false")
        if revision is not None and (not isinstance(revision, str) or not is_revision(revision)):
            raise ApiError(422, "`revision` must be a commit sha (4 to 40 hex digits) or null")
        if revision is not None:  # 422 now for a commit that is not on the workspace's branch
            await asyncio.to_thread(rt.workspaces.check_revision, ws, revision)
        ticket = rt.workspaces.request_sync(ws, Trigger.MANUAL, revision, dry_run)
        if request.query_params.get("wait", "").lower() not in ("1", "true", "yes"):
            # A pinned sync of an automatic workspace suspends its automation once applied.
            pins = revision is not None and not dry_run and ws.mode is Mode.AUTOMATIC
            return JSONResponse(_accepted(ws, ticket, pins), status_code=202)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(ticket.future), WAIT_TIMEOUT)
        except TimeoutError:
            raise ApiError(
                504, "the run did not finish in time", {"run_id": ticket.run_id}
            ) from None
        return JSONResponse(sync_result_view(ws, outcome))

    async def suspend(request: Request) -> Response:
        ws = _workspace(rt, request)
        return JSONResponse(await asyncio.to_thread(rt.workspaces.suspend, ws))

    async def resume(request: Request) -> Response:
        ws = _workspace(rt, request)
        await asyncio.to_thread(rt.workspaces.resume, ws)
        # Back to the branch head: a manual sync, which also ends a pin.
        try:
            ticket = rt.workspaces.request_sync(ws, Trigger.MANUAL, None, False)
        except (QueueFull, ShuttingDown) as e:
            # The resume itself is stored: say so, or a client would resume again for nothing.
            raise ApiError(
                503,
                f"workspace {ws.id} is resumed, but its sync to the branch head was not queued: "
                f"{e}; the next poll or push syncs it",
                None,
                {"Retry-After": RETRY_AFTER_SECONDS},
            ) from e
        return JSONResponse(_accepted(ws, ticket, False), status_code=202)

    async def runs(request: Request) -> Response:
        ws = _workspace(rt, request)
        limit = _int_param(request, "limit", 50, 1, 1000)
        found = await asyncio.to_thread(rt.workspaces.runs, ws, limit)
        return JSONResponse({"runs": [r.to_dict() for r in found]})

    async def run(request: Request) -> Response:
        found = await asyncio.to_thread(rt.workspaces.run, request.path_params["run_id"])
        return JSONResponse(found.to_dict())

    async def steps(request: Request) -> Response:
        ws = _workspace(rt, request)
        live = await asyncio.to_thread(rt.workspaces.steps, ws)
        return JSONResponse({"steps": [s.to_dict() for s in live]})

    async def step(request: Request) -> Response:
        ws, name = _workspace(rt, request), _step_name(request)
        return JSONResponse((await asyncio.to_thread(rt.workspaces.step, ws, name)).to_dict())

    async def put_step(request: Request) -> Response:
        ws, name = _workspace(rt, request), _step_name(request)
        content = _step_content(await _json_body(request))
        saved = await asyncio.to_thread(rt.workspaces.put_step, ws, name, content)
        rt.workspaces.note_edit(ws)
        return JSONResponse(saved.to_dict())

    async def delete_step(request: Request) -> Response:
        ws, name = _workspace(rt, request), _step_name(request)
        await asyncio.to_thread(rt.workspaces.delete_step, ws, name)
        rt.workspaces.note_edit(ws)
        return Response(status_code=204)

    async def export(request: Request) -> Response:
        ws = _workspace(rt, request)
        order = parse_export_request(await _json_body(request))
        result = await asyncio.to_thread(rt.workspaces.export, ws, order)
        return JSONResponse(result.to_dict())

    async def health(request: Request) -> Response:
        ws = _workspace(rt, request)
        return JSONResponse(await asyncio.to_thread(rt.workspaces.health, ws))

    async def badge(request: Request) -> Response:
        # No token: a badge is shown in READMEs; only workspaces with `badge: true` have one.
        ws_id = request.path_params["id"]
        status, health = await asyncio.to_thread(rt.workspaces.badge, ws_id)
        label = rt.workspaces.get(ws_id).name
        return Response(
            render_badge(label, status, health),
            media_type="image/svg+xml",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def replicas(request: Request) -> Response:
        coordinator = rt.scheduler.coordinator
        found = await coordinator.replicas()
        return JSONResponse(
            {"shared": coordinator.shared, "replicas": [replica_view(r) for r in found]}
        )

    async def readyz(request: Request) -> Response:
        # A replica cut off from the database says so at once, before its store call times out.
        problem = rt.scheduler.coordinator.problem() or await asyncio.to_thread(
            rt.core.store.problem
        )
        if rt.ready and not rt.stopping and problem is None:
            return JSONResponse({"status": "ready"})
        return error_response(503, "not ready", {"stopping": rt.stopping, "store": problem})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    ws_path = "/api/v1/workspaces/{id}"
    hook = WebhookEndpoint(rt)
    step_path = f"{ws_path}/steps/{{name:path}}"
    routes = [
        Route("/hooks", hook, methods=["POST"]),
        Route("/hooks/{provider}", hook, methods=["POST"]),
        Route("/api/v1/workspaces", scoped("read", list_workspaces), methods=["GET"]),
        Route(ws_path, scoped("read", get_workspace), methods=["GET"]),
        Route(f"{ws_path}/diff", scoped("read", diff), methods=["GET"]),
        Route(f"{ws_path}/sync", audited("sync", "sync", sync), methods=["POST"]),
        Route(f"{ws_path}/suspend", audited("sync", "suspend", suspend), methods=["POST"]),
        Route(f"{ws_path}/resume", audited("sync", "resume", resume), methods=["POST"]),
        Route(f"{ws_path}/runs", scoped("read", runs), methods=["GET"]),
        Route("/api/v1/runs/{run_id}", scoped("read", run), methods=["GET"]),
        Route("/api/v1/replicas", scoped("read", replicas), methods=["GET"]),
        Route(f"{ws_path}/steps", scoped("read", steps), methods=["GET"]),
        Route(f"{ws_path}/steps/{{name:path}}", scoped("read", step), methods=["GET"]),
        Route(step_path, audited("write", "step.put", put_step), methods=["PUT"]),
        Route(step_path, audited("write", "step.delete", delete_step), methods=["DELETE"]),
        Route(f"{ws_path}/export", audited("export", "export", export), methods=["POST"]),
        Route(f"{ws_path}/health", scoped("read", health), methods=["GET"]),
        Route(f"{ws_path}/badge.svg", badge, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=_handlers(),
        middleware=[Middleware(HooksFirst, endpoint=hook)],
    )


def _accepted(ws: WorkspaceConfig, ticket: Ticket, suspends: bool) -> dict[str, Any]:
    return {
        "workspace": ws.id,
        "run_id": ticket.run_id,
        "coalesced": ticket.coalesced,
        "suspended": suspends,
    }


# -- authentication -----------------------------------------------------------------------------


def authorize(rt: App, request: Request, scope: str) -> TokenConfig:
    header = request.headers.get("authorization", "")
    kind, _, presented = header.partition(" ")
    if kind.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401, "a bearer token is required", None, {"WWW-Authenticate": 'Bearer realm="syncd"'}
        )
    token = find_token(rt.config.tokens, presented.strip())
    if token is None:
        raise ApiError(
            401,
            "the bearer token is not valid",
            None,
            {"WWW-Authenticate": 'Bearer realm="syncd", error="invalid_token"'},
        )
    if not token.allows(scope):
        raise ApiError(403, f"token {token.name!r} lacks the {scope!r} scope")
    return token


def find_token(tokens: tuple[TokenConfig, ...], presented: str) -> TokenConfig | None:
    """Compare against every token in constant time; digests make the lengths equal."""
    wanted = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found = None
    for token in tokens:
        have = hashlib.sha256(token.token.reveal().encode()).digest()
        if hmac.compare_digest(wanted, have) and found is None:
            found = token
    return found


# -- webhooks -----------------------------------------------------------------------------------


class WebhookEndpoint:
    """`POST /hooks[/{provider}]` as a bare ASGI app: the busiest route by far, so it skips
    Request and Response objects (a fifth of a webhook's time went to them). Same checks in
    the same order as the other routes would do them: provider, stopping, the body's size
    (by Content-Length before reading, then while reading), then Intake (signature before
    parsing); each error type becomes its status here."""

    def __init__(self, rt: App) -> None:
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt, intake = self.rt, self.rt.intake
        # ASGI servers send lower-case names already; lower() keeps any other caller right.
        headers = Lowered(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
        )
        try:
            provider = intake.provider_of(scope.get("path_params", {}).get("provider"), headers)
            if rt.stopping or not rt.scheduler.accepting:
                intake.refused(provider, "unavailable")
                raise ApiError(503, "syncd is stopping", None, {"Retry-After": RETRY_AFTER_SECONDS})
            try:
                body = await _read_asgi_body(
                    headers.get("content-length"), receive, rt.config.server.max_body_bytes
                )
            except ApiError as e:
                intake.refused(provider, "too_large" if e.status == 413 else "malformed")
                raise
            receipt = intake.receive_lowered(provider, headers, body)
        except ApiError as e:
            return await _send_json(send, e.status, _error(e.error, e.detail), e.headers)
        except UnknownProvider as e:
            detail = {"providers": list(e.known)}
            error = _error(f"unknown webhook provider {e.provider[:40]!r}", detail)
            return await _send_json(send, 404, error)
        except BadSignature as e:
            return await _send_json(send, 401, _error(e.message))
        except MalformedPayload as e:
            return await _send_json(send, 400, _error(e.message))
        except Overloaded as e:
            detail = {"matched": list(e.matched), "queued": list(e.queued)}
            retry = {"Retry-After": RETRY_AFTER_SECONDS}
            return await _send_json(send, 503, _error(str(e), detail), retry)
        await _send_receipt(send, receipt)


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


def _error(error: str, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "detail": detail}


async def _read_asgi_body(length: str | None, receive: Receive, limit: int) -> bytes:
    """`_read_capped` for a bare ASGI app: by Content-Length before reading, then chunk by
    chunk."""
    _check_length(length, limit)
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
    raw += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# The answers to nearly every webhook, rendered once.
_UNMATCHED = b'{"matched":[],"queued":[]}'
_FIXED = {
    Outcome.PING: (200, b'{"ping":"ok"}'),
    Outcome.IGNORED: (200, b'{"ignored":true,"matched":[],"queued":[]}'),
    Outcome.DUPLICATE: (200, b'{"duplicate":true,"matched":[],"queued":[]}'),
}


async def _send_receipt(send: Send, receipt: Receipt) -> None:
    fixed = _FIXED.get(receipt.outcome)
    if fixed is not None:
        return await _send_body(send, *fixed)
    if not receipt.matched and not receipt.queued:
        return await _send_body(send, 202, _UNMATCHED)
    content = {"matched": list(receipt.matched), "queued": list(receipt.queued)}
    await _send_json(send, 202, content)


async def _read_capped(request: Request, limit: int) -> bytes:
    """Refuse by Content-Length before reading, and stop reading once past the limit."""
    _check_length(request.headers.get("content-length"), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_length(length: str | None, limit: int) -> None:
    """Refuse a body by its Content-Length, before reading any of it."""
    if length is not None:
        # isdigit() is also true of "²" and of a 5,000-digit run, which int() refuses.
        if not (length.isascii() and length.isdigit()):
            raise ApiError(400, "Content-Length is not a number")
        if len(length.lstrip("0")) > len(str(limit)) or int(length) > limit:
            raise ApiError(413, f"body of {length[:20]} bytes is over the limit of {limit}")


# -- request helpers ----------------------------------------------------------------------------


def _workspace(rt: App, request: Request) -> WorkspaceConfig:
    return rt.workspaces.get(request.path_params["id"])


def _step_name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not name.strip() or len(name) > 1024 or "\x00" in name:
        raise ApiError(422, "a step name must be 1 to 1024 characters, without NUL")
    return name


def _step_content(body: dict[str, Any]) -> StepContent:
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


async def _json_body(request: Request, allow_empty: bool = False) -> dict[str, Any]:
    raw = await _read_capped(request, MAX_API_BODY)
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


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, f"`{name}` must be a whole number from {low} to {high}")
    return int(raw)


# -- errors to statuses -------------------------------------------------------------------------


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


def _audit(
    token: str,
    action: str,
    workspace: str | None,
    request: Request,
    status: int,
    error: BaseException | None,
) -> None:
    result = "ok" if status < 400 else "refused" if status < 500 else "error"
    audit.log(
        logging.INFO if status < 400 else logging.WARNING,
        "audit",
        extra=fields(
            token=token,
            action=action,
            workspace=workspace,
            step=request.path_params.get("name"),
            result=result,
            status=status,
            error=None if error is None else str(error),
        ),
    )


def _handlers() -> dict[Any, Any]:
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
