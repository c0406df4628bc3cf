"""A real https git server on loopback, the remote of `syncd demo`.

Git's own `git http-backend` runs as a CGI program behind a threaded Python HTTP server wrapped
in TLS, with a throwaway CA from trustme and Basic auth. It counts requests by kind, and lets a
subclass answer a request itself before git sees it (`intercept`): the tests inject faults so.
`WorkTree` makes real commits with the git CLI and pushes them over https.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hmac
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import unquote

import trustme

log = logging.getLogger(__name__)

_REALM = "syncd-test-git"
_CHUNK = 64 * 1024


class GitServer:
    """Serves the bare repositories under `root` at https://127.0.0.1:PORT/<name>.git."""

    def __init__(
        self,
        root: Path,
        username: str = "bot",
        password: str = "s3cret-token",
        hostnames: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password
        self.ca = trustme.CA()
        self.ca_file = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        # The names the server certificate is issued for; a caller can pick another to see
        # a hostname mismatch refused.
        self._cert = self.ca.issue_cert(*hostnames)
        self.port = 0
        self.request_count = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._httpd: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._backend = str(Path(_git_exec_path()) / "git-http-backend")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(ctx)
        self._httpd = _TLSServer(("127.0.0.1", 0), GitRequestHandler, ctx, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"gitserver-{self.port}", daemon=True
        )
        self._thread.start()
        log.debug("gitserver started url=%s root=%s", self.base_url, self.root)

    def stop(self) -> None:
        # Stop accepting, close the listening socket.
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- repositories ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.git"

    def create_repo(self, name: str) -> str:
        """Create the bare repository `<name>.git` (default branch main); return its URL."""
        path = self.root / f"{name}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)])
        _run(["git", "-C", str(path), "config", "http.receivepack", "true"])
        return self.url(name)

    # -- requests and counters -------------------------------------------------------------

    def intercept(self, request: GitRequestHandler) -> bool:
        """Called for each request once counted, before the credentials are checked: True when
        it has answered (or dropped) the request itself. This server lets every request by."""
        return False

    def deny(self, request: GitRequestHandler) -> None:
        """Answer 401 with the Basic challenge, as for a wrong credential, and count it."""
        self._count("unauthorized")
        request.drain_body()
        request.reply(401, b"authentication required\n", {"WWW-Authenticate": _challenge()})

    def snapshot(self) -> collections.Counter[str]:
        """A copy of the counters, to compare before and after an operation."""
        with self._lock:
            copy = collections.Counter(self.counts)
            copy["total"] = self.request_count
            return copy

    def _record(self, kind: str) -> None:
        with self._lock:
            self.request_count += 1
            self.counts[kind] += 1

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    # -- the git CLI, set up to trust this server ------------------------------------------

    def git_env(self, username: str | None = None, password: str | None = None) -> dict[str, str]:
        """Environment for the git CLI: trusts only this server's CA, no user or system config,
        never prompts; credentials come from a helper that reads them from the environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_SSL_CAINFO=str(self.ca_file),  # the machine sets this; it would win over -c
            SSL_CERT_FILE=str(self.ca_file),
            GIT_TERMINAL_PROMPT="0",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            SYNCD_TEST_GIT_USERNAME=self.username if username is None else username,
            SYNCD_TEST_GIT_PASSWORD=self.password if password is None else password,
        )
        env.pop("GIT_ASKPASS", None)
        env.pop("SSH_ASKPASS", None)
        return env

    def git_args(self) -> list[str]:
        helper = (
            '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
            '"$SYNCD_TEST_GIT_USERNAME" "$SYNCD_TEST_GIT_PASSWORD"; }; f'
        )
        return [
            "git",
            "-c", f"http.sslCAInfo={self.ca_file}",
            "-c", "http.sslVerify=true",
            "-c", "credential.helper=",
            "-c", f"credential.helper={helper}",
            "-c", "user.name=syncd test",
            "-c", "user.email=syncd-test@example.invalid",
            "-c", "commit.gpgSign=false",
            "-c", "init.defaultBranch=main",
            "-c", "core.symlinks=true",
        ]  # fmt: skip

    def run_git(
        self,
        *args: str,
        cwd: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the git CLI against this server; `check` raises with git's stderr on failure."""
        proc = subprocess.run(
            [*self.git_args(), *args],
            cwd=cwd,
            env=self.git_env(username, password),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc


class WorkTree:
    """A non-bare clone of one of the server's repositories, for making real commits."""

    def __init__(self, server: GitServer, repo_name: str, path: Path, branch: str = "main") -> None:
        self.server = server
        self.repo_name = repo_name
        self.path = Path(path)
        self.branch = branch
        server.run_git("clone", "--quiet", server.url(repo_name), str(self.path))
        remote_branch = self.git("branch", "--remotes", "--list", f"origin/{branch}").strip()
        if remote_branch:
            self.git("checkout", "--quiet", "-B", branch, f"origin/{branch}")
        else:
            self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def git(self, *args: str) -> str:
        return self.server.run_git(*args, cwd=self.path).stdout

    def write(self, relpath: str, data: bytes | str) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        target.write_bytes(data)

    def remove(self, relpath: str) -> None:
        target = self.path / relpath
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def symlink(self, relpath: str, target: str) -> None:
        link = self.path / relpath
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)

    def add_gitlink(self, relpath: str, commit: str) -> None:
        """Record a submodule entry (mode 160000) without cloning anything into it."""
        (self.path / relpath).mkdir(parents=True, exist_ok=True)
        self.git("update-index", "--add", "--cacheinfo", f"160000,{commit},{relpath}")

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def push(self, branch: str | None = None, force: bool = False) -> None:
        target = branch or self.branch
        flags = ["--force"] if force else []
        self.git("push", "--quiet", *flags, "origin", f"HEAD:refs/heads/{target}")


# -- the HTTP side ---------------------------------------------------------------------------


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        ctx: ssl.SSLContext,
        git_server: GitServer,
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
        log.debug("gitserver connection error client=%s", client_address, exc_info=True)


class GitRequestHandler(BaseHTTPRequestHandler):
    """One request to the server; `intercept` may answer it with `reply`, or `drop` it."""

    protocol_version = "HTTP/1.1"
    server_version = "syncd-test-git/1"
    timeout = 60
    server: _TLSServer

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("gitserver %s", format % args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        gs = self.server.git_server
        path, _, query = self.path.partition("?")
        gs._record(_kind(self.command, path))
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
            [gs._backend],
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
            log.debug("gitserver backend exchange failed path=%s", path, exc_info=True)
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


def _challenge() -> str:
    return f'Basic realm="{_REALM}"'


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
        log.debug("git-http-backend: %s", line.decode("utf-8", "replace").rstrip())
    err.close()


def _git_exec_path() -> str:
    return subprocess.run(
        ["git", "--exec-path"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _run(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(args, check=True, capture_output=True, env=env)
