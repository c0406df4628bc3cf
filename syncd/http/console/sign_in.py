"""The sign-in page, signing in with an API token, and signing out (of either kind of session).

The page offers what the config allows: "Sign in with <provider>" when `console.oidc` is set
(see oidc_routes), the token form unless `console.token_sign_in: false`; a token sent anyway
is then refused with 403. Signing out ends the session in syncd (see `ended`), whoever it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from syncd.app import Parts
from syncd.http.console.ended import SharedEnded
from syncd.http.console.gate import SECURITY_HEADERS, Gate, Refused
from syncd.http.routes import find_token
from syncd.http.throttle import client_address
from syncd.service.audit import Actor

# The console's `page(request, seen, template, status=200, headers=None, **context)`.
Render = Callable[..., Response]
NOTICES = {
    "signed-out": "You have signed out.",
    "ended": "Your session has ended (it expired, was signed out, or its token was changed or "
    "removed). Sign in again.",
}


def sign_in_routes(
    parts: Parts, gate: Gate, signed_out: SharedEnded, render: Render, prefix: str
) -> list[Route]:
    def redirect(path: str, notice: str | None = None) -> Response:
        query = f"?notice={notice}" if notice else ""
        response = RedirectResponse(prefix + path + query, status_code=303)
        response.headers.update(SECURITY_HEADERS)
        return response

    def login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
        console = parts.config.console
        host = None
        if console.oidc is not None:
            host = urlsplit(console.oidc.issuer).hostname or console.oidc.issuer
        notice = NOTICES.get(request.query_params.get("notice", "")) if status == 200 else None
        return render(
            request,
            gate.visit(request),
            "login.html",
            status,
            notice=notice,
            error=error,
            oidc_host=host,
            token_form=console.token_sign_in,
        )

    async def login_form(request: Request) -> Response:
        if gate.visit(request).principal is not None:
            return redirect("/")
        return login_page(request)

    async def login(request: Request) -> Response:
        # Only from the console's own form, with the CSRF token of a pre-session syncd made.
        gate.from_this_console(request)
        if not parts.config.console.token_sign_in:
            raise Refused(
                403,
                "Signing in with an API token is turned off here (console.token_sign_in: "
                "false): sign in with the identity provider.",
            )
        address = client_address(request.client)
        wait = parts.guesses.retry_after(address)
        if wait is not None:  # too many failed sign-ins or API tokens from this address
            raise Refused(
                429,
                f"Too many wrong tokens from your address: try again in {wait} s.",
                {"Retry-After": str(wait)},
            )
        seen = gate.visit(request)
        form = await gate.read_form(request)
        gate.check_csrf(seen, form)
        presented = form.get("token")
        token = None
        if presented and presented.strip():
            token = find_token(parts.config.tokens, presented.strip())
        audit = parts.actions.audit
        if token is None:
            parts.guesses.failed(address)
            await audit.sign_in(Actor("unknown", "console"), False, "not a valid token")
            return login_page(request, 401, "That token is not valid.")
        actor = Actor(token.name, "console", token.access)
        if not token.allows("read"):
            await audit.sign_in(actor, False, "lacks the read scope")
            error = f"Token {token.name!r} lacks the 'read' scope the console needs."
            return login_page(request, 403, error)
        await audit.sign_in(actor, True)
        # A new session id at sign-in: a session id planted before it is worth nothing after.
        response = redirect("/")
        gate.set_cookie(request, response, gate.sessions().new(time.time(), token))
        gate.clear_cookie(request, response, pre=True)
        return response

    async def logout(request: Request) -> Response:
        gate.from_this_console(request)
        seen = gate.visit(request)
        gate.check_csrf(seen, await gate.read_form(request))
        if seen.principal is not None:
            await parts.actions.audit.sign_out(seen.actor)
            # Ended server-side: the cookie, replayed, is refused from now on.
            await signed_out.end(seen.session.sid, seen.session.expires)
        response = redirect("/login", notice="signed-out")
        gate.clear_cookie(request, response, pre=False)
        return response

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
