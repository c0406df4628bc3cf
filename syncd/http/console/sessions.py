"""The console's sessions and CSRF tokens. Pure: HMAC over small signed cookies.

A session cookie holds a random session id, the signed-in token's NAME (never its value), a
keyed digest of the token's value, and an expiry, signed with HMAC-SHA256. On every request
the token is looked up by name and its current value checked against the digest, so a token
removed from the config, or given a new value, ends every session made with the old one at
the next reload. (The digest is an HMAC under the console's key, so a cookie's reader cannot
test guesses of the token against it.) A session signed out is refused too: see `ended`.

A visitor who has not signed in gets a *pre-session*, in a cookie of its own, so that the
sign-in form has a CSRF token: making one never touches the session cookie, so a request that
comes without the session cookie (a link from another site: the cookie is SameSite=Strict)
never replaces a signed-in session with an anonymous one.

A session made by OpenID Connect sign-in holds, instead of a token, the user's subject, the
name shown, and their groups (bounded: see `keep_groups`); its digest is one of the provider's
issuer and client id, so a console moved to another provider ends the sessions of the old one.
What the groups allow is read from the roles as configured at each request.

The OpenID Connect sign-in under way (state, nonce, PKCE verifier, where to return) is a
`Pending`, in a signed cookie of its own: it must come back on the provider's redirect, a
navigation from another site, so that cookie is SameSite=Lax where the others are Strict.

A form's CSRF token is an HMAC of the (pre-)session's id under syncd's key: only syncd can make
a pre-session, or the token that goes with it, and a session's token is worthless for another.

Over https the cookies take the `__Host-` prefix (Secure, Path=/, no Domain): a browser lets no
plain-http page, on any port of the host, set or replace them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from syncd.config import TokenConfig
from syncd.config.console_types import OidcConfig

COOKIE = "syncd_session"  # over plain http, with Path=/ui/
PRE_COOKIE = "syncd_presession"
SECURE_PREFIX = "__Host-"  # over https, with Secure and Path=/
PRE_LIFETIME = 3600.0  # long enough to fill in the sign-in form
PENDING_COOKIE = "syncd_oidc"  # the sign-in under way at the provider, SameSite=Lax
PENDING_LIFETIME = 600.0  # to sign in at the provider
# What of an OpenID Connect user's groups a cookie holds: browsers keep cookies of 4 KiB.
MAX_GROUPS = 64
MAX_GROUP_CHARS = 1500  # in all
MAX_GROUP_LENGTH = 256  # one group's name; longer ones are left out


@dataclass(frozen=True)
class CookieNames:
    session: str
    pre: str
    secure: bool
    pending: str = PENDING_COOKIE


def cookie_names(secure: bool) -> CookieNames:
    """The cookies' names: `__Host-` ones when the console is served over https."""
    if secure:
        s = SECURE_PREFIX
        return CookieNames(s + COOKIE, s + PRE_COOKIE, True, s + PENDING_COOKIE)
    return CookieNames(COOKIE, PRE_COOKIE, False)


@dataclass(frozen=True)
class Session:
    sid: str
    token_name: str | None  # None: a pre-session, or an OpenID Connect user's session
    expires: float
    # A token's session: keyed digest of its value at sign-in; an OpenID Connect user's: of
    # the provider's issuer and client id.
    token_digest: str | None = None
    subject: str | None = None  # an OpenID Connect user's `sub`
    display: str | None = None  # the name they are shown by
    groups: tuple[str, ...] = ()

    @property
    def signed_in(self) -> bool:
        return self.token_name is not None or self.subject is not None


@dataclass(frozen=True)
class Pending:
    """An OpenID Connect sign-in under way: what the provider's answer must match."""

    state: str
    nonce: str
    verifier: str  # PKCE's code verifier; the provider saw only its S256 challenge
    back_to: str  # the console's page to show once signed in
    expires: float


def keep_groups(groups: list[str], wanted: set[str]) -> tuple[str, ...]:
    """The groups a session keeps, within a cookie's room: those a role names first (so that
    what the roles give fits whatever else the user is in), then the others while room lasts."""
    fitting = [g for g in dict.fromkeys(groups) if 0 < len(g) <= MAX_GROUP_LENGTH]
    kept: list[str] = []
    room = MAX_GROUP_CHARS
    for group in sorted(fitting, key=lambda g: g not in wanted):
        if len(kept) == MAX_GROUPS or len(group) > room:
            continue
        kept.append(group)
        room -= len(group)
    return tuple(kept)


