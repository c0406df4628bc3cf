"""Why a syncd server could not be used, one class a reason: the client of the HTTP API raises
them, and syncd.cli.options maps each to its exit code (docs/cli.md)."""

from __future__ import annotations

from typing import Any

from syncd.core.errors import ConfigError, SyncdError


class ClientError(SyncdError):
    """The server could not be used; subclasses say why (the CLI maps each to an exit code)."""


class BadServer(ClientError):
    """The URL is not an http(s) URL, or what answers there is not syncd."""


class Unreachable(ClientError):
    """Nothing answers at the URL (refused, DNS, timeout, TLS)."""


class TimedOut(Unreachable):
    """The server did not answer whole within the command's deadline."""


class Unauthorized(ClientError):
    """401: no token, or the server does not know it."""


class Forbidden(ClientError):
    """403: the token lacks the scope the request needs."""


class VersionMismatch(ClientError):
    """The server runs another version of syncd than this client."""


class ApiNotFound(ClientError):
    """404 of a known route: no such workspace or run."""


class TokenRefused(ConfigError):
    """The token given cannot be sent: the message names where it came from, never the token."""


class ApiFailed(ClientError):
    """Any other error answer (4xx, 5xx), with the server's own words."""

    def __init__(self, message: str, status: int, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body or {}
