"""The HTTP API: routes only. Each parses its request, calls the workspace use cases in
`syncd.service`, and shapes the answer. This module and its `api_*.py` are the only place
errors become statuses.

Every request a stranger can send is checked: bearer tokens with scopes (`api_auth`), body size
before the body is read and JSON shape before use (`api_requests`), signatures before parsing
(the webhook endpoint, `api_hooks`). Errors are JSON `{"error": ..., "detail": ...}` and never
carry a secret; which error becomes which status is `api_errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.app import Parts
from syncd.config import WorkspaceConfig
from syncd.config.state import state_problem
from syncd.core.errors import RevisionNotFound
from syncd.core.model import Mode
from syncd.core.refs import is_revision
from syncd.http.audit_api import audit_routes
from syncd.http.auth import authenticate, authorize, find_token
from syncd.http.badge import render_badge
from syncd.http.bodies import MAX_API_BODY, int_param, json_body, step_content, step_name
from syncd.http.errors import (
    RETRY_AFTER_SECONDS,
    ApiError,
    error_response,
    exception_handlers,
    status_of,
)
from syncd.http.hooks import DaemonWebhooks, HooksFirst, WebhookEndpoint
from syncd.http.openapi import openapi_document
from syncd.runs.requests import Ticket
from syncd.service import paging
from syncd.service.access import require, visible
from syncd.service.actions import Act
from syncd.service.audit import Actor
from syncd.service.views import (
    PREVIEW_REVISION,
    diff_view,
    preview_view,
    replica_view,
    sync_result_view,
)
from syncd.service.waiting import HEAD, MAX_WAIT_SECONDS, Waiting, hold, parse_revision
from syncd.store import StoreError
from syncd.sync.export import parse_export_request

# The names other code imports from here, wherever they are defined.
__all__ = [
    "MAX_API_BODY",
    "RETRY_AFTER_SECONDS",
    "ApiError",
    "HooksFirst",
    "WebhookEndpoint",
    "authorize",
    "create_app",
    "error_response",
    "find_token",
    "status_of",
]

WAIT_TIMEOUT = 600.0
PROBE_DEADLINE = 2.0  # seconds /readyz waits for the store: a load balancer's probe is short
Handler = Callable[[Request], Awaitable[Response]]
ActHandler = Callable[[Request, Act], Awaitable[Response]]


def create_app(parts: Parts, lifespan: Any = None) -> Starlette:
    def scoped(scope: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            token = authorize(parts.config.tokens, request, scope, parts.guesses)
            # Who asks, and which workspaces are there for them (see `_workspace`).
            request.state.actor = Actor(token.name, "api", token.access)
            return await handler(request)

        return endpoint

    def audited(action: str, handler: ActHandler) -> Handler:
        """A mutating call: an action of the service (which writes its audit entry: who, by
        the token's name, never its value, did what to which workspace, and how it ended),
        with the request read inside it, so that a refusal of the request is audited too.
        The action checks the scope it needs on the workspace (syncd.service.access): a token
        without it is refused inside the action, and audited."""

        async def endpoint(request: Request) -> Response:
            token = authenticate(parts.config.tokens, request, parts.guesses)
            actor = request.state.actor = Actor(token.name, "api", token.access)
            ws_id, step = request.path_params["id"], request.path_params.get("name")
            async with parts.actions.act(actor, action, ws_id, step, judge=status_of) as act:
                response = await handler(request, act)
                act.status = response.status_code
            return response

        return endpoint

    async def list_workspaces(request: Request) -> Response:
        # Pages by id after a cursor; without `limit` (or a cursor), the whole list.
        try:
            query = paging.parse(request.query_params)
        except paging.BadParameter as e:
            raise ApiError(400, str(e), {"parameter": e.parameter}) from None
        actor = actor_of(request)

        def read() -> dict[str, Any]:
            found = paging.page(parts.workspaces, actor, query)
            views = parts.workspaces.views(found.workspaces)
            return {"workspaces": views, "next_cursor": found.next_cursor}

        return JSONResponse(await parts.store_calls.run(read))

    async def get_workspace(request: Request) -> Response:
        ws = _workspace(parts, request)
        return JSONResponse(await parts.store_calls.run(parts.workspaces.view, ws))

    async def diff(request: Request) -> Response:
        ws = _workspace(parts, request)
        # It talks to the remote: on threads of its own, bounded (429 past the bound).
        return JSONResponse(
            diff_view(ws, await parts.remote_reads.run(parts.workspaces.preview, ws))
        )

    async def preview(request: Request) -> Response:
        """What a commit (the branch's, or a pull request head syncd fetched) would do now."""
        ws = _workspace(parts, request)
        revision = request.query_params.get("revision", "")
        if not PREVIEW_REVISION.fullmatch(revision):
            raise ApiError(400, "`revision` must be a commit sha (7 to 40 hex digits)")
        try:
            # It may fetch from the remote: on the remote reads' threads, bounded, as `diff`.
            found = await parts.remote_reads.run(parts.workspaces.preview_revision, ws, revision)
        except RevisionNotFound as e:  # a commit no one knows: not found, unlike a sync's 422
            raise ApiError(404, str(e)) from None
        return JSONResponse(preview_view(ws, found))

    async def sync(request: Request, act: Act) -> Response:
        ws = act.workspace
        body = await json_body(request, allow_empty=True)
        dry_run, revision = body.get("dry_run", False), body.get("revision")
        if not isinstance(dry_run, bool):
            raise ApiError(422, "`dry_run` must be true or false")
        if revision is not None and (not isinstance(revision, str) or not is_revision(revision)):
            raise ApiError(422, "`revision` must be a commit sha (4 to 40 hex digits) or null")
        ticket = await act.sync(revision, dry_run)
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

    async def wait(request: Request) -> Response:
        """Hold until the workspace has applied the revision (or a descendant) and is healthy,
        a run of it failed, or `timeout` seconds passed: `result` says which (always 200)."""
        ws = _workspace(parts, request)
        asked = request.query_params.get("revision", HEAD)
        seconds = int_param(request, "timeout", 30, 0, MAX_WAIT_SECONDS)
        parse_revision(asked)  # refused (422) before the remote is asked
        waiting = Waiting(parts.workspaces)
        # HEAD asks the remote: on the remote reads' own threads, bounded (429 past it).
        target = await parts.remote_reads.run(waiting.target, ws, asked)
        return JSONResponse(
            await hold(lambda: parts.store_calls.run(waiting.check, ws, target), seconds)
        )

    async def suspend(request: Request, act: Act) -> Response:
        return JSONResponse(await act.suspend())

    async def resume(request: Request, act: Act) -> Response:
        ticket = await act.resume()
        return JSONResponse(_accepted(act.workspace, ticket, False), status_code=202)

    async def runs(request: Request) -> Response:
        ws = _workspace(parts, request)
        limit = int_param(request, "limit", 50, 1, 1000)
        found = await parts.store_calls.run(parts.workspaces.runs, ws, limit)
        return JSONResponse({"runs": [r.to_dict() for r in found]})

    async def run(request: Request) -> Response:
        found = await parts.store_calls.run(parts.workspaces.run, request.path_params["run_id"])
        require(actor_of(request), "read", parts.config.workspace(found.workspace))
        return JSONResponse(found.to_dict())

    async def steps(request: Request) -> Response:
        ws = _workspace(parts, request)
        live = await parts.store_calls.run(parts.workspaces.steps, ws)
        return JSONResponse({"steps": [s.to_dict() for s in live]})

    async def step(request: Request) -> Response:
        ws, name = _workspace(parts, request), step_name(request)
        return JSONResponse(
            (await parts.store_calls.run(parts.workspaces.step, ws, name)).to_dict()
        )

    async def put_step(request: Request, act: Act) -> Response:
        name = step_name(request)
        content = step_content(await json_body(request))
        return JSONResponse((await act.put_step(name, content)).to_dict())

    async def delete_step(request: Request, act: Act) -> Response:
        act.status = 204  # before: the entry is stored with the deletion
        await act.delete_step(step_name(request))
        return Response(status_code=204)

    async def export(request: Request, act: Act) -> Response:
        order = parse_export_request(await json_body(request))
        return JSONResponse((await act.export(order)).to_dict())

    async def health(request: Request) -> Response:
        ws = _workspace(parts, request)
        return JSONResponse(await parts.store_calls.run(parts.workspaces.health, ws))

    async def badge(request: Request) -> Response:
        # No token: a badge is shown in READMEs; only workspaces with `badge: true` have one.
        ws_id = request.path_params["id"]
        status, health = await parts.store_calls.run(parts.workspaces.badge, ws_id)
        label = parts.workspaces.get(ws_id).name
        return Response(
            render_badge(label, status, health),
            media_type="image/svg+xml",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def metrics(request: Request) -> Response:
        # Rendered on a thread: with thousands of workspaces the text takes long enough to
        # hold up webhooks and probes if the event loop made it.
        text = await asyncio.to_thread(parts.metrics.render)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def replicas(request: Request) -> Response:
        coordinator = parts.scheduler.coordinator
        found = await coordinator.replicas()
        # The workspaces each replica holds, as far as the caller may know of them.
        seen = {ws.id for ws in visible(actor_of(request), parts.config.workspaces)}
        shown = [replace(r, holds=tuple(w for w in r.holds if w in seen)) for r in found]
        return JSONResponse(
            {"shared": coordinator.shared, "replicas": [replica_view(r) for r in shown]}
        )

    async def readyz(request: Request) -> Response:
        # A replica cut off from the database says so at once, before its store call times out;
        # a store that does not answer (locked, frozen) within the probe's deadline is a problem.
        problem = parts.scheduler.coordinator.problem()
        if problem is None:
            try:
                problem = await parts.scheduler.offloop.within(
                    PROBE_DEADLINE, parts.core.store.problem
                )
            except StoreError as e:
                problem = str(e)
        # A state directory that turned read-only or full: no mirror can be fetched into it.
        folder = parts.config.state_dir
        try:
            state = await asyncio.wait_for(asyncio.to_thread(state_problem, folder), PROBE_DEADLINE)
        except TimeoutError:
            state = f"the state directory {folder} did not answer within {PROBE_DEADLINE:g}s"
        if parts.ready and not parts.stopping and problem is None and state is None:
            return JSONResponse({"status": "ready"})
        return error_response(
            503,
            "not ready",
            {"stopping": parts.stopping, "store": problem, "state_dir": state},
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    ws_path = "/api/v1/workspaces/{id}"
    hook = DaemonWebhooks(parts)
    step_path = f"{ws_path}/steps/{{name:path}}"
    routes = [
        Route("/hooks", hook, methods=["POST"]),
        Route("/hooks/{provider}", hook, methods=["POST"]),
        Route("/api/v1/workspaces", scoped("read", list_workspaces), methods=["GET"]),
        Route(ws_path, scoped("read", get_workspace), methods=["GET"]),
        Route(f"{ws_path}/diff", scoped("read", diff), methods=["GET"]),
        Route(f"{ws_path}/preview", scoped("read", preview), methods=["GET"]),
        Route(f"{ws_path}/sync", audited("sync", sync), methods=["POST"]),
        Route(f"{ws_path}/suspend", audited("suspend", suspend), methods=["POST"]),
        Route(f"{ws_path}/resume", audited("resume", resume), methods=["POST"]),
        Route(f"{ws_path}/runs", scoped("read", runs), methods=["GET"]),
        Route(f"{ws_path}/wait", scoped("read", wait), methods=["GET"]),
        Route("/api/v1/runs/{run_id}", scoped("read", run), methods=["GET"]),
        Route("/api/v1/replicas", scoped("read", replicas), methods=["GET"]),
        *audit_routes(parts, scoped),
        Route(f"{ws_path}/steps", scoped("read", steps), methods=["GET"]),
        Route(f"{ws_path}/steps/{{name:path}}", scoped("read", step), methods=["GET"]),
        Route(step_path, audited("step.put", put_step), methods=["PUT"]),
        Route(step_path, audited("step.delete", delete_step), methods=["DELETE"]),
        Route(f"{ws_path}/export", audited("export", export), methods=["POST"]),
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
        exception_handlers=exception_handlers(),
        middleware=[Middleware(HooksFirst, endpoint=hook)],
    )


def _accepted(ws: WorkspaceConfig, ticket: Ticket, suspends: bool) -> dict[str, Any]:
    return {
        "workspace": ws.id,
        "run_id": ticket.run_id,
        "coalesced": ticket.coalesced,
        "suspended": suspends,
    }


def _workspace(parts: Parts, request: Request) -> WorkspaceConfig:
    """The workspace the path names, if the caller may read it (else 404, as for no such
    workspace: its existence is not told)."""
    return require(actor_of(request), "read", parts.workspaces.get(request.path_params["id"]))


def actor_of(request: Request) -> Actor:
    """Who asks: set by `scoped` or `audited` once the token is checked."""
    actor: Actor = request.state.actor
    return actor
