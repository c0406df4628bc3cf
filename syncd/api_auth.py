"""Who is asking: the bearer token of an API request, and whether its scopes allow the call."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from syncd.api_errors import ApiError
from syncd.config import TokenConfig


def authorize(tokens: tuple[TokenConfig, ...], request: Request, scope: str) -> TokenConfig:
    header = request.headers.get("authorization", "")
    kind, _, presented = header.partition(" ")
    if kind.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401, "a bearer token is required", None, {"WWW-Authenticate": 'Bearer realm="syncd"'}
        )
    token = find_token(tokens, presented.strip())
    if token is None:
        raise ApiError(
            401,
            "the bearer token is not valid",
            None,
            {"WWW-Authenticate": 'Bearer realm="syncd", error="invalid_token"'},
        )
    if not token.allows(scope):
        raise ApiError(403, f"token {token.name!r} lacks the {scope!r} scope")
    return token


def find_token(tokens: tuple[TokenConfig, ...], presented: str) -> TokenConfig | None:
    """Compare against every token in constant time; digests make the lengths equal."""
    wanted = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    found = None
    for token in tokens:
        have = hashlib.sha256(token.token.reveal().encode()).digest()
        if hmac.compare_digest(wanted, have) and found is None:
            found = token
    return found
