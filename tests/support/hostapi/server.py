"""The part of a fake git host that is not the host's: an https server on 127.0.0.1 (a thread
running http.server, TLS from a trustme CA), every request validated against the host's API
description before the fake answers it, a log of requests, and knobs for faults.

A request that fails validation is answered 422 (400 for an unknown path) in the host's error
shape and recorded in `violations`, so a test asserts `fake.violations == []`.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme

from tests.support.hostapi.validate import Checked, Operation, check

MAX_REQUEST = 2 * 1024 * 1024  # a comment is at most 1,000,000 characters, JSON-escaped


@dataclass(frozen=True)
class Logged:
    """A request as the fake saw it, without any credential's value."""

    method: str
    path: str  # path and query as sent
    body: Any
    auth: str  # which credential header came: "bearer", "token", "private-token", "" (none)


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-encoded; bytes are sent as they are
    headers: dict[str, str] = field(default_factory=dict)


class FakeHost:
    """Subclasses give the operations, the auth check and the routes (by operation id)."""

    required_headers: tuple[str, ...] = ()

    def __init__(self, ca: trustme.CA, operations: list[Operation]) -> None:
        self.ca = ca
        self.operations = operations
        self.clock: Callable[[], float] = time.time
        self.tokens: set[str] = set()
        self.violations: list[str] = []
        self.log: list[Logged] = []
        self.delay = 0.0  # seconds before each answer (a slow host)
        self._faults: deque[Reply] = deque()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Knobs.

    def fail_next(self, count: int, status: int, body: Any = None, **headers: str) -> None:
        """Answer the next `count` valid requests with `status` (then as usual)."""
        with self._lock:
            for _ in range(count):
                self._faults.append(Reply(status, body or {"message": "fault"}, dict(headers)))

    def send_next(self, reply: Reply) -> None:
        """Answer the next valid request with exactly this (a malformed or huge answer)."""
        with self._lock:
            self._faults.append(reply)

    # What a subclass gives.

    def auth(self, headers: dict[str, str], checked: Checked) -> Reply | None:
        """None when the request's credential is good, else the host's refusal."""
        raise NotImplementedError

    def route(self, checked: Checked) -> Reply:
        raise NotImplementedError

    def invalid(self, errors: list[str]) -> Reply:
        return Reply(422, {"message": "Validation Failed", "errors": errors})

    @staticmethod
    def auth_kind(headers: dict[str, str]) -> str:
        lowered = {k.lower(): v for k, v in headers.items()}
        if "private-token" in lowered:
            return "private-token"
        return lowered.get("authorization", "").split(" ", 1)[0].lower()

    # The server.

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        if self.delay:
            self._stopping.wait(self.delay)
        checked = check(self.operations, method, target, headers, raw)
        lowered = {k.lower() for k in headers}
        missing = [h for h in self.required_headers if h.lower() not in lowered]
        errors = checked.errors + [f"header {h} is required" for h in missing]
        body: Any = checked.body
        if body is None and raw:
            body = raw[:200].decode("utf-8", "replace")
        with self._lock:
            self.log.append(Logged(method, target, body, self.auth_kind(headers)))
            if errors:
                self.violations.extend(f"{method} {target}: {e}" for e in errors)
        if errors:
            return (
                Reply(400, {"message": "Not Found"})
                if checked.operation is None
                else (self.invalid(errors))
            )
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            return fault
        refused = self.auth(headers, checked)
        if refused is not None:
            return refused
        with self._lock:
            return self.route(checked)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHost:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK hold every answer back ~40 ms.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_REQUEST:
                    self.send_error(413)
                    return
                raw = self.rfile.read(length) if length else b""
                reply = fake.handle(self.command, self.path, dict(self.headers.items()), raw)
                data = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else b""
                    if reply.body is None
                    else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                if not any(k.lower() == "content-type" for k in reply.headers):
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the fake's own log is `log`, without credentials

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1").configure_cert(ctx)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
