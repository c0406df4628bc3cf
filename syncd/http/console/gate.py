"""Who visits the console and may they act: sessions and their cookies, the sign-in
pre-session, CSRF and Fetch Metadata checks, and forms read within bounds. Every page and
action passes here before it reads or changes anything."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from syncd.app import Parts
from syncd.config import TokenConfig
from syncd.core.access import NO_ACCESS, Access
from syncd.http.console.ended import SharedEnded
from syncd.http.console.sessions import Pending, Session, Sessions, cookie_names
from syncd.service.audit import Actor

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


class Refused(Exception):
    """An answer other than the page asked for: a status and a plain sentence."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class SignInFirst(Exception):
    """No live session: pages redirect to the sign-in form."""


@dataclass(frozen=True)
class Principal:
    """Who a session is: an API token, or a user signed in with OpenID Connect, whose access
    is what the roles give their groups as configured now."""

    name: str  # the audit's actor: the token's name, or `oidc:<subject>`
    display: str  # the name pages show
    access: Access
    token: TokenConfig | None = None  # None: an OpenID Connect user
    groups: tuple[str, ...] = ()

    def lacks(self, scope: str) -> str:
        if self.token is not None:
            return f"Token {self.token.name!r} lacks the {scope!r} scope."
        if scope == "read":
            return (
                f"Signed in as {self.display}, but your groups give no workspace: no role of "
                "this syncd's console names one of them. Ask its operators for a role, then "
                "sign in again."
            )
        return f"Your roles ({self.display}) give no {scope!r} scope."


@dataclass
class Visit:
    session: Session  # the signed-in session, or else the visitor's pre-session
    principal: Principal | None  # who is signed in, if anyone
    csrf: str
    fresh: bool  # a new pre-session: the sign-in form sets its cookie
    ended: bool = False  # a session was sent that has expired or ended

    @property
    def actor(self) -> Actor:
        """Who is signed in, and what they may do where (nothing when no one is)."""
        if self.principal is None:
            return Actor("anonymous", "console", NO_ACCESS)
        return Actor(self.principal.name, "console", self.principal.access)


class Gate:
    """The console's checks, over the daemon's config (tokens, session key) as it is now."""

    def __init__(self, parts: Parts, prefix: str, signed_out: SharedEnded) -> None:
        self.parts, self.prefix, self.signed_out = parts, prefix, signed_out

    def sessions(self) -> Sessions:
        console = self.parts.config.console
        key = (
            console.session_key.reveal().encode() if console.session_key else self.parts.session_key
        )
        return Sessions(key, console.session_lifetime)

    def visit(self, request: Request) -> Visit:
        now, signer = time.time(), self.sessions()
        names = cookie_names(request.url.scheme == "https")
        cookie = request.cookies.get(names.session)
        session = signer.decode(cookie, now)
        # A cookie sent but no longer good: expired, signed with an old key, or forged.
        ended = bool(cookie) and session is None
        if session is not None:
            principal = self.principal(session, signer)
            # Its token removed or given a new value, its provider changed (a reload), or
            # signed out: it has ended.
            if principal is not None and not self.signed_out.ended(session.sid):
                return Visit(session, principal, signer.csrf_token(session), False)
            ended = True
        # Not signed in: the pre-session of the sign-in form, in a cookie of its own, so that
        # making one never replaces a signed-in session's cookie.
        pre = signer.decode_pre(request.cookies.get(names.pre), now)
        fresh = pre is None
        if pre is None:
            pre = signer.new(now)
        return Visit(pre, None, signer.csrf_token(pre), fresh, ended)

    def principal(self, session: Session, signer: Sessions) -> Principal | None:
        """Who a signed-in session is, by the config as it is now; None when that ended it."""
        console = self.parts.config.console
        if session.subject is not None:
            if console.oidc is None or not signer.made_by(session, console.oidc):
                return None
            access = console.access_of(session.groups)
            display = session.display or session.subject
            return Principal(f"oidc:{session.subject}", display, access, None, session.groups)
        if not console.token_sign_in:  # turned off: the sessions of tokens end too
            return None
        token = next((t for t in self.parts.config.tokens if t.name == session.token_name), None)
        if token is None or not signer.made_with(session, token):
            return None
        return Principal(token.name, token.name, token.access, token)

    def from_this_console(self, request: Request) -> None:
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

    def cross_site_navigation(self, request: Request) -> bool:
        """A link from another site: the browser did not send the session cookie with it
        (SameSite=Strict), so a missing session says nothing about the visitor."""
        return request.headers.get("sec-fetch-site") == "cross-site"

    def signed_in(self, request: Request) -> Visit:
        seen = self.visit(request)
        if seen.principal is None:
            raise SignInFirst
        if not seen.principal.access.anywhere("read"):
            raise Refused(403, seen.principal.lacks("read"))
        return seen

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        """The session's cookie, or the pre-session's: `__Host-` ones (Secure, Path=/) over
        https, else limited to the console's path."""
        names = cookie_names(request.url.scheme == "https")
        response.set_cookie(
            names.session if session.signed_in else names.pre,
            self.sessions().encode(session),
            max_age=max(1, int(session.expires - time.time())),
            path="/" if names.secure else self.prefix + "/",
            httponly=True,
            samesite="strict",
            secure=names.secure,
        )

    def set_pending(self, request: Request, response: Response, pending: Pending) -> None:
        """The OpenID Connect sign-in under way. SameSite=Lax, not Strict: it must come back
        with the provider's redirect, a navigation from another site. Only the callback reads
        it (its path, over plain http)."""
        names = cookie_names(request.url.scheme == "https")
        response.set_cookie(
            names.pending,
            self.sessions().encode_pending(pending),
            max_age=max(1, int(pending.expires - time.time())),
            path="/" if names.secure else self.prefix + "/oidc/",
            httponly=True,
            samesite="lax",
            secure=names.secure,
        )

    def pending(self, request: Request) -> Pending | None:
        names = cookie_names(request.url.scheme == "https")
        return self.sessions().decode_pending(request.cookies.get(names.pending), time.time())

    def clear_pending(self, request: Request, response: Response) -> None:
        names = cookie_names(request.url.scheme == "https")
        response.delete_cookie(
            names.pending,
            path="/" if names.secure else self.prefix + "/oidc/",
            httponly=True,
            samesite="lax",
            secure=names.secure,
        )

    def clear_cookie(self, request: Request, response: Response, pre: bool) -> None:
        names = cookie_names(request.url.scheme == "https")
        response.delete_cookie(
            names.pre if pre else names.session,
            path="/" if names.secure else self.prefix + "/",
            httponly=True,
            samesite="strict",
            secure=names.secure,
        )

    async def read_form(self, request: Request) -> Form:
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

    def check_csrf(self, seen: Visit, form: Form) -> None:
        presented = form.get("csrf")
        if not self.sessions().csrf_valid(seen.session, presented):
            raise Refused(
                403,
                "This form was not sent from this console's current page (its security token "
                "is missing, forged or from another session). Nothing was changed: reload the "
                "page and try again.",
            )

    async def action(self, request: Request) -> tuple[Visit, Actor, Form]:
        """The checks every action passes before anything changes, in this order. The scope
        the action needs on its workspace is the action's own check (syncd.service.access),
        so that a refusal is audited, and a workspace outside the visitor's reach answers 404
        whatever the scope."""
        self.from_this_console(request)
        seen = self.visit(request)
        if seen.principal is None:
            raise Refused(401, "Your session has expired or ended. Nothing was changed: sign in.")
        form = await self.read_form(request)
        self.check_csrf(seen, form)
        return seen, seen.actor, form
