"""OpenID Connect providers on loopback for the console's sign-in tests.

- `mock_provider`: oidc-provider-mock, a working provider built on Authlib, in a thread (its
  users and groups given; `rotate()` gives it a new signing key, as a provider rotating keys).
- `StubProvider`: a provider of the tests' own, for the ID tokens a working provider will not
  make (another issuer or audience, expired, a wrong nonce, `alg: none`): it signs whatever
  claims the test says with a key it serves as its JWKS, and sends every browser straight
  back with a code.
- `console_config`: the `console` section that signs in with one of them, groups to roles.
- `walk`: a sign-in followed by hand (no browser): the console's start, the provider's
  authorization (oidc-provider-mock's form, answered as a user would), back to the callback.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "syncd-console"
CLIENT_SECRET = "test-oidc-client-secret-0123456789"
SECRET_ENV = "SYNCD_TEST_OIDC_SECRET"

App = Callable[..., Any]  # a WSGI application


@contextlib.contextmanager
def serve(app: App) -> Iterator[int]:
    """A WSGI app on 127.0.0.1 in a thread, until the block ends: its port."""
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class MockProvider:
    issuer: str  # http://localhost:PORT: the host a browser and syncd both reach it by
    rotate_next: list[bool] = field(default_factory=lambda: [False])

    def rotate(self) -> None:
        """A new signing key from the next request on; the old one is gone from the JWKS."""
        self.rotate_next[0] = True


@contextlib.contextmanager
def mock_provider(users: dict[str, dict[str, Any]]) -> Iterator[MockProvider]:
    """oidc-provider-mock with these users (sub -> claims), nonce required."""
    with warnings.catch_warnings():  # it imports Authlib's deprecated authlib.jose
        warnings.simplefilter("ignore", DeprecationWarning)
        import flask
        import oidc_provider_mock  # type: ignore[import-untyped]
        from authlib.jose import RSAKey as AuthlibRSAKey  # type: ignore[import-untyped]

    people = [oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in users.items()]
    app = oidc_provider_mock.app(require_nonce=True, user_claims=people)
    provider = MockProvider("")

    @app.before_request  # type: ignore[untyped-decorator,unused-ignore]
    def rotate_keys() -> None:  # after the mock's own, which sets its storage for the request
        if provider.rotate_next[0]:
            provider.rotate_next[0] = False
            storage = flask.g.oidc_provider_mock_storage
            storage.jwk = AuthlibRSAKey.generate_key(is_private=True)

    with serve(app) as port:
        provider.issuer = f"http://localhost:{port}"
        yield provider


class StubProvider:
    """A provider that signs what the test says: `claims` and `header` override its defaults
    (issuer, audience, a 5-minute expiry, the nonce it was sent, groups ["ops"])."""

    def __init__(self, sub: str = "mallory", groups: Iterable[str] = ("ops",)) -> None:
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        self.sub, self.groups = sub, list(groups)
        self.claims: dict[str, Any] = {}
        self.header: dict[str, Any] = {}
        self.unsigned = False  # `alg: none`, no signature
        self.padding = 0  # characters of junk in the JWKS answer
        self.issuer = ""
        self._nonces: dict[str, str] = {}

    @contextlib.contextmanager
    def running(self) -> Iterator[StubProvider]:
        with serve(self.wsgi) as port:
            self.issuer = f"http://127.0.0.1:{port}"
            yield self

    def wsgi(self, environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        path, query = environ["PATH_INFO"], parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/.well-known/openid-configuration":
            return _json(start, self.discovery())
        if path == "/jwks":
            keys = {"keys": [self.key.as_dict(private=False)], "junk": "x" * self.padding}
            return _json(start, keys)
        if path == "/authorize":
            code = secrets.token_urlsafe(16)
            self._nonces[code] = query["nonce"][0]
            said = urlencode({"code": code, "state": query["state"][0]})
            back = f"{query['redirect_uri'][0]}?{said}"
            start("302 Found", [("Location", back)])
            return [b""]
        if path == "/token":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            form = parse_qs(environ["wsgi.input"].read(size).decode())
            nonce = self._nonces.pop(form["code"][0], None)
            if nonce is None:
                start("400 Bad Request", [("Content-Type", "application/json")])
                return [b'{"error": "invalid_grant"}']
            return _json(
                start, {"access_token": "x", "token_type": "Bearer", "id_token": self.sign(nonce)}
            )
        start("404 Not Found", [])
        return [b""]

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }

    def sign(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.sub,
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "groups": self.groups,
            **self.claims,
        }
        if self.unsigned:
            parts = [{"alg": "none", "typ": "JWT"}, claims]
            return ".".join(_b64(json.dumps(p).encode()) for p in parts) + "."
        header = {"alg": "RS256", "kid": self.key.kid, **self.header}
        return jwt.encode(header, claims, self.key)


def _json(start: Callable[..., Any], doc: dict[str, Any]) -> list[bytes]:
    start("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(doc).encode()]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def console_config(issuer: str, redirect_url: str, **extra: Any) -> dict[str, Any]:
    """`console:` signing in with the provider at `issuer`: `ops` may do everything anywhere,
    `developers` read and sync the workspaces tagged dev."""
    return {
        "oidc": {
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "client_secret_env": SECRET_ENV,
            "redirect_url": redirect_url,
            **extra.pop("oidc", {}),
        },
        "roles": [
            {"group": "ops", "scopes": ["read", "sync", "write", "export", "audit"]},
            {"group": "developers", "scopes": ["read", "sync"], "workspaces": ["tag:dev"]},
        ],
        **extra,
    }


# -- a sign-in followed by hand ----------------------------------------------------------------


def start(client: Any) -> str:
    """The console's start of a sign-in: where it sends the browser (the provider)."""
    answer = client.get("/ui/oidc/start")
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def authorize(url: str, sub: str | None = None) -> str:
    """The provider's answer to the browser: the console's callback with code and state. For
    oidc-provider-mock, `sub` is the user who signs in (its form, sent as a person would)."""
    with httpx.Client(timeout=10) as browser:
        answer = browser.post(url, data={"sub": sub}) if sub else browser.get(url)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


def callback(client: Any, back: str) -> Any:
    """The browser's return to the console's callback (the path and query of `back`)."""
    parts = urlsplit(back)
    return client.get(f"{parts.path}?{parts.query}", headers={"sec-fetch-site": "cross-site"})


def walk(client: Any, sub: str | None = None) -> Any:
    """A whole sign-in: the callback's answer."""
    return callback(client, authorize(start(client), sub))
