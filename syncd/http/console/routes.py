"""The web console at /ui/: server-rendered pages over the workspace use cases.

Every action is a plain HTML form (POST, CSRF token, then a redirect), so the console works
without JavaScript; the little script in static/ only adds live updates (server-sent events)
and ticking ages. Data and actions come only from `syncd.service.workspaces`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from syncd.app import App
from syncd.config import TokenConfig, WorkspaceConfig
from syncd.core.errors import Conflict, GitError, NotFound, SyncdError
from syncd.core.model import Trigger
from syncd.core.refs import is_revision
from syncd.http.console import pages
from syncd.http.console.data import datetime_text, drift, workspace_data
from syncd.http.console.ended import KEY as ENDED_KEY
from syncd.http.console.ended import RefreshFirst, SharedEnded
from syncd.http.console.sessions import Session, Sessions, cookie_names
from syncd.http.console.streams import LiveUpdates, SessionFull, TooManyStreams
from syncd.http.routes import find_token
from syncd.http.throttle import client_address
from syncd.runs.scheduler import QueueFull, ShuttingDown
from syncd.sync.export import parse_export_request

HERE = Path(__file__).parent
Form = dict[str, str]
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# Notices after an action, by a fixed code in the redirect's query: no text from a URL is shown.
NOTICES = {
    "queued": "Sync queued. The status below updates when it finishes.",
    "dry-run": "Dry run queued: its plan appears in the run history; nothing is applied.",
    "rollback": "Rollback queued: a sync pinned to the chosen revision. An automatic workspace "
    "stays on it, its automation suspended, until you resume.",
    "exported": "Exported.",
    "suspended": "Suspended: automatic syncs stop until you resume.",
    "resumed": "Resumed: a sync to the branch head is queued.",
    "signed-out": "You have signed out.",
    "ended": "Your session has ended (it expired, was signed out, or its token was changed or "
    "removed). Sign in again.",
}


DONE = {"suspend": "suspended", "resume": "resumed"}


class Refused(Exception):
    """An answer other than the page asked for: a status and a plain sentence."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class SignInFirst(Exception):
    """No live session: pages redirect to the sign-in form."""


@dataclass
class Visit:
    session: Session  # the signed-in session, or else the visitor's pre-session
    token: TokenConfig | None
    csrf: str
    fresh: bool  # a new pre-session: the sign-in form sets its cookie
    ended: bool = False  # a session was sent that has expired or ended


