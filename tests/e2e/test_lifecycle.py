"""The daemon's lifecycle against the real thing: sd_notify over a datagram socket, reloads by
file edit and by SIGHUP, a broken reload refused, and a clean stop."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from syncd.ops.sdnotify import Notifier
from tests.support import GitServer, WorkTree, workspace, write_step
from tests.support.daemon import Daemon, start_daemon


class NotifySocket:
    """What systemd listens on: a datagram socket; collects every message sent to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def drain(self, seconds: float) -> list[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))
        return [m for _, m in self.messages]

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in m for _, m in self.messages):
                return
            self.drain(0.2)
        raise AssertionError(f"no {text!r} in {[m for _, m in self.messages]}")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.sock.close()


def metric(d: Daemon, line_start: str) -> float:
    with d.client(token=None) as c:
        for line in c.get("/metrics").text.splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
    return 0.0


def test_notifier_speaks_the_protocol(notify: NotifySocket) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_interval == 1.0
    assert n.ready(status="3 workspaces")
    assert n.watchdog() and n.stopping()
    assert notify.drain(0.3) == ["READY=1\nSTATUS=3 workspaces", "WATCHDOG=1", "STOPPING=1"]
    assert not Notifier({}).ready()  # no socket: nothing to do, no error


def test_ready_watchdog_reload_and_stop_are_announced(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path, notify: NotifySocket
) -> None:
    url, tree = repo
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    d = start_daemon(tmp_path, git_server, tree, url, env_extra=env)
    try:
        notify.wait_for("READY=1")
        start = time.monotonic()
        notify.drain(3.0)
        pings = [t for t, m in notify.messages if m == "WATCHDOG=1" and t >= start]
        assert 4 <= len(pings) <= 9, pings  # every 0.5 s: half of WATCHDOG_USEC
        d.process.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        assert any("MONOTONIC_USEC=" in m for _, m in notify.messages)
        assert d.stop() == 0
        notify.drain(0.5)
        assert any(m.startswith("STOPPING=1") for _, m in notify.messages)
    finally:
        if d.process.poll() is None:
            d.process.kill()


def test_reload_by_file_edit_and_sighup_and_a_broken_config_is_refused(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    d = start_daemon(tmp_path, git_server, tree, url)
    try:
        with d.client() as c:
            assert {w["id"] for w in c.get("/api/v1/workspaces").json()["workspaces"]} == {
                "auto",
                "manual",
            }
        doc = yaml.safe_load(d.config_path.read_text())
        # 1. a file edit adds a workspace
        doc["workspaces"].append(workspace("third", url, git_server, "manual"))
        d.config_path.write_text(yaml.safe_dump(doc))

        def ids() -> set[str]:
            with d.client() as c:
                return {w["id"] for w in c.get("/api/v1/workspaces").json()["workspaces"]}

        d.wait_until(lambda: "third" in ids(), what="the file edit to add a workspace")
        # 2. a broken config is refused; the running one stays
        d.config_path.write_text("workspaces: [{id: 1, bogus: true}]\n")
        d.wait_until(
            lambda: metric(d, 'syncd_config_reloads_total{result="error"}') >= 1,
            what="the broken reload to be refused",
        )
        assert ids() == {"auto", "manual", "third"}
        assert "config reload refused" in d.log()
        # 3. SIGHUP reloads a fixed config that removes a workspace
        doc["workspaces"] = [w for w in doc["workspaces"] if w["id"] != "manual"]
        d.config_path.write_text(yaml.safe_dump(doc))
        d.process.send_signal(signal.SIGHUP)
        d.wait_until(lambda: ids() == {"auto", "third"}, what="SIGHUP to reload")
        assert metric(d, 'syncd_config_reloads_total{result="ok"}') >= 2
        assert d.stop() == 0
    finally:
        if d.process.poll() is None:
            d.process.kill()


def test_metrics_exist_from_the_start_and_survive_a_restart(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    write_step(tree, "greet", "hello()")
    tree.commit("add a step")
    tree.push()
    d = start_daemon(tmp_path, git_server, tree, url)
    try:
        success = 'syncd_workspace_last_success_timestamp_seconds{workspace="auto"}'
        first = d.wait_until(lambda: metric(d, success), what="the startup sync of auto")
        with d.client(token=None) as c:
            page = c.get("/metrics").text
        assert "_created" not in page
        # The first failure of a workspace must be an increase: its series are there at 0.
        assert 'syncd_sync_runs_total{workspace="manual",result="failed"} 0.0' in (page)
        assert d.stop() == 0
        # Restarted with the remote failing: no run succeeds, yet the gauge is back at once.
        git_server.set_fault("500")
        d = start_daemon(tmp_path, git_server, tree, url)
        assert metric(d, success) == first
        assert metric(d, 'syncd_workspace_status{workspace="auto",status="Synced"}') == 1.0
        assert d.stop() == 0
    finally:
        git_server.set_fault(None)
        if d.process.poll() is None:
            d.process.kill()
