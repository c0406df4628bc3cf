"""The exchanges of the client of syncd's HTTP API (stdlib urllib + ssl): TLS, the token's
header, the deadline, bounded reading, and the error answers made typed errors. The calls
themselves (which path, which version) are syncd.cli.apiclient's.

TLS verifies the server's certificate: against the system's CAs, or `ca_file`. The token goes
only into the Authorization header; no message here ever carries it (a token that could not go
into a header is refused by where it came from, never quoted, and any text of the server's or of
an error that we print has the token blotted out).

The server is not trusted to be kind: an answer over `max_answer` bytes is refused (read in
chunks, never whole), every exchange of a command together must end within `deadline` seconds
(not only each read: a server that sends a byte every few seconds is cut off), an answer nested
deeper than any of syncd's is refused, and whatever the server sends ends in a ClientError, one
line, never a traceback.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
)
from syncd.cli.options import TOKEN_VARIABLES, server_url, token_problems

TIMEOUT = 30.0  # seconds one read may wait for the server
DEADLINE = 60.0  # seconds all of a command's exchanges with the server may take
MAX_ANSWER = 64 * 1024 * 1024  # bytes of one answer
MAX_DEPTH = 100  # nesting of an answer; syncd's own (the OpenAPI document too) stay far below
_MAX_ERROR_BODY = 65536
_MAX_SAID = 300  # characters of the server's own words quoted in an error
_CHUNK = 65536


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """syncd's API never redirects; following one would hand the token to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Request(urllib.request.Request):
    """A request that keeps its connection's socket, so that the deadline can cut it."""

    sock: socket.socket | None = None

    def cut(self) -> None:
        """Shut the socket down: the read that waits on it ends at once."""
        if self.sock is not None:
            with contextlib.suppress(OSError):  # closed already
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _Recorded(urllib.request.AbstractHTTPHandler):
    """Records the socket of each connection on its _Request once connected (with TLS, once
    the handshake is done; urllib lets go of it after the head, but the body still reads it)."""

    def do_open(self, http_class: Any, req: Any, **http_conn_args: Any) -> Any:
        def connection(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            made: http.client.HTTPConnection = http_class(host, **kwargs)
            connect = made.connect

            def connect_and_record() -> None:
                connect()
                if isinstance(req, _Request):
                    req.sock = made.sock

            made.connect = connect_and_record  # type: ignore[method-assign]
            return made

        return super().do_open(connection, req, **http_conn_args)


class _HTTPHandler(_Recorded, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_Recorded, urllib.request.HTTPSHandler):
    pass


@dataclass
class Transport:
    """One server's exchanges, all of a command's within one deadline."""

    base: str
    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    timeout: float = TIMEOUT
    deadline: float = DEADLINE
    max_answer: int = MAX_ANSWER
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        self.base = server_url(self.base)
        if self.token is not None and token_problems(self.token):
            raise TokenRefused(f"the API token {' and '.join(token_problems(self.token))}")
        self._tls = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        self._opener = urllib.request.build_opener(
            _NoRedirects(), _HTTPHandler(), _HTTPSHandler(context=self._tls)
        )
        self._ends: float | None = None  # set by the first request

    def restart_deadline(self) -> None:
        """The next request starts a whole new deadline: for each round of a command that waits
        by design (`wait`, `status --watch`, a run's polls)."""
        self._ends = None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        auth: bool = True,
        holds: float = 0.0,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": f"syncd/{__version__}"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        where = f"{self.base}{path.split('?')[0]}"
        request = _Request(self.base + path, data, headers, method=method)
        raw = self._exchange(request, where, auth, holds)
        return self._document(raw, where)

    def clean(self, text: str) -> str:
        """`text` (the server's words, an error's) fit for one line of ours: the token blotted
        out, control characters shown escaped, at most _MAX_SAID characters."""
        if self.token:
            text = text.replace(self.token, "[the token]")
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: _MAX_SAID * 4])
        return text if len(text) <= _MAX_SAID else text[:_MAX_SAID] + "…"

    # -- one exchange ---------------------------------------------------------------------------

    def _exchange(self, request: _Request, where: str, auth: bool, holds: float) -> bytes:
        """The answer's body, within what is left of the deadline. The exchange runs in a thread
        of its own: a deadline must hold whatever the server stalls (the TLS handshake, the
        status line, the headers, the body), which a socket's timeout, per read, cannot."""
        now = self.clock()
        if self._ends is None:
            self._ends = now + self.deadline
        self._ends += holds
        left = self._ends - now
        if left <= 0:
            raise self._late(where)
        outcome: list[bytes | ClientError] = []

        def exchange() -> None:
            try:
                outcome.append(self._fetch(request, where, auth, min(self.timeout + holds, left)))
            except ClientError as e:
                outcome.append(e)
            except Exception as e:  # whatever the server made of us: one line, no traceback
                outcome.append(BadServer(f"{where}: {self._said(e)}"))

        worker = threading.Thread(target=exchange, name="syncd-api", daemon=True)
        worker.start()
        worker.join(left)
        if worker.is_alive():
            request.cut()  # the abandoned worker ends at its next read
            raise self._late(where)
        found = (
            outcome[0] if outcome else BadServer(f"{where}: the exchange ended without an answer")
        )
        if isinstance(found, ClientError):
            raise found
        return found

    def _fetch(self, request: _Request, where: str, auth: bool, timeout: float) -> bytes:
        """In the worker: open, read at most max_answer bytes; every failure a ClientError."""
        try:
            with self._opener.open(request, timeout=timeout) as r:
                return self._read(r, where)
        except urllib.error.HTTPError as e:
            try:
                raise self._refusal(where, e, auth) from None
            finally:
                with contextlib.suppress(Exception):
                    e.close()
        except http.client.RemoteDisconnected:
            raise Unreachable(
                f"{where}: the server closed the connection without answering"
            ) from None
        except http.client.IncompleteRead as e:
            raise Unreachable(
                f"{where}: the answer broke off after {len(e.partial)} bytes"
            ) from None
        except http.client.HTTPException as e:
            raise BadServer(
                f"{where}: not an HTTP answer ({self._said(e)}); is {self.base} syncd?"
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise Unreachable(self._untrusted(reason)) from None
            said = self.clean(str(reason)) or type(reason).__name__
            raise Unreachable(f"cannot reach syncd at {self.base}: {said}") from None
        except ValueError as e:  # e.g. a malformed chunk size
            raise BadServer(f"{where}: a malformed answer ({self._said(e)})") from None

    def _read(self, r: http.client.HTTPResponse, where: str) -> bytes:
        """The body, in chunks: refused as soon as it is known to exceed max_answer, by its
        Content-Length before any of it is read, or once more than that has come."""
        length = (r.headers.get("Content-Length") or "").strip()
        if length.isdigit() and int(length) > self.max_answer:
            raise self._too_large(where)
        chunks: list[bytes] = []
        size = 0
        while size <= self.max_answer:  # each pass reads at least a byte, or ends
            chunk = r.read(_CHUNK)
            if not chunk and r.length:  # read(n) ends quietly where read() would complain
                raise http.client.IncompleteRead(b"".join(chunks), r.length)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise self._too_large(where)

    def _document(self, raw: bytes, where: str) -> dict[str, Any]:
        try:
            doc = json.loads(raw)
        except RecursionError:
            raise BadServer(f"{where}: the server's answer is nested too deeply") from None
        except ValueError:
            raise BadServer(f"{where}: the answer is not JSON; is {self.base} syncd?") from None
        if not isinstance(doc, dict):
            raise BadServer(f"{where}: the answer is not a JSON object")
        if too_deep(doc, MAX_DEPTH):
            raise BadServer(f"{where}: the server's answer is nested too deeply")
        return doc

    def _refusal(self, where: str, e: urllib.error.HTTPError, auth: bool) -> ClientError:
        body = _error_body(e, self.token)
        said = self.clean(str(body.get("error") or e.reason))
        if body:
            body = {**body, "error": said}
        if e.code == 401 and not auth:
            return Unauthorized(f"{where}: 401 {said}")
        if e.code == 401:
            hint = "no token given" if not self.token else "the token is not valid"
            places = ", ".join(["--token-file", *TOKEN_VARIABLES[:-1]])
            return Unauthorized(
                f"{where}: 401 {said} ({hint}; check {places} or {TOKEN_VARIABLES[-1]})"
            )
        if e.code == 403:
            return Forbidden(f"{where}: 403 {said}")
        if e.code == 404 and not body:
            return BadServer(f"{where}: 404 without a syncd answer; is {self.base} syncd?")
        if e.code == 404:
            return ApiNotFound(said)
        return ApiFailed(f"{where}: HTTP {e.code}: {said}", e.code, body)

    def _untrusted(self, e: ssl.SSLCertVerificationError) -> str:
        """A certificate the client does not trust: most often a private CA, so say which
        flag gives it."""
        why = self.clean(str(e.verify_message or e.reason or e)) or "verification failed"
        trusted = f"the CA in {self.ca_file}" if self.ca_file else "the system's CAs"
        return (
            f"cannot reach syncd at {self.base}: its TLS certificate is not trusted ({why}; "
            f"trusted: {trusted}); give the CA that signed it with --ca-file FILE"
        )

    def _said(self, e: BaseException) -> str:
        return self.clean(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)

    def _late(self, where: str) -> TimedOut:
        return TimedOut(
            f"{where}: no whole answer within the deadline of {self.deadline:g} s "
            "(--deadline); the server is too slow or stalls"
        )

    def _too_large(self, where: str) -> BadServer:
        return BadServer(
            f"{where}: the answer is larger than {_size(self.max_answer)}; refused "
            "(--max-answer raises the limit)"
        )


def too_deep(doc: object, limit: int) -> bool:
    """Whether `doc` nests lists and objects deeper than `limit` (without recursion)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:  # each node is visited once: bounded by the document's size
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict | list):
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


def _error_body(e: urllib.error.HTTPError, token: str | None) -> dict[str, Any]:
    """The `{"error", "detail"}` of syncd's error answers, the token blotted out wherever the
    server quoted it; {} from anything else."""
    try:
        raw = e.read(_MAX_ERROR_BODY)
        doc = json.loads(raw.replace(token.encode(), b"[the token]") if token else raw)
    except (ValueError, OSError, RecursionError, http.client.HTTPException):
        return {}
    if not isinstance(doc, dict) or "error" not in doc:
        return {}
    if not token:
        return doc
    # and where it was spelled with JSON escapes, in the words we may print
    return {k: v.replace(token, "[the token]") if isinstance(v, str) else v for k, v in doc.items()}
