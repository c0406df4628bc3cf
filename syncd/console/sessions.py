"""The console's sessions and CSRF tokens. Pure: HMAC over a small signed cookie.

A session cookie holds a random session id, the signed-in token's NAME (never its value) and an
expiry, signed with HMAC-SHA256. The token is looked up by name on every request, so removing a
token from the config ends its sessions at the next reload. A visitor who has not signed in has
an anonymous session too, so that the sign-in form has a CSRF token of its own.

A form's CSRF token is an HMAC of the session id (a synchronizer token tied to the session): a
page from another site can neither read it nor make it, and a new sign-in makes a new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

COOKIE = "syncd_session"
ANONYMOUS_LIFETIME = 3600.0  # long enough to fill in the sign-in form


@dataclass(frozen=True)
class Session:
    sid: str
    token_name: str | None  # None: not signed in
    expires: float

    @property
    def signed_in(self) -> bool:
        return self.token_name is not None


class Sessions:
    """Makes and reads session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes, lifetime: float) -> None:
        # A key of any length becomes a 32-byte HMAC key; a separate one for CSRF tokens.
        self._key = hashlib.sha256(b"syncd console session\0" + key).digest()
        self._csrf_key = hashlib.sha256(b"syncd console csrf\0" + key).digest()
        self.lifetime = lifetime

    def new(self, now: float, token_name: str | None = None) -> Session:
        lifetime = self.lifetime if token_name is not None else ANONYMOUS_LIFETIME
        return Session(secrets.token_urlsafe(18), token_name, now + lifetime)

    def encode(self, session: Session) -> str:
        body = json.dumps(
            {"s": session.sid, "n": session.token_name, "e": int(session.expires)},
            separators=(",", ":"),
        ).encode()
        payload = _b64(body)
        return f"{payload}.{self._sign(payload)}"

    def decode(self, cookie: str | None, now: float) -> Session | None:
        """The session in a cookie, or None when it is missing, forged, malformed or expired."""
        if not cookie or len(cookie) > 4096 or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            sid, name, expires = data["s"], data["n"], float(data["e"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if not isinstance(sid, str) or not (name is None or isinstance(name, str)):
            return None
        if expires <= now:
            return None
        return Session(sid, name, expires)

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.new(self._csrf_key, session.sid.encode(), hashlib.sha256).digest())

    def csrf_valid(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            str(presented).encode(), self.csrf_token(session).encode()
        )

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
