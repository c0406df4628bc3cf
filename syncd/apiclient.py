"""A small client of syncd's HTTP API (stdlib urllib + ssl), shared by `syncd pull` and the
CLI's client mode.

TLS verifies the server's certificate: against the system's CAs, or `ca_file`. The token goes
only into the Authorization header; no message here ever carries it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd import __version__
from syncd.errors import SyncdError
from syncd.urls import is_loopback_host

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT = 30.0
_MAX_ERROR_BODY = 65536


class ClientError(SyncdError):
    """The server could not be used; subclasses say why (the CLI maps each to an exit code)."""


class BadServer(ClientError):
    """The URL is not an http(s) URL, or what answers there is not syncd."""


class Unreachable(ClientError):
    """Nothing answers at the URL (refused, DNS, timeout, TLS)."""


class Unauthorized(ClientError):
    """401: no token, or the server does not know it."""


class Forbidden(ClientError):
    """403: the token lacks the scope the request needs."""


class VersionMismatch(ClientError):
    """The server runs another version of syncd than this client."""


class ApiNotFound(ClientError):
    """404 of a known route: no such workspace or run."""


class ApiFailed(ClientError):
    """Any other error answer (4xx, 5xx), with the server's own words."""

    def __init__(self, message: str, status: int, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body or {}


def server_url(text: str) -> str:
    """The server's base URL. Plain http only to this host: a token must not cross a network
    in clear."""
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadServer(f"server {text!r} is not an http(s) URL, e.g. {DEFAULT_SERVER}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise BadServer(
            f"server {text!r}: plain http is only for this host (127.0.0.1, ::1, localhost); "
            "use https, so the token does not cross the network in clear"
        )
    return text.strip().rstrip("/")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """syncd's API never redirects; following one would hand the token to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def compatible(server_version: str, ours: str = __version__) -> bool:
    """Same major and minor version: the API of one minor version does not change."""
    return server_version.split(".")[:2] == ours.split(".")[:2]


@dataclass
class ApiClient:
    base: str
    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    timeout: float = TIMEOUT

    def __post_init__(self) -> None:
        self.base = server_url(self.base)
        self._tls = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        self._opener = urllib.request.build_opener(
            _NoRedirects(), urllib.request.HTTPSHandler(context=self._tls)
        )

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
                f"{self.base} runs syncd {version}, this client is syncd {__version__}; "
                "use a client of the same minor version"
            )
        return version

    def get(self, path: str, **query: str) -> dict[str, Any]:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None, **query: str) -> dict[str, Any]:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self.request("POST", path, body if body is not None else {})

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, auth: bool = True
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": f"syncd/{__version__}"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise self._refusal(path, e, auth) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise Unreachable(f"cannot reach syncd at {self.base}: {reason}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            raise BadServer(f"{self.base}{path}: the answer is not JSON; is this syncd?") from None
        if not isinstance(doc, dict):
            raise BadServer(f"{self.base}{path}: the answer is not a JSON object")
        return doc

    def _refusal(self, path: str, e: urllib.error.HTTPError, auth: bool) -> ClientError:
        body = _error_body(e)
        said = str(body.get("error") or e.reason)
        where = f"{self.base}{path.split('?')[0]}"
        if e.code == 401 and not auth:
            return Unauthorized(f"{where}: 401 {said}")
        if e.code == 401:
            hint = "no token given" if not self.token else "the token is not valid"
            return Unauthorized(
                f"{where}: 401 {said} ({hint}; check --token-file, SYNCD_TOKEN or ALOMA_KEY)"
            )
        if e.code == 403:
            return Forbidden(f"{where}: 403 {said}")
        if e.code == 404 and not body:
            return BadServer(f"{where}: 404 without a syncd answer; is {self.base} syncd?")
        if e.code == 404:
            return ApiNotFound(said)
        return ApiFailed(f"{where}: HTTP {e.code}: {said}", e.code, body)


def _error_body(e: urllib.error.HTTPError) -> dict[str, Any]:
    """The `{"error", "detail"}` of syncd's error answers; {} from anything else."""
    try:
        doc = json.loads(e.read(_MAX_ERROR_BODY))
    except (ValueError, OSError):
        return {}
    return doc if isinstance(doc, dict) and "error" in doc else {}
