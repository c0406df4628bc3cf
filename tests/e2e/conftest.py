"""The real daemon: `python -m syncd serve` under uvicorn on loopback, against the https server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.gitserver import GitServer, WorkTree
from tests.support import API_TOKEN, daemon_env, workspace, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    url: str
    config_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    tree: WorkTree
    repo_url: str

    def client(self, token: str | None = API_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n--- daemon log ---\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_daemon(
    tmp_path: Path,
    server: GitServer,
    tree: WorkTree,
    repo_url: str,
    workspaces: list[dict[str, Any]] | None = None,
    env_extra: dict[str, str] | None = None,
    **top: Any,
) -> Daemon:
    port = free_port()
    if workspaces is None:
        workspaces = [
            workspace("auto", repo_url, server, "automatic"),
            workspace("manual", repo_url, server, "manual"),
        ]
    config = write_config(
        tmp_path, workspaces, server={"listen": f"127.0.0.1:{port}", "self_heal_delay": "1s"}, **top
    )
    log_path = tmp_path / "daemon.log"
    env = daemon_env(server) | (env_extra or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "serve", "--config", str(config)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=os.getcwd(),
    )
    daemon = Daemon(f"http://127.0.0.1:{port}", config, process, log_path, tree, repo_url)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited {process.returncode}:\n{daemon.log()}")
        try:
            return httpx.get(f"{daemon.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    daemon.wait_until(ready, 30, "the daemon to be ready")
    return daemon


@pytest.fixture
def daemon(git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path) -> Iterator[Daemon]:
    url, tree = repo
    d = start_daemon(tmp_path, git_server, tree, url)
    yield d
    if d.process.poll() is None:
        d.process.kill()
        d.process.wait(10)