class Sessions:
    """Makes and reads session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes, lifetime: float) -> None:
        # A key of any length becomes 32-byte HMAC keys, one for each use.
        self._key = _derive(b"syncd console session", key)
        self._pre_key = _derive(b"syncd console pre-session", key)
        self._csrf_key = _derive(b"syncd console csrf", key)
        self._token_key = _derive(b"syncd console token", key)
        self._pending_key = _derive(b"syncd console oidc pending", key)
        self.lifetime = lifetime

    def new(self, now: float, token: TokenConfig | None = None) -> Session:
        """A session for `token`, or a pre-session when it is None."""
        if token is None:
            return Session(secrets.token_urlsafe(18), None, now + PRE_LIFETIME)
        digest = self.token_digest(token)
        return Session(secrets.token_urlsafe(18), token.name, now + self.lifetime, digest)

    def new_oidc(
        self, now: float, provider: OidcConfig, subject: str, display: str, groups: tuple[str, ...]
    ) -> Session:
        """An OpenID Connect user's session, bound to the provider."""
        digest = self.provider_digest(provider)
        return Session(
            secrets.token_urlsafe(18), None, now + self.lifetime, digest, subject, display, groups
        )

    def provider_digest(self, provider: OidcConfig) -> str:
        value = f"oidc\0{provider.issuer}\0{provider.client_id}".encode()
        return _b64(hmac.new(self._token_key, value, hashlib.sha256).digest()[:18])

    def made_by(self, session: Session, provider: OidcConfig) -> bool:
        """Whether an OpenID Connect session was made with this provider (issuer, client)."""
        return session.token_digest is not None and hmac.compare_digest(
            session.token_digest.encode(), self.provider_digest(provider).encode()
        )

    def token_digest(self, token: TokenConfig) -> str:
        value = token.token.reveal().encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._token_key, value, hashlib.sha256).digest()[:18])

    def made_with(self, session: Session, token: TokenConfig) -> bool:
        """Whether `session` was made with the token's current value (not an old one)."""
        return session.token_digest is not None and hmac.compare_digest(
            session.token_digest.encode(), self.token_digest(token).encode()
        )

    def encode(self, session: Session) -> str:
        data: dict[str, object] = {
            "s": session.sid,
            "n": session.token_name,
            "d": session.token_digest,
            "e": int(session.expires),
        }
        if session.subject is not None:
            data |= {"o": session.subject, "u": session.display, "g": list(session.groups)}
        payload = _b64(json.dumps(data, separators=(",", ":")).encode())
        key = self._key if session.signed_in else self._pre_key
        return f"{payload}.{_sign(key, payload)}"

    def encode_pending(self, pending: Pending) -> str:
        body = [pending.state, pending.nonce, pending.verifier, pending.back_to, pending.expires]
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{_sign(self._pending_key, payload)}"

    def decode_pending(self, cookie: str | None, now: float) -> Pending | None:
        """The sign-in under way in a cookie, or None when none is, or not one syncd made, or
        it expired."""
        data = _open(self._pending_key, cookie)
        if not isinstance(data, list) or len(data) != 5:
            return None
        state, nonce, verifier, back_to, expires = data
        if not all(isinstance(v, str) for v in (state, nonce, verifier, back_to)):
            return None
        if not isinstance(expires, int | float) or expires <= now:
            return None
        return Pending(state, nonce, verifier, back_to, float(expires))

    def decode(self, cookie: str | None, now: float) -> Session | None:
        """The signed-in session in a cookie, or None when it is missing, forged, malformed,
        expired or a pre-session."""
        session = _decode(self._key, cookie, now)
        return session if session is not None and session.signed_in else None

    def decode_pre(self, cookie: str | None, now: float) -> Session | None:
        """The pre-session in a cookie, or None when it is not one syncd made (or expired)."""
        session = _decode(self._pre_key, cookie, now)
        return session if session is not None and not session.signed_in else None

    def csrf_token(self, session: Session) -> str:
        kind = b"session\0" if session.signed_in else b"pre-session\0"
        return _b64(hmac.new(self._csrf_key, kind + session.sid.encode(), hashlib.sha256).digest())

    def csrf_valid(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            str(presented).encode(), self.csrf_token(session).encode()
        )


def _open(key: bytes, cookie: str | None) -> object:
    """The JSON a cookie signed with `key` holds; None when it is not such a cookie."""
    if not cookie or len(cookie) > 4096 or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    if not hmac.compare_digest(signature.encode(), _sign(key, payload).encode()):
        return None
    try:
        data: object = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):
        return None
    return data


def _decode(key: bytes, cookie: str | None, now: float) -> Session | None:
    data = _open(key, cookie)
    if not isinstance(data, dict):
        return None
    try:
        sid, name, digest, expires = data["s"], data["n"], data.get("d"), float(data["e"])
        subject, display, groups = data.get("o"), data.get("u"), tuple(data.get("g") or ())
    except (ValueError, KeyError, TypeError):
        return None
    texts = (name, digest, subject, display)
    if not isinstance(sid, str) or not all(v is None or isinstance(v, str) for v in texts):
        return None
    if not all(isinstance(g, str) for g in groups) or expires <= now:
        return None
    return Session(sid, name, expires, digest, subject, display, groups)


def _derive(purpose: bytes, key: bytes) -> bytes:
    return hashlib.sha256(purpose + b"\0" + key).digest()


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
