"""A small client of syncd's HTTP API, shared by `syncd pull` and the CLI's client mode: the
calls (the server's version, GET, POST). How each exchange goes (TLS, the token, the deadline,
bounded reading) is syncd.cli.transport's; why one fails, syncd.cli.apierrors'; where the token
and the server come from, syncd.cli.options'. Their names stay importable from here.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from syncd import __version__
from syncd.cli.apierrors import (
    ApiFailed,
    ApiNotFound,
    BadServer,
    ClientError,
    Forbidden,
    TimedOut,
    TokenRefused,
    Unauthorized,
    Unreachable,
    VersionMismatch,
)
from syncd.cli.options import (
    DEFAULT_SERVER,
    TOKEN_VARIABLES,
    read_token,
    server_url,
    token_from,
    token_problems,
)
from syncd.cli.transport import DEADLINE, MAX_ANSWER, MAX_DEPTH, TIMEOUT, Transport, too_deep

__all__ = [
    "DEADLINE",
    "DEFAULT_SERVER",
    "MAX_ANSWER",
    "MAX_DEPTH",
    "TIMEOUT",
    "TOKEN_VARIABLES",
    "ApiClient",
    "ApiFailed",
    "ApiNotFound",
    "BadServer",
    "ClientError",
    "Forbidden",
    "TimedOut",
    "TokenRefused",
    "Unauthorized",
    "Unreachable",
    "VersionMismatch",
    "compatible",
    "read_token",
    "server_url",
    "token_from",
    "token_problems",
    "too_deep",
]


def compatible(server_version: str, ours: str = __version__) -> bool:
    """Same major and minor version: the API of one minor version does not change."""
    return server_version.split(".")[:2] == ours.split(".")[:2]


class ApiClient(Transport):
    """syncd's API at `base` (its fields are Transport's: the token, the CA file, the limits)."""

    def check_version(self) -> str:
        """The server's version from /openapi.json; refuse a server of another version."""
        try:
            doc = self.request("GET", "/openapi.json", auth=False)
        except (ApiNotFound, ApiFailed, Unauthorized, Forbidden) as e:
            # syncd serves its document to anyone: a refusal means something else answers.
            raise BadServer(f"{self.base} does not look like syncd: {e}") from None
        info = doc.get("info")
        version = info.get("version") if isinstance(info, dict) else None
        if not isinstance(version, str) or doc.get("openapi") is None:
            raise BadServer(f"{self.base} does not look like syncd: /openapi.json has no version")
        if not compatible(version):
            raise VersionMismatch(
                f"{self.base} runs syncd {self.clean(version)}, this client is syncd "
                f"{__version__}; use a client of the same minor version"
            )
        return version

    def get(self, path: str, **query: str) -> dict[str, Any]:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self.request("GET", path)

    def post(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        holds: float = 0.0,
        **query: str,
    ) -> dict[str, Any]:
        """`holds`: seconds the server may hold this request before it answers, by design
        (`sync?wait=true`); they are added to the deadline and to the read's timeout."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self.request("POST", path, body if body is not None else {}, holds=holds)
