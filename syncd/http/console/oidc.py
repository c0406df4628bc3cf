"""OpenID Connect for the console's sign-in: the provider's calls, apart from the routes
(oidc_routes) and the ID token's checks (id_token).

The authorization code flow with PKCE (S256), `state` and `nonce`: `Provider.authorization_url`
sends the browser to the provider; `Provider.sign_in` takes the code it comes back with,
exchanges it at the token endpoint (client_secret_basic or _post, as discovery says; none for a
public client) and checks the ID token (see id_token). The PKCE challenge is Authlib's.

Discovery and the JWKS are cached for an hour; an ID token whose key is not among the cached
ones (an unknown `kid`, or no `kid` and no cached key verifies it) makes the JWKS be fetched
again, once: the provider rotated its keys. Every answer from the provider is bounded (its size,
and the time to get it) and read asynchronously; what went wrong is a `SignInRefused` whose
reason names it (never a secret).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc.jwk import Key

from syncd.config.console_section import is_loopback
from syncd.config.console_types import OidcConfig
from syncd.http.console import id_token as checks
from syncd.http.console.id_token import Identity, SignInRefused, plain, shown
from syncd.http.console.sessions import PENDING_LIFETIME, Pending

CACHE_TTL = 3600.0  # discovery and JWKS are fetched again after this
TIMEOUT = 10.0  # one call to the provider, whole
MAX_ANSWER = 256 * 1024  # bytes of one answer from the provider


@dataclass(frozen=True)
class Metadata:
    """What discovery says that syncd uses."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_methods: tuple[str, ...]
    algorithms: tuple[str, ...]


def new_pending(back_to: str, now: float) -> Pending:
    """A sign-in to start: its state, nonce and PKCE verifier (64 characters)."""
    t = secrets.token_urlsafe
    return Pending(t(24), t(24), t(48), back_to, now + PENDING_LIFETIME)


