"""The HTTP side of the demo's git server: TLS, Basic auth, and `git http-backend` as CGI."""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote

from syncd.ops.logs import fields

log = logging.getLogger("syncd.demo.gitserver")

REALM = "syncd-test-git"


class GitHost(Protocol):
    """What the HTTP side asks of the git server it fronts."""

    username: str
    password: str
    root: Path
    backend: str  # the path of git-http-backend

    def record(self, kind: str) -> None: ...
    def intercept(self, request: GitRequestHandler) -> bool: ...
    def deny(self, request: GitRequestHandler) -> None: ...


_CHUNK = 64 * 1024


# -- the HTTP side ---------------------------------------------------------------------------


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        ctx: ssl.SSLContext,
        git_server: GitHost,
    ) -> None:
        self.ssl_context = ctx
        self.git_server = git_server
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # The handshake runs in the handler's thread (Handler.setup), not in the accept loop.
        return self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that drop connections or refuse our certificate are nothing to report.
        log.debug("gitserver connection error", extra=fields(client=client_address), exc_info=True)


class GitRequestHandler(BaseHTTPRequestHandler):
    """One request to the server; `intercept` may answer it with `reply`, or `drop` it."""

    protocol_version = "HTTP/1.1"
    server_version = "syncd-test-git/1"
    timeout = 60
    server: TLSServer

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("gitserver request", extra=fields(line=format % args))

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        gs = self.server.git_server
        path, _, query = self.path.partition("?")
        gs.record(_kind(self.command, path))
        if gs.intercept(self):
            return
        user = self._authenticate()
        if user is None:
            gs.deny(self)
            return
        self._run_backend(unquote(path), query, user)

    def drop(self) -> None:
        """Close the connection without an answer."""
        self.close_connection = True

    def _authenticate(self) -> str | None:
        gs = self.server.git_server
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), gs.username.encode())
        ok_password = hmac.compare_digest(password.encode(), gs.password.encode())
        return user if ok_user and ok_password else None

    def _run_backend(self, path: str, query: str, user: str) -> None:
        gs = self.server.git_server
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(gs.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(gs.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
        }
        if not chunked:
            # Without CONTENT_LENGTH http-backend reads the body until EOF, which is what a
            # chunked request needs.
            env["CONTENT_LENGTH"] = str(int(self.headers.get("Content-Length") or 0))
        if encoding := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        if protocol := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol

        proc = subprocess.Popen(
            [gs.backend],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        feeder = threading.Thread(target=self._feed, args=(proc.stdin,), daemon=True)
        feeder.start()
        errors = threading.Thread(target=_log_stderr, args=(proc.stderr,), daemon=True)
        errors.start()
        try:
            status, headers = _read_cgi_headers(proc.stdout)
            self._stream_response(status, headers, proc.stdout)
        except (OSError, ValueError):
            self.close_connection = True
            log.debug("gitserver backend exchange failed", extra=fields(path=path), exc_info=True)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            feeder.join(timeout=5)
            errors.join(timeout=5)
            proc.stdout.close()

    def _feed(self, stdin: IO[bytes]) -> None:
        try:
            for chunk in self._body():
                stdin.write(chunk)
        except OSError:
            log.debug("gitserver request body not fully delivered", exc_info=True)
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _stream_response(self, status: int, headers: list[tuple[str, str]], out: IO[bytes]) -> None:
        self.send_response(status)
        length = None
        for name, value in headers:
            if name.lower() == "content-length":
                length = int(value)
            self.send_header(name, value)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while data := out.read1(_CHUNK):  # type: ignore[attr-defined]
            if length is None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if length is None:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> Iterator[bytes]:
        """The request body, decoded from chunked transfer encoding when needed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, _CHUNK))
                    if not data:
                        raise OSError("client closed the connection inside a chunk")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(1024)  # the CRLF after the chunk
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(remaining, _CHUNK))
                if not data:
                    raise OSError("client closed the connection inside the body")
                remaining -= len(data)
                yield data

    def drain_body(self) -> None:
        """Read and discard the request body, so that the connection can answer."""
        try:
            for _ in self._body():
                pass
        except (OSError, ValueError):
            self.close_connection = True

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


def _kind(method: str, path: str) -> str:
    if path.endswith("/info/refs"):
        return "info_refs"
    if method == "POST" and path.endswith("/git-upload-pack"):
        return "upload_pack"
    if method == "POST" and path.endswith("/git-receive-pack"):
        return "receive_pack"
    return "other"


def challenge() -> str:
    return f'Basic realm="{REALM}"'


def _read_cgi_headers(out: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = out.readline(8192)
        if not line:
            raise ValueError("git http-backend closed its output before the headers ended")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return status, headers
        name, _, value = text.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((name.strip(), value.strip()))


def _log_stderr(err: IO[bytes]) -> None:
    for line in err:
        log.debug(
            "git-http-backend said", extra=fields(line=line.decode("utf-8", "replace").rstrip())
        )
    err.close()


def git_exec_path() -> str:
    return subprocess.run(
        ["git", "--exec-path"], check=True, capture_output=True, text=True
    ).stdout.strip()


def run_git(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(args, check=True, capture_output=True, env=env)
