"""The real daemon on either store: a webhook redelivered after a full restart starts nothing,
and a store that cannot be opened stops the start with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import GitServer, WorkTree, postgres, write_step
from tests.support.configs import daemon_env, workspace, write_config
from tests.support.daemon import Daemon, kill_daemon, start_daemon, stop_daemon
from tests.support.payloads import build

STORE_PASSWORD_ENV, STORE_PASSWORD = "SYNCD_TEST_STORE_PASSWORD", "store-pass-3d9a61"
ENV = {STORE_PASSWORD_ENV: STORE_PASSWORD}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_top(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The config's top-level keys for the store: none (SQLite), or a fresh PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    postgres.require()
    with postgres.fresh_database() as url:
        # The test server trusts everyone, but syncd sends the password all the same.
        yield {"store": {"url": url, "password_env": STORE_PASSWORD_ENV}}


def runs_of(d: Daemon, ws: str) -> list[dict[str, Any]]:
    with d.client() as c:
        return list(c.get(f"/api/v1/workspaces/{ws}/runs").json()["runs"])


def restarted(d: Daemon, env: dict[str, str]) -> Daemon:
    """Stop the daemon and start it again on the same config, state and store."""
    assert d.stop() == 0, d.log()
    log_path = d.log_path.with_name("daemon-2.log")
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "serve", "--config", str(d.config_path)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=os.getcwd(),
    )
    again = Daemon(d.url, d.config_path, process, log_path, d.tree, d.repo_url)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited {process.returncode}:\n{again.log()}")
        try:
            return httpx.get(f"{again.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    again.wait_until(ready, 60, "the restarted daemon to be ready")
    return again


def test_a_redelivery_after_a_restart_starts_nothing(
    git_server: GitServer,
    repo: tuple[str, WorkTree],
    tmp_path: Path,
    store_top: dict[str, Any],
) -> None:
    url, tree = repo
    workspaces = [workspace("auto", url, git_server, "automatic")]
    d = start_daemon(tmp_path, git_server, tree, url, workspaces, ENV, **store_top)
    try:
        d.wait_until(lambda: runs_of(d, "auto"), what="the startup run", timeout=60)
        path = write_step(tree, "greet")
        tree.commit("a step")
        tree.push()
        headers, body = build("github", url, "main", [path], tree.head(), "delivery-restart-1")
        with d.client(token=None) as c:
            assert c.post("/hooks/github", content=body, headers=headers).status_code == 202
        d.wait_until(lambda: len(runs_of(d, "auto")) == 2, what="the webhook's run", timeout=60)
        d = restarted(d, daemon_env(git_server) | ENV)
        d.wait_until(
            lambda: len(runs_of(d, "auto")) == 3, what="the restart's startup run", timeout=60
        )
        with d.client(token=None) as c:
            again = c.post("/hooks/github", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
        time.sleep(1.5)
        assert len(runs_of(d, "auto")) == 3
        with d.client() as c:
            said = c.get("/metrics").text + c.get("/api/v1/workspaces/auto/health").text
    finally:
        stop_daemon(d)
        kill_daemon(d)
    logs = d.log() + d.log_path.with_name("daemon.log").read_text(errors="replace")
    assert STORE_PASSWORD not in logs + said


def test_a_store_that_cannot_be_opened_stops_the_start_with_one_line(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    postgres.require()
    url, _ = repo
    secret = "pg-secret-5e1f"
    server = postgres.SERVER.rpartition("@")[2]
    config = write_config(
        tmp_path,
        [workspace("auto", url, git_server, "automatic")],
        store={"url": f"postgresql://syncd@{server}/syncd_no_such_db", "password_env": "PGPASS"},
    )
    env = daemon_env(git_server) | {"PGPASS": secret}
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("syncd:")]
    assert len(lines) == 1, done.stderr
    assert f"{server}/syncd_no_such_db" in lines[0]
    assert secret not in done.stderr + done.stdout