def create_console(rt: App, prefix: str = "/ui") -> Starlette:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value, every template: step names and bodies are untrusted
        undefined=jinja2.StrictUndefined,
    )
    env.filters["datetime"] = datetime_text
    env.globals["age"] = lambda seconds: pages.age(seconds, time.time())

    def sessions() -> Sessions:
        console = rt.config.console
        key = console.session_key.reveal().encode() if console.session_key else rt.session_key
        return Sessions(key, console.session_lifetime)

    # Sessions signed out: refused here at once, and (with a configured key) by every replica.
    async def read_ended() -> str | None:
        return await rt.store_calls.run(rt.core.store.get_meta, ENDED_KEY)

    async def write_ended(text: str) -> None:
        await rt.store_calls.run(rt.core.store.set_meta, ENDED_KEY, text)

    signed_out = SharedEnded(
        read_ended, write_ended, lambda: rt.config.console.session_key is not None
    )

    def visit(request: Request) -> Visit:
        now, signer = time.time(), sessions()
        names = cookie_names(request.url.scheme == "https")
        cookie = request.cookies.get(names.session)
        session = signer.decode(cookie, now)
        # A cookie sent but no longer good: expired, signed with an old key, or forged.
        ended = bool(cookie) and session is None
        token = None
        if session is not None:
            token = next((t for t in rt.config.tokens if t.name == session.token_name), None)
            # Its token removed or given a new value (a reload), or signed out: it has ended.
            if (
                token is None
                or not signer.made_with(session, token)
                or signed_out.ended(session.sid)
            ):
                session, token, ended = None, None, True
        if session is not None:
            return Visit(session, token, signer.csrf_token(session), False)
        # Not signed in: the pre-session of the sign-in form, in a cookie of its own, so that
        # making one never replaces a signed-in session's cookie.
        pre = signer.decode_pre(request.cookies.get(names.pre), now)
        fresh = pre is None
        if pre is None:
            pre = signer.new(now)
        return Visit(pre, None, signer.csrf_token(pre), fresh, ended)

    def from_this_console(request: Request) -> None:
        """A form must come from the console's own pages. Browsers say where a request comes
        from (Fetch Metadata): a page on another port of this host is `same-site`, not
        `same-origin`, and may have planted a cookie of its choosing (cookies ignore ports).
        Clients that send no such header (scripts) are judged by the CSRF token alone."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            raise Refused(
                403,
                "This form was sent from another site or another port of this host, not from "
                "this console's own page. Nothing was changed: open the console and try again.",
            )

    def cross_site_navigation(request: Request) -> bool:
        """A link from another site: the browser did not send the session cookie with it
        (SameSite=Strict), so a missing session says nothing about the visitor."""
        return request.headers.get("sec-fetch-site") == "cross-site"

    def signed_in(request: Request) -> Visit:
        seen = visit(request)
        if seen.token is None:
            raise SignInFirst
        if not seen.token.allows("read"):
            raise Refused(403, f"Token {seen.token.name!r} lacks the 'read' scope.")
        return seen

    def page(
        request: Request,
        seen: Visit,
        template: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        scopes = seen.token.scopes if seen.token else frozenset()
        context.setdefault("notice", None)
        html = env.get_template(template).render(
            prefix=prefix,
            token_name=seen.token.name if seen.token else None,
            scopes=scopes,
            csrf=seen.csrf,
            **context,
        )
        response = finish(request, seen, HTMLResponse(html, status_code=status, headers=headers))
        if seen.fresh and template == "login.html":  # the form's CSRF token needs its cookie
            set_cookie(request, response, seen.session)
        return response

    def finish(request: Request, seen: Visit, response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    def set_cookie(request: Request, response: Response, session: Session) -> None:
        """The session's cookie, or the pre-session's: `__Host-` ones (Secure, Path=/) over
        https, else limited to the console's path."""
        names = cookie_names(request.url.scheme == "https")
        response.set_cookie(
            names.session if session.signed_in else names.pre,
            sessions().encode(session),
            max_age=max(1, int(session.expires - time.time())),
            path="/" if names.secure else prefix + "/",
            httponly=True,
            samesite="strict",
            secure=names.secure,
        )

    def clear_cookie(request: Request, response: Response, pre: bool) -> None:
        names = cookie_names(request.url.scheme == "https")
        response.delete_cookie(
            names.pre if pre else names.session,
            path="/" if names.secure else prefix + "/",
            httponly=True,
            samesite="strict",
            secure=names.secure,
        )

    def redirect(path: str, **query: str) -> RedirectResponse:
        url = prefix + path + (f"?{urlencode(query)}" if query else "")
        return RedirectResponse(url, status_code=303)

    async def read_form(request: Request) -> Form:
        """The console's forms are small and url-encoded (no uploads): read here, capped,
        rather than with another dependency for multipart."""
        length = request.headers.get("content-length", "0")
        if length == "0":
            return {}  # no form at all: the CSRF check refuses it
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise Refused(413, f"A form must be sent with a length of at most {MAX_FORM_BYTES}.")
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise Refused(415, "Forms must be sent url-encoded. Nothing was changed.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, f"A form may be at most {MAX_FORM_BYTES} bytes.")
        try:
            pairs = parse_qsl(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
        except (UnicodeDecodeError, ValueError) as e:
            raise Refused(400, "The form could not be read. Nothing was changed.") from e
        return dict(pairs)

    def check_csrf(seen: Visit, form: Form) -> None:
        presented = form.get("csrf")
        if not sessions().csrf_valid(seen.session, presented):
            raise Refused(
                403,
                "This form was not sent from this console's current page (its security token "
                "is missing, forged or from another session). Nothing was changed: reload the "
                "page and try again.",
            )

    async def action(request: Request, scope: str) -> tuple[Visit, WorkspaceConfig, Form]:
        """The checks every action passes before anything changes, in this order."""
        from_this_console(request)
        seen = visit(request)
        if seen.token is None:
            raise Refused(401, "Your session has expired or ended. Nothing was changed: sign in.")
        form = await read_form(request)
        check_csrf(seen, form)
        if not seen.token.allows(scope):
            raise Refused(
                403, f"Token {seen.token.name!r} lacks the {scope!r} scope. Nothing was changed."
            )
        return seen, rt.workspaces.get(request.path_params["id"]), form

    # -- pages ---------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        seen = signed_in(request)
        tag = request.query_params.get("tag") or None
        chosen = rt.workspaces.tagged(tag)
        views = await rt.store_calls.run(rt.workspaces.overviews, chosen)
        now = time.time()
        all_tags = sorted({t for ws in rt.config.workspaces for t in ws.tags})
        return page(
            request,
            seen,
            "workspaces.html",
            rows=[pages.row(v, now) for v in views],
            tag=tag,
            tags=all_tags,
            notice=NOTICES.get(request.query_params.get("notice", "")),
        )

    async def workspace(request: Request) -> Response:
        seen = signed_in(request)
        ws = rt.workspaces.get(request.path_params["id"])
        data = await rt.store_calls.run(workspace_data, rt, ws)
        data.update(await drift(rt, ws))
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

    async def login_form(request: Request) -> Response:
        seen = visit(request)
        if seen.token is not None:
            return finish(request, seen, redirect("/"))
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return page(request, seen, "login.html", notice=notice, error=None)

    async def login(request: Request) -> Response:
        # Only from the console's own form, with the CSRF token of a pre-session syncd made.
        from_this_console(request)
        address = client_address(request.client)
        wait = rt.guesses.retry_after(address)
        if wait is not None:  # too many failed sign-ins or API tokens from this address
            raise Refused(
                429,
                f"Too many wrong tokens from your address: try again in {wait} s.",
                {"Retry-After": str(wait)},
            )
        seen = visit(request)
        form = await read_form(request)
        check_csrf(seen, form)
        presented = form.get("token")
        token = None
        if presented and presented.strip():
            token = find_token(rt.config.tokens, presented.strip())
        if token is None:
            rt.guesses.failed(address)
            error = "That token is not valid."
            return page(request, seen, "login.html", 401, notice=None, error=error)
        if not token.allows("read"):
            error = f"Token {token.name!r} lacks the 'read' scope the console needs."
            return page(request, seen, "login.html", 403, notice=None, error=error)
        # A new session id at sign-in: a session id planted before it is worth nothing after.
        response = redirect("/")
        response.headers.update(SECURITY_HEADERS)
        set_cookie(request, response, sessions().new(time.time(), token))
        clear_cookie(request, response, pre=True)
        return response

    async def logout(request: Request) -> Response:
        from_this_console(request)
        seen = visit(request)
        check_csrf(seen, await read_form(request))
        if seen.token is not None:
            # Ended server-side: the cookie, replayed, is refused from now on.
            await signed_out.end(seen.session.sid, seen.session.expires)
        response = redirect("/login", notice="signed-out")
        response.headers.update(SECURITY_HEADERS)
        clear_cookie(request, response, pre=False)
        return response

    # -- actions -------------------------------------------------------------------------------

    async def sync(request: Request) -> Response:
        seen, ws, form = await action(request, "sync")
        kind, picked = form.get("kind", "sync"), form.get("revision")
        if kind not in ("sync", "dry-run", "rollback"):
            raise Refused(422, "Unknown kind of sync. Nothing was changed.")
        revision = None
        if kind == "rollback":
            if not picked or not is_revision(picked):
                raise Refused(422, "Pick a revision to roll back to. Nothing was changed.")
            revision = picked
        try:
            await rt.workspaces.request_sync(ws, Trigger.MANUAL, revision, kind == "dry-run")
        except (QueueFull, ShuttingDown) as e:
            raise Refused(503, f"{e} Try again in a few seconds.") from e
        notice = {"sync": "queued", "dry-run": "dry-run", "rollback": "rollback"}[str(kind)]
        return finish(request, seen, redirect(f"/workspaces/{ws.id}", notice=notice))

    async def export(request: Request) -> Response:
        seen, ws, form = await action(request, "export")
        body: dict[str, Any] = {
            "branch": form.get("branch"),
            "allow_tracked_branch": form.get("allow_tracked_branch") == "on",
        }
        if form.get("message", "").strip():
            body["message"] = form["message"]
        try:
            order = parse_export_request(body)
            result = await asyncio.to_thread(rt.workspaces.export, ws, order)
        except Conflict as e:
            raise Refused(409, str(e)) from e
        except GitError as e:
            raise Refused(502, f"The git remote failed: {e}") from e
        except SyncdError as e:
            raise Refused(422, str(e)) from e
        query = {"notice": "exported", "branch": result.branch, "commit": result.commit}
        return finish(request, seen, redirect(f"/workspaces/{ws.id}", **query))

    def toggle(verb: str) -> Any:
        async def handler(request: Request) -> Response:
            seen, ws, _ = await action(request, "sync")
            use_case = rt.workspaces.suspend if verb == "suspend" else rt.workspaces.resume
            await rt.store_calls.run(use_case, ws)
            if verb == "resume":
                # As the API does: back to the branch head, which also ends a pin.
                try:
                    await rt.workspaces.request_sync(ws, Trigger.MANUAL, None, False)
                except (QueueFull, ShuttingDown) as e:
                    raise Refused(503, f"Resumed, but no sync to the head was queued: {e}") from e
            return finish(request, seen, redirect(f"/workspaces/{ws.id}", notice=DONE[verb]))

        return handler

    # -- live updates --------------------------------------------------------------------------

    live = LiveUpdates(rt)  # the open streams, within their limits, and their shared feed

    async def events(request: Request) -> Response:
        seen = visit(request)
        if seen.token is None or not seen.token.allows("read"):
            return Response("sign in first\n", status_code=401, media_type="text/plain")
        only = request.query_params.get("ws")
        # EventSource sends Last-Event-ID when it reconnects: such a stream never ends another.
        returning = "last-event-id" in request.headers

        def still_signed_in() -> bool:  # as each page asks: signed out, token changed, no `read`
            again = visit(request)
            return again.token is not None and again.token.allows("read")

        try:
            return live.open(seen.session.sid, still_signed_in, only, returning, SECURITY_HEADERS)
        except SessionFull:  # 204: the browser's EventSource stops reconnecting
            return Response(status_code=204, headers=SECURITY_HEADERS)
        except TooManyStreams as e:
            retry = {**SECURITY_HEADERS, "Retry-After": str(e.retry_after)}
            return Response(f"{e}\n", status_code=429, media_type="text/plain", headers=retry)

    # -- errors --------------------------------------------------------------------------------

    def error_page(
        request: Request, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        seen = visit(request)
        return page(request, seen, "error.html", status, headers, message=message, code=status)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return error_page(request, exc.status, exc.message, exc.headers)

    async def sign_in_first(request: Request, exc: Exception) -> Response:
        seen = visit(request)
        if cross_site_navigation(request) and not seen.ended:
            # Maybe signed in, maybe not: a link followed from here (same-origin) will tell.
            # Nothing is set: the visitor's session, if any, stays as it is.
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return page(request, seen, "continue.html", target=here)
        target = redirect("/login", notice="ended") if seen.ended else redirect("/login")
        return finish(request, seen, target)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_page(request, 404, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_page(request, exc.status_code, str(exc.detail))

    ws_path = "/workspaces/{id}"
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events, methods=["GET"]),
        Route(ws_path, workspace, methods=["GET"]),
        Route(f"{ws_path}/sync", sync, methods=["POST"]),
        Route(f"{ws_path}/export", export, methods=["POST"]),
        Route(f"{ws_path}/suspend", toggle("suspend"), methods=["POST"]),
        Route(f"{ws_path}/resume", toggle("resume"), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {
        Refused: refused,
        SignInFirst: sign_in_first,
        NotFound: not_found,
        HTTPException: http_error,
    }
    return Starlette(
        routes=routes,
        exception_handlers=handlers,
        middleware=[Middleware(RefreshFirst, ended=signed_out)],
    )
