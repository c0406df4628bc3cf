"""The console's OpenID Connect routes: `/oidc/start` sends the browser to the provider,
`/oidc/callback` takes it back and signs it in (see oidc for the protocol).

The sign-in under way (state, nonce, PKCE verifier, the page to return to) is kept in the
browser, in a signed cookie of its own that lasts 10 minutes (`sessions.Pending`): no state on
the server, so any replica can take the callback. Each state is taken once by this process,
and the callback clears the cookie; a code the provider already gave out is refused by the
provider at the exchange (a replay). A callback that signs no one in (no sign-in under way, a
state that is not the browser's, a refused or forged ID token, the provider unreachable) shows
a page saying why, sets no session, is audited as a refused sign-in and counts towards the
throttle of wrong tokens from that address.

A user who signs in gets a console session (`oidc:<subject>`, their name, their groups); what
they may do is read from `console.roles` at each request. The callback answers with a page
that moves on to the console by itself: a redirect would still be part of the provider's
cross-site navigation, which the session's SameSite=Strict cookie is not sent with.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from syncd.app import Parts
from syncd.config.console_types import OidcConfig
from syncd.http.console.gate import SECURITY_HEADERS, Gate, Refused, Visit
from syncd.http.console.id_token import Identity, SignInRefused, plain
from syncd.http.console.oidc import Provider, new_pending
from syncd.http.console.sessions import Pending, keep_groups
from syncd.http.throttle import client_address
from syncd.ops.logs import fields
from syncd.service.audit import Actor

log = logging.getLogger("syncd.console")

# The console's `page(request, seen, template, status=200, headers=None, **context)`.
Render = Callable[..., Response]
MAX_CODE = 4096  # characters of an authorization code
MAX_TAKEN = 10_000  # states remembered as used (each until its sign-in would have expired)


class TakenStates:
    """The states of sign-ins finished (or refused) here: a replayed answer is refused."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def take(self, state: str, until: float, now: float) -> bool:
        """False when the state was taken already."""
        if state in self._until:
            return False
        for old in [s for s, t in self._until.items() if t <= now]:
            del self._until[old]
        if len(self._until) >= MAX_TAKEN:  # the soonest to expire go first
            del self._until[min(self._until, key=self._until.__getitem__)]
        self._until[state] = until
        return True


class Providers:
    """The configured provider's client (its discovery and keys cached) while the config names
    the same one; a reload that changes it starts afresh."""

    def __init__(self) -> None:
        self._current: Provider | None = None

    def get(self, config: OidcConfig) -> Provider:
        if self._current is None or self._current.config != config:
            self._current = Provider(config)
        return self._current


def oidc_routes(parts: Parts, gate: Gate, render: Render, prefix: str) -> list[Route]:
    providers, taken = Providers(), TakenStates()

    def configured() -> OidcConfig:
        oidc = parts.config.console.oidc
        if oidc is None:
            raise Refused(404, "Signing in with OpenID Connect is not configured here.")
        return oidc

    def failed(request: Request, seen: Visit, status: int, reason: str) -> Response:
        response = render(request, seen, "oidc_failed.html", status, reason=reason)
        gate.clear_pending(request, response)
        return response

    async def start(request: Request) -> Response:
        provider = providers.get(configured())
        seen = gate.visit(request)
        if seen.principal is not None:
            return _redirect(prefix + "/")
        pending = new_pending(_back_to(request.query_params.get("next"), prefix), time.time())
        try:
            url = await provider.authorization_url(pending)
        except SignInRefused as e:
            log.warning("OpenID Connect sign-in could not start", extra=fields(error=e.reason))
            return failed(request, seen, e.status, e.reason)
        response = _redirect(url)
        gate.set_pending(request, response, pending)
        return response

    async def callback(request: Request) -> Response:
        oidc = configured()
        address = client_address(request.client)
        wait = parts.guesses.retry_after(address)
        if wait is not None:
            raise Refused(
                429,
                f"Too many failed sign-ins from your address: try again in {wait} s.",
                {"Retry-After": str(wait)},
            )
        seen, found = gate.visit(request), gate.pending(request)
        try:
            identity, pending = await sign_in(providers.get(oidc), request, found)
        except SignInRefused as e:
            parts.guesses.failed(address)
            actor = Actor(f"oidc:{e.subject}" if e.subject else "unknown", "console")
            await parts.actions.audit.sign_in(actor, False, f"OpenID Connect: {e.reason}")
            return failed(request, seen, e.status, e.reason)
        console, now = parts.config.console, time.time()
        groups = keep_groups(identity.groups, {role.group for role in console.roles})
        session = gate.sessions().new_oidc(now, oidc, identity.subject, identity.display, groups)
        access = console.access_of(groups)
        actor = Actor(f"oidc:{identity.subject}", "console", access)
        roles = sorted({role.group for role in console.roles} & set(groups))
        await parts.actions.audit.sign_in(
            actor, True, f"as {identity.display}; groups with a role: {', '.join(roles) or 'none'}"
        )
        response = render(
            request, seen, "oidc_signed_in.html", name=identity.display, back_to=pending.back_to
        )
        # A new session id at sign-in, as for a token; the pre-session and the sign-in go.
        gate.set_cookie(request, response, session)
        gate.clear_cookie(request, response, pre=True)
        gate.clear_pending(request, response)
        return response

    async def sign_in(
        provider: Provider, request: Request, pending: Pending | None
    ) -> tuple[Identity, Pending]:
        """The callback's checks, in order; then the provider's word on the code."""
        q = request.query_params
        state, code, error = q.get("state"), q.get("code"), q.get("error")
        if pending is None:
            raise SignInRefused(
                400,
                "no sign-in is under way in this browser: it took more than 10 minutes, was "
                "finished already, or was started in another browser. Start again.",
            )
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise SignInRefused(
                400,
                "the provider's answer carries a state that is not this browser's sign-in's "
                "(tampered with, or from another sign-in). Start again.",
            )
        if not taken.take(pending.state, pending.expires, time.time()):
            raise SignInRefused(400, "this sign-in's answer was used already (a replay).")
        if error:
            detail = q.get("error_description")
            said = plain(error) + (f": {plain(detail)}" if detail else "")
            raise SignInRefused(401, f"the provider did not sign you in ({said}).")
        if not code or len(code) > MAX_CODE:
            raise SignInRefused(400, "the provider's answer has no usable code.")
        return await provider.sign_in(code, pending), pending

    return [
        Route("/oidc/start", start, methods=["GET"]),
        Route("/oidc/callback", callback, methods=["GET"]),
    ]


def _back_to(wanted: str | None, prefix: str) -> str:
    """A page of the console to return to; anything else (another site) is the first page."""
    home = prefix + "/"
    if not wanted or len(wanted) > 2000 or not wanted.startswith(home):
        return home
    if wanted.startswith("//") or "\\" in wanted or any(ord(c) < 33 for c in wanted):
        return home
    return wanted


def _redirect(url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response