class Provider:
    """One configured provider: its discovery and keys, cached, and the flow's calls."""

    def __init__(self, config: OidcConfig, clock: Callable[[], float] = time.time) -> None:
        self.config, self.clock = config, clock
        self._meta: tuple[float, Metadata] | None = None
        self._keys: tuple[float, list[Key]] | None = None
        self.host = urlsplit(config.issuer).hostname or config.issuer

    # -- the browser's leg ------------------------------------------------------------------

    async def authorization_url(self, pending: Pending) -> str:
        meta = await self.metadata()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": self.config.redirect_url,
                "scope": " ".join(self.config.scopes),
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": str(create_s256_code_challenge(pending.verifier)),
                "code_challenge_method": "S256",
            }
        )
        endpoint = meta.authorization_endpoint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    # -- the callback's -----------------------------------------------------------------------

    async def sign_in(self, code: str, pending: Pending) -> Identity:
        """The code exchanged, its ID token checked: who signed in."""
        meta = await self.metadata()
        id_token = await self.exchange(meta, code, pending.verifier)
        claims = await self.verify(meta, id_token, pending.nonce)
        return checks.identity(self.config, claims)

    async def exchange(self, meta: Metadata, code: str, verifier: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": verifier,
        }
        headers: dict[str, str] = {}
        secret = self.config.client_secret
        client_id = self.config.client_id
        if secret is None:  # a public client: PKCE alone
            form["client_id"] = client_id
        elif "client_secret_basic" in meta.auth_methods or not meta.auth_methods:
            # RFC 6749 2.3.1: each part form-encoded, then joined and base64'd.
            pair = f"{quote(client_id, safe='')}:{quote(secret.reveal(), safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:  # client_secret_post
            form |= {"client_id": client_id, "client_secret": secret.reveal()}
        status, answer = await self._call(
            "POST", meta.token_endpoint, "token endpoint", form, headers
        )
        if status != 200:
            said = answer.get("error") if isinstance(answer, dict) else None
            detail = answer.get("error_description") if isinstance(answer, dict) else None
            told = ": ".join(plain(str(v)) for v in (said, detail) if v) or f"status {status}"
            # 4xx: the code or the client refused (a replayed code: invalid_grant); 5xx: down.
            refused = 401 if status < 500 else 502
            raise SignInRefused(refused, f"the provider refused the sign-in's code ({told})")
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise SignInRefused(502, "the provider's token endpoint answered without an ID token")
        return id_token

    async def verify(self, meta: Metadata, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature and claims are checked."""
        alg, kid = checks.header(id_token, meta.algorithms)
        keys: list[Key] = []
        for again in (False, True):  # the cached keys, then (rotated?) the JWKS fetched anew
            keys = checks.candidates(await self.keys(fresh=again), alg, kid)
            claims = checks.signed_claims(id_token, alg, keys)
            if claims is not None:
                checks.check_claims(self.config, claims, nonce, self.clock())
                return claims
        if kid is not None and not keys:
            raise SignInRefused(401, f"no key of the provider's has the ID token's kid {kid!r}")
        raise SignInRefused(
            401, "the ID token's signature does not verify with the provider's keys"
        )

    # -- discovery and keys -----------------------------------------------------------------

    async def metadata(self) -> Metadata:
        if self._meta is not None and self.clock() - self._meta[0] < CACHE_TTL:
            return self._meta[1]
        issuer = self.config.issuer
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, doc = await self._call("GET", url, "discovery document")
        if status != 200 or not isinstance(doc, dict):
            raise SignInRefused(502, f"the provider's discovery document answered {status}")
        if doc.get("issuer") != issuer:
            raise SignInRefused(
                502,
                f"the provider's discovery names issuer {shown(doc.get('issuer'))}, not {issuer}",
            )
        endpoints = []
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(name)
            if not isinstance(value, str) or not _web_url(value):
                raise SignInRefused(502, f"the provider's discovery has no usable {name}")
            endpoints.append(value)
        meta = Metadata(
            endpoints[0],
            endpoints[1],
            endpoints[2],
            auth_methods=_strings(doc.get("token_endpoint_auth_methods_supported")),
            algorithms=_strings(doc.get("id_token_signing_alg_values_supported")),
        )
        self._meta = (self.clock(), meta)
        return meta

    async def keys(self, fresh: bool = False) -> list[Key]:
        if not fresh and self._keys is not None and self.clock() - self._keys[0] < CACHE_TTL:
            return self._keys[1]
        meta = await self.metadata()
        status, doc = await self._call("GET", meta.jwks_uri, "keys (JWKS)")
        listed = doc.get("keys") if isinstance(doc, dict) else None
        if status != 200 or not isinstance(listed, list):
            raise SignInRefused(502, f"the provider's keys (JWKS) answered {status}, with no keys")
        keys = checks.read_keys(listed)
        self._keys = (self.clock(), keys)
        return keys

    async def _call(
        self,
        method: str,
        url: str,
        what: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request to the provider, within TIMEOUT and MAX_ANSWER: its status and JSON."""
        try:
            async with asyncio.timeout(TIMEOUT):  # the whole call: a slow drip too
                client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
                sent = {"Accept": "application/json", **(headers or {})}
                async with client, client.stream(method, url, data=form, headers=sent) as answer:
                    body = b""
                    async for chunk in answer.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER:
                            raise SignInRefused(
                                502, f"the provider's {what} is over {MAX_ANSWER // 1024} KiB"
                            )
        except TimeoutError as e:
            raise SignInRefused(
                502, f"the provider's {what} did not answer within {TIMEOUT:g} s"
            ) from e
        except httpx.HTTPError as e:
            reason = type(e).__name__ if not str(e) else plain(str(e))
            raise SignInRefused(
                502, f"the provider's {what} could not be reached ({reason})"
            ) from e
        try:
            return answer.status_code, json.loads(body)
        except ValueError:
            if answer.status_code == 200:
                raise SignInRefused(502, f"the provider's {what} is not JSON") from None
            return answer.status_code, None


def _web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = parts.hostname or ""
    return bool(host) and (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
    )


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value[:50] if isinstance(v, str)) if isinstance(value, list) else ()
