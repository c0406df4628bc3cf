"""A real https git server on loopback, the remote of `syncd demo`.

Git's own `git http-backend` runs as a CGI program behind a threaded Python HTTP server wrapped
in TLS, with a throwaway CA from trustme and Basic auth. It counts requests by kind, and lets a
subclass answer a request itself before git sees it (`intercept`): the tests inject faults so.
`WorkTree` makes real commits with the git CLI and pushes them over https.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import trustme

from syncd.demo.http_backend import (
    GitRequestHandler,
    TLSServer,
    challenge,
    git_exec_path,
    run_git,
)
from syncd.ops.logs import fields

log = logging.getLogger(__name__)

__all__ = ["GitRequestHandler", "GitServer", "WorkTree"]


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
        self._httpd: TLSServer | None = None
        self._thread: threading.Thread | None = None
        self.backend = str(Path(git_exec_path()) / "git-http-backend")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(ctx)
        self._httpd = TLSServer(("127.0.0.1", 0), GitRequestHandler, ctx, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"gitserver-{self.port}", daemon=True
        )
        self._thread.start()
        log.debug("gitserver started", extra=fields(url=self.base_url, root=str(self.root)))

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
        run_git(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)])
        run_git(["git", "-C", str(path), "config", "http.receivepack", "true"])
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
        request.reply(401, b"authentication required\n", {"WWW-Authenticate": challenge()})

    def snapshot(self) -> collections.Counter[str]:
        """A copy of the counters, to compare before and after an operation."""
        with self._lock:
            copy = collections.Counter(self.counts)
            copy["total"] = self.request_count
            return copy

    def record(self, kind: str) -> None:
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
