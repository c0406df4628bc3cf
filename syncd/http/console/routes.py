"""The web console at /ui/: server-rendered pages over the workspace use cases.

Every action is a plain HTML form (POST, CSRF token, then a redirect), so the console works
without JavaScript; the little script in static/ only adds live updates (server-sent events)
and ticking ages. Data and actions come only from `syncd.service.workspaces`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from syncd.app import Parts
from syncd.core.errors import RevisionNotFound, SyncdError
from syncd.core.model import Health, Status
from syncd.core.refs import is_revision
from syncd.http.console import pages
from syncd.http.console.audit_page import audit_page
from syncd.http.console.data import datetime_text, drift, preview_data, workspace_data
from syncd.http.console.ended import KEY as ENDED_KEY
from syncd.http.console.ended import RefreshFirst, SharedEnded
from syncd.http.console.gate import SECURITY_HEADERS, Gate, Refused, SignInFirst, Visit
from syncd.http.console.oidc_routes import oidc_routes
from syncd.http.console.sign_in import sign_in_routes
from syncd.http.console.streams import MAX_WATCHED, LiveUpdates, SessionFull, TooManyStreams
from syncd.service import paging
from syncd.service.access import require, visible
from syncd.service.actions import Act
from syncd.service.answers import RETRY_AFTER_SECONDS, retry_later, status_of
from syncd.service.audit import Actor
from syncd.service.views import PREVIEW_REVISION, replica_view
from syncd.sync.export import parse_export_request

HERE = Path(__file__).parent
# Notices after an action, by a fixed code in the redirect's query: no text from a URL is shown.
NOTICES = {
    "queued": "Sync queued. The status below updates when it finishes.",
    "dry-run": "Dry run queued: its plan appears in the run history; nothing is applied.",
    "rollback": "Rollback queued: a sync pinned to the chosen revision. An automatic workspace "
    "stays on it, its automation suspended, until you resume.",
    "exported": "Exported.",
    "suspended": "Suspended: automatic syncs stop until you resume.",
    "resumed": "Resumed: a sync to the branch head is queued.",
}


DONE = {"suspend": "suspended", "resume": "resumed"}


def create_console(parts: Parts, prefix: str = "/ui") -> Starlette:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value, every template: step names and bodies are untrusted
        undefined=jinja2.StrictUndefined,
    )
    env.filters["datetime"] = datetime_text
    env.globals["age"] = lambda seconds: pages.age(seconds, time.time())

    # Sessions signed out: refused here at once, and (with a configured key) by every replica.
    async def read_ended() -> str | None:
        return await parts.store_calls.run(parts.core.store.get_meta, ENDED_KEY)

    async def write_ended(text: str) -> None:
        await parts.store_calls.run(parts.core.store.set_meta, ENDED_KEY, text)

    signed_out = SharedEnded(
        read_ended, write_ended, lambda: parts.config.console.session_key is not None
    )

    gate = Gate(parts, prefix, signed_out)

    def page(
        request: Request,
        seen: Visit,
        template: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        # The buttons a page shows: on a workspace's page, the scopes held on that workspace.
        ws, held = context.get("ws"), seen.actor.access
        scopes = held.scopes_on(ws.id, ws.tags) if ws else held.held_scopes()
        context.setdefault("notice", None)
        html = env.get_template(template).render(
            prefix=prefix,
            who=seen.principal.display if seen.principal else None,
            scopes=scopes,
            can_audit=held.anywhere("audit"),
            csrf=seen.csrf,
            **context,
        )
        response = finish(request, seen, HTMLResponse(html, status_code=status, headers=headers))
        if seen.fresh and template == "login.html":  # the form's CSRF token needs its cookie
            gate.set_cookie(request, response, seen.session)
        return response

    def finish(request: Request, seen: Visit, response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    def redirect(path: str, **query: str) -> RedirectResponse:
        url = prefix + path + (f"?{urlencode(query)}" if query else "")
        return RedirectResponse(url, status_code=303)

    def acting(actor: Actor, verb: str, request: Request) -> Act:
        """The action of a form, audited as the API's are, with the status the visitor got."""

        def judge(e: BaseException) -> int:
            return e.status if isinstance(e, Refused) else status_of(e)

        return parts.actions.act(actor, verb, request.path_params["id"], judge=judge)

    def visitor(request: Request) -> tuple[Visit, Actor]:
        seen = gate.signed_in(request)
        return seen, seen.actor

    # -- pages ---------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        """A page of the list (by id, as the API's pages), filtered by tag, status, health."""
        seen = gate.signed_in(request)
        try:
            query = paging.parse(
                request.query_params, paging.DEFAULT_LIMIT, paging.CONSOLE_MAX_LIMIT
            )
        except paging.BadParameter as e:
            raise Refused(400, str(e)) from None

        def read() -> tuple[paging.Page, list[dict[str, Any]], list[str]]:
            found = paging.page(parts.workspaces, seen.actor, query)
            # The tag filter's choices: those the visitor may read (once per config, cached).
            tags = parts.workspaces.ordered.tags(parts.config.workspaces, seen.actor)
            return found, parts.workspaces.overviews(found.workspaces), tags

        found, views, tags = await parts.store_calls.run(read)
        now = time.time()
        return page(
            request,
            seen,
            "workspaces.html",
            rows=[pages.row(v, now) for v in views],
            tags=tags,
            statuses=[str(s) for s in Status],
            healths=[str(h) for h in Health],
            filters=query.filters(),
            paged=pages.paging_links(prefix, query, found.next_cursor),
            watch=",".join(ws.id for ws in found.workspaces),
            notice=NOTICES.get(request.query_params.get("notice", "")),
        )

    async def workspace(request: Request) -> Response:
        seen = gate.signed_in(request)
        ws = require(seen.actor, "read", parts.workspaces.get(request.path_params["id"]))
        data = await parts.store_calls.run(workspace_data, parts, ws)
        data.update(await drift(parts, ws))
        q = request.query_params
        notice = NOTICES.get(q.get("notice", ""))
        exported = None
        if q.get("notice") == "exported":
            exported = {"branch": q.get("branch", ""), "commit": q.get("commit", "")}
        return page(
            request,
            seen,
            "workspace.html",
            ws=ws,
            row=pages.row(data["view"], time.time()),
            notice=notice,
            exported=exported,
            short=pages.short,
            **data,
        )

    async def preview(request: Request) -> Response:
        """What a commit would do to the workspace: the API's preview, as a page."""
        seen = gate.signed_in(request)
        ws = require(seen.actor, "read", parts.workspaces.get(request.path_params["id"]))
        sha = request.path_params["sha"]
        if not PREVIEW_REVISION.fullmatch(sha):
            raise Refused(400, "A commit is named by its sha: 7 to 40 hex digits.")
        try:
            found = await preview_data(parts, ws, sha)
        except RevisionNotFound as e:  # as the API answers it: not found
            raise Refused(404, str(e)) from None
        return page(request, seen, "preview.html", ws=ws, short=pages.short, **found)

    async def replicas(request: Request) -> Response:
        seen = gate.signed_in(request)
        coordinator = parts.scheduler.coordinator
        seen_ids = {ws.id for ws in visible(seen.actor, parts.config.workspaces)}
        found = [
            replica_view(replace(r, holds=tuple(w for w in r.holds if w in seen_ids)))
            for r in await coordinator.replicas()
        ]
        return page(request, seen, "replicas.html", shared=coordinator.shared, replicas=found)

    # -- actions -------------------------------------------------------------------------------

    async def sync(request: Request) -> Response:
        seen, actor, form = await gate.action(request)
        kind, picked = form.get("kind", "sync"), form.get("revision")
        async with acting(actor, "sync", request) as act:
            if kind not in ("sync", "dry-run", "rollback"):
                raise Refused(422, "Unknown kind of sync. Nothing was changed.")
            revision = None
            if kind == "rollback":
                if not picked or not is_revision(picked):
                    raise Refused(422, "Pick a revision to roll back to. Nothing was changed.")
                revision = picked
            await act.sync(revision, kind == "dry-run")
            act.status = 303
        notice = {"sync": "queued", "dry-run": "dry-run", "rollback": "rollback"}[str(kind)]
        return finish(request, seen, redirect(f"/workspaces/{act.ws_id}", notice=notice))

    async def export(request: Request) -> Response:
        seen, actor, form = await gate.action(request)
        body: dict[str, Any] = {
            "branch": form.get("branch"),
            "allow_tracked_branch": form.get("allow_tracked_branch") == "on",
        }
        if form.get("message", "").strip():
            body["message"] = form["message"]
        async with acting(actor, "export", request) as act:
            result = await act.export(parse_export_request(body))
            act.status = 303
        query = {"notice": "exported", "branch": result.branch, "commit": result.commit}
        return finish(request, seen, redirect(f"/workspaces/{act.ws_id}", **query))

    def toggle(verb: str) -> Any:
        async def handler(request: Request) -> Response:
            seen, actor, _ = await gate.action(request)
            async with acting(actor, verb, request) as act:
                act.status = 303  # before: a suspend's entry is stored with the suspension
                await (act.suspend() if verb == "suspend" else act.resume())
            return finish(request, seen, redirect(f"/workspaces/{act.ws_id}", notice=DONE[verb]))

        return handler

    # -- live updates --------------------------------------------------------------------------

    live = LiveUpdates(parts)  # the open streams, within their limits, and their shared feed

    async def events(request: Request) -> Response:
        seen = gate.visit(request)
        if seen.principal is None or not seen.principal.access.anywhere("read"):
            return Response("sign in first\n", status_code=401, media_type="text/plain")
        # The rows the page shows: `ws=a,b,c` (the list's page; a workspace's page names its
        # one id). Without it, the list's first page, as `/ui/` shows it unfiltered.
        asked = request.query_params.get("ws")
        if asked is None:
            watched = paging.first_ids(parts.workspaces, seen.actor)
        else:
            watched = list(dict.fromkeys(ws_id for ws_id in asked.split(",") if ws_id))
        if len(watched) > MAX_WATCHED:
            text = f"a stream watches at most {MAX_WATCHED} workspaces (`ws`)\n"
            return Response(
                text, status_code=400, media_type="text/plain", headers=SECURITY_HEADERS
            )
        # EventSource sends Last-Event-ID when it reconnects: such a stream never ends another.
        returning = "last-event-id" in request.headers

        def still_signed_in() -> bool:  # as each page asks: signed out, changed, no `read`
            again = gate.visit(request).principal
            return again is not None and again.access.anywhere("read")

        def visitor() -> Actor:  # who the session is now: a stream sends what they may read
            return gate.visit(request).actor

        try:
            return live.open(
                seen.session.sid, still_signed_in, watched, returning, SECURITY_HEADERS, visitor
            )
        except SessionFull:  # 204: the browser's EventSource stops reconnecting
            return Response(status_code=204, headers=SECURITY_HEADERS)
        except TooManyStreams as e:
            retry = {**SECURITY_HEADERS, "Retry-After": str(e.retry_after)}
            return Response(f"{e}\n", status_code=429, media_type="text/plain", headers=retry)

    # -- errors --------------------------------------------------------------------------------

    def error_page(
        request: Request, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        seen = gate.visit(request)
        return page(request, seen, "error.html", status, headers, message=message, code=status)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return error_page(request, exc.status, exc.message, exc.headers)

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        seen = gate.visit(request)
        if gate.cross_site_navigation(request) and not seen.ended:
            # Maybe signed in, maybe not: a link followed from here (same-origin) will tell.
            # Nothing is set: the visitor's session, if any, stays as it is.
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return page(request, seen, "continue.html", target=here)
        target = redirect("/login", notice="ended") if seen.ended else redirect("/login")
        return finish(request, seen, target)

    async def syncd_error(request: Request, exc: Exception) -> Response:
        # The same status as the API's for the same error (one table); its message as it is.
        status = status_of(exc)
        wait = {"Retry-After": str(RETRY_AFTER_SECONDS)} if retry_later(status) else None
        return error_page(request, status, str(exc), wait)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_page(request, exc.status_code, str(exc.detail))

    ws_path = "/workspaces/{id}"
    routes = [
        Route("/", index, methods=["GET"]),
        *sign_in_routes(parts, gate, signed_out, page, prefix),
        *oidc_routes(parts, gate, page, prefix),
        Route("/events", events, methods=["GET"]),
        Route("/replicas", replicas, methods=["GET"]),
        Route("/audit", audit_page(parts, visitor, page), methods=["GET"]),
        Route(ws_path, workspace, methods=["GET"]),
        Route(f"{ws_path}/preview/{{sha}}", preview, methods=["GET"]),
        Route(f"{ws_path}/sync", sync, methods=["POST"]),
        Route(f"{ws_path}/export", export, methods=["POST"]),
        Route(f"{ws_path}/suspend", toggle("suspend"), methods=["POST"]),
        Route(f"{ws_path}/resume", toggle("resume"), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {
        Refused: refused,
        SignInFirst: sign_in_first,
        SyncdError: syncd_error,
        HTTPException: http_error,
    }
    return Starlette(
        routes=routes,
        exception_handlers=handlers,
        middleware=[Middleware(RefreshFirst, ended=signed_out)],
    )
