"""Who is asking: the bearer token of an API request, and whether its scopes allow the call.

Wrong tokens are counted per client address (`syncd.throttle`): past the limit, a request that
presents a token is answered 429 with Retry-After before its token is checked.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from syncd.config import TokenConfig
from syncd.config.types import UnresolvedSecret
from syncd.http.errors import ApiError
from syncd.http.throttle import Throttle, client_address


def authorize(
    tokens: tuple[TokenConfig, ...],
    request: Request,
    scope: str,
    throttle: Throttle | None = None,
) -> TokenConfig:
    """The request's token, which holds `scope` (on some workspace): 401, 429 or 403 else."""
    token = authenticate(tokens, request, throttle)
    if not token.allows(scope):
        raise ApiError(403, f"token {token.name!r} lacks the {scope!r} scope")
    return token


def authenticate(
    tokens: tuple[TokenConfig, ...], request: Request, throttle: Throttle | None = None
) -> TokenConfig:
    """The request's token, whatever its scopes: 401 without a valid one, 429 when this
    address has guessed too often."""
    header = request.headers.get("authorization", "")
    kind, _, presented = header.partition(" ")
    if kind.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401, "a bearer token is required", None, {"WWW-Authenticate": 'Bearer realm="syncd"'}
        )
    address = client_address(request.client)
    wait = throttle.retry_after(address) if throttle is not None else None
    if wait is not None:
        raise ApiError(
            429,
            f"too many wrong tokens from this address: no token is checked for {wait} s",
            None,
            {"Retry-After": str(wait)},
        )
    token = find_token(tokens, presented.strip())
    if token is None:
        if throttle is not None:
            throttle.failed(address)
        raise ApiError(
            401,
            "the bearer token is not valid",
            None,
            {"WWW-Authenticate": 'Bearer realm="syncd", error="invalid_token"'},
        )
    return token


def find_token(tokens: tuple[TokenConfig, ...], presented: str) -> TokenConfig | None:
    """Compare against every token in constant time; digests make the lengths equal."""
    wanted = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found = None
    for token in tokens:
        if isinstance(token.token, UnresolvedSecret):
            continue  # its file went away (a reload read none): it lets no one in
        have = hashlib.sha256(token.token.reveal().encode()).digest()
        if hmac.compare_digest(wanted, have) and found is None:
            found = token
    return found
