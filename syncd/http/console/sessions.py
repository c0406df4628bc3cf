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

COOKIE = "syncd_session"  # over plain http, with Path=/ui/
PRE_COOKIE = "syncd_presession"
SECURE_PREFIX = "__Host-"  # over https, with Secure and Path=/
PRE_LIFETIME = 3600.0  # long enough to fill in the sign-in form


@dataclass(frozen=True)
class CookieNames:
    session: str
    pre: str
    secure: bool


def cookie_names(secure: bool) -> CookieNames:
    """The cookies' names: `__Host-` ones when the console is served over https."""
    if secure:
        return CookieNames(SECURE_PREFIX + COOKIE, SECURE_PREFIX + PRE_COOKIE, True)
    return CookieNames(COOKIE, PRE_COOKIE, False)


@dataclass(frozen=True)
class Session:
    sid: str
    token_name: str | None  # None: a pre-session, not signed in
    expires: float
    token_digest: str | None = None  # keyed digest of the token's value at sign-in

    @property
    def signed_in(self) -> bool:
        return self.token_name is not None


class Sessions:
    """Makes and reads session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes, lifetime: float) -> None:
        # A key of any length becomes 32-byte HMAC keys, one for each use.
        self._key = _derive(b"syncd console session", key)
        self._pre_key = _derive(b"syncd console pre-session", key)
        self._csrf_key = _derive(b"syncd console csrf", key)
        self._token_key = _derive(b"syncd console token", key)
        self.lifetime = lifetime

    def new(self, now: float, token: TokenConfig | None = None) -> Session:
        """A session for `token`, or a pre-session when it is None."""
        if token is None:
            return Session(secrets.token_urlsafe(18), None, now + PRE_LIFETIME)
        digest = self.token_digest(token)
        return Session(secrets.token_urlsafe(18), token.name, now + self.lifetime, digest)

    def token_digest(self, token: TokenConfig) -> str:
        value = token.token.reveal().encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._token_key, value, hashlib.sha256).digest()[:18])

    def made_with(self, session: Session, token: TokenConfig) -> bool:
        """Whether `session` was made with the token's current value (not an old one)."""
        return session.token_digest is not None and hmac.compare_digest(
            session.token_digest.encode(), self.token_digest(token).encode()
        )

    def encode(self, session: Session) -> str:
        body = json.dumps(
            {
                "s": session.sid,
                "n": session.token_name,
                "d": session.token_digest,
                "e": int(session.expires),
            },
            separators=(",", ":"),
        ).encode()
        payload = _b64(body)
        key = self._key if session.signed_in else self._pre_key
        return f"{payload}.{_sign(key, payload)}"

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


def _decode(key: bytes, cookie: str | None, now: float) -> Session | None:
    if not cookie or len(cookie) > 4096 or cookie.count(".") != 1:
        return None
    payload, signature = cookie.split(".")
    if not hmac.compare_digest(signature.encode(), _sign(key, payload).encode()):
        return None
    try:
        data = json.loads(_unb64(payload))
        sid, name, digest, expires = data["s"], data["n"], data.get("d"), float(data["e"])
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return None
    if not isinstance(sid, str) or not all(v is None or isinstance(v, str) for v in (name, digest)):
        return None
    if expires <= now:
        return None
    return Session(sid, name, expires, digest)


def _derive(purpose: bytes, key: bytes) -> bytes:
    return hashlib.sha256(purpose + b"\0" + key).digest()


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
