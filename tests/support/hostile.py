"""A hostile stand-in for a syncd server on 127.0.0.1, for the client's tests.

It answers `/openapi.json` as syncd of this version does (so the client gets past its version
check), and every other path the way `mode` says: far too much, one byte at a time, nested
100,000 deep, not JSON, cut short, in the wrong shapes, not HTTP at all, or echoing the
Authorization header back in an error. Raw sockets, so that it can send what no HTTP library
would. Every loop is bounded: by a byte count, and by `stop()`.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from syncd import __version__

MODES = (
    "huge",  # 200, no Content-Length, a JSON array that goes on and on (up to HUGE_CAP bytes)
    "huge-declared",  # 200, Content-Length of 10 GiB, then as "huge"
    "drip-head",  # the status line, one byte every DRIP seconds
    "drip-body",  # the head at once, then the body one byte every DRIP seconds
    "deep",  # 200, `[` 100,000 times
    "deep-object",  # 200, an object whose one list nests 500 deep: valid JSON, parses
    "html",  # 200, an HTML page
    "truncated",  # Content-Length 1000, 16 bytes, then the connection closes
    "wrong-types",  # 200, {"workspaces": [1, "x"]}
    "missing-keys",  # 200, {"workspaces": [{"id": "a"}]}: objects, without a view's keys
    "not-http",  # an SSH banner
    "echo",  # 500, {"error": "..." with the Authorization header it got}
)
HUGE_CAP = 96 * 1024 * 1024
DRIP = 0.25
MAX_DRIPS = 400
_HEAD_LIMIT = 65536


@dataclass
class Hostile:
    mode: str = "html"
    seen: list[str] = field(default_factory=list)  # "METHOD PATH", one per request
    authorizations: list[str] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # body bytes sent, per hostile answer
    stopping: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def answer(self, conn: socket.socket) -> None:
        head = _read_head(conn)
        if head is None:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path = [*lines[0].split(" "), "", ""][:2]
        self.seen.append(f"{method} {path}")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization":
                self.authorizations.append(value.strip())
        if path == "/openapi.json":
            doc = {"openapi": "3.1.0", "info": {"title": "syncd", "version": __version__}}
            conn.sendall(_answer(200, json.dumps(doc).encode()))
            return
        getattr(self, "_" + self.mode.replace("-", "_"))(conn)

    # -- the modes ------------------------------------------------------------------------------

    def _huge(self, conn: socket.socket, declared: str | None = None) -> None:
        length = f"Content-Length: {declared}\r\n" if declared else ""
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + length.encode()
            + b"Connection: close\r\n\r\n["
        )
        chunk = b"0," * 32768
        sent = 1
        with suppress(OSError):
            while sent < HUGE_CAP and not self.stopping.is_set():
                conn.sendall(chunk)
                sent += len(chunk)
        self.sent.append(sent)

    def _huge_declared(self, conn: socket.socket) -> None:
        self._huge(conn, declared=str(10 * 1024**3))

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        sent = 0
        with suppress(OSError):
            for byte in data[:MAX_DRIPS]:
                if self.stopping.wait(DRIP):
                    break
                conn.sendall(bytes([byte]))
                sent += 1
        self.sent.append(sent)

    def _drip_head(self, conn: socket.socket) -> None:
        self._drip(conn, _answer(200, b"{}" + b" " * 1000))

    def _drip_body(self, conn: socket.socket) -> None:
        body = b'{"workspaces": []}'.ljust(1000)
        conn.sendall(_answer(200, body)[: -len(body)])
        self._drip(conn, body)

    def _deep(self, conn: socket.socket) -> None:
        conn.sendall(_answer(200, b"[" * 100_000 + b"]" * 100_000))

    def _deep_object(self, conn: socket.socket) -> None:
        conn.sendall(_answer(200, b'{"workspaces": ' + b"[" * 500 + b"]" * 500 + b"}"))

    def _html(self, conn: socket.socket) -> None:
        conn.sendall(_answer(200, b"<html><body>It works!</body></html>", "text/html"))

    def _truncated(self, conn: socket.socket) -> None:
        conn.sendall(_answer(200, b'{"workspaces": [' + b" " * 984)[:-984])
        with suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    def _wrong_types(self, conn: socket.socket) -> None:
        conn.sendall(_answer(200, b'{"workspaces": [1, "x"]}'))

    def _missing_keys(self, conn: socket.socket) -> None:
        conn.sendall(_answer(200, b'{"workspaces": [{"id": "a"}]}'))

    def _not_http(self, conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    def _echo(self, conn: socket.socket) -> None:
        said = f"refused: Authorization: {self.authorizations[-1] if self.authorizations else ''}"
        conn.sendall(_answer(500, json.dumps({"error": said, "detail": said}).encode()))


def _answer(status: int, body: bytes, kind: str = "application/json") -> bytes:
    reason = {200: "OK", 500: "Internal Server Error"}.get(status, "Other")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _read_head(conn: socket.socket) -> bytes | None:
    """The request's head (up to its blank line), or None when it never comes whole."""
    conn.settimeout(10)
    data = b""
    with suppress(OSError):
        while b"\r\n\r\n" not in data and len(data) < _HEAD_LIMIT:
            got = conn.recv(4096)
            if not got:
                return None
            data += got
    head, sep, _ = data.partition(b"\r\n\r\n")
    return head if sep else None


@contextmanager
def hostile_server(mode: str = "html") -> Iterator[Hostile]:
    """A Hostile on a free port of 127.0.0.1, its `url` set; stopped (every answer cut short)
    on the way out."""
    hostile = Hostile(mode)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            hostile.answer(self.request)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", 0), Handler) as server:
        hostile.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield hostile
        finally:
            hostile.stopping.set()
            server.shutdown()
            thread.join(5)
