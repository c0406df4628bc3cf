"""SIGTERM while a sync is in flight: syncd exits 0 within 10 s and nothing is half-applied."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from syncd.config import load_config
from syncd.store import SqliteStore
from tests.support import GitServer, WorkTree, daemon_env, workspace, write_step
from tests.support.daemon import start_daemon


def live(config_path: Path, server: GitServer) -> dict[str, str]:
    config = load_config(config_path, daemon_env(server))
    store = SqliteStore(config.store.sqlite_path)
    try:
        assert store.integrity_ok()
        return {n: s.content.do for n, s in store.live_steps("auto").items()}
    finally:
        store.close()


def test_sigterm_during_a_stalled_fetch_exits_in_time(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    write_step(tree, "greet", "v1()")
    tree.commit()
    tree.push()
    d = start_daemon(
        tmp_path,
        git_server,
        tree,
        url,
        [workspace("auto", url, git_server)],
        git={"timeout": "60s"},
    )
    try:
        d.wait_until(
            lambda: (
                d.client().get("/api/v1/workspaces/auto").json()["last_applied_revision"]
                == tree.head()
            ),
            what="the startup sync",
        )
        write_step(tree, "greet", "v2()")
        tree.commit()
        tree.push()
        git_server.set_fault("slow", 30)  # the remote stalls well past the stop deadline
        assert d.client().post("/api/v1/workspaces/auto/sync").status_code == 202
        time.sleep(1.0)
        started = time.monotonic()
        assert d.stop(signal.SIGTERM, timeout=20) == 0
        assert time.monotonic() - started < 10
    finally:
        git_server.set_fault(None)
        if d.process.poll() is None:
            d.process.kill()
    assert live(d.config_path, git_server) == {"greet": "v1()"}


def test_sigterm_during_a_large_apply_leaves_old_or_new(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    for i in range(1500):
        write_step(tree, f"s{i:05d}", "old()")
    tree.commit()
    tree.push()
    d = start_daemon(tmp_path, git_server, tree, url, [workspace("auto", url, git_server)])
    try:
        d.wait_until(
            lambda: (
                d.client().get("/api/v1/workspaces/auto").json()["last_applied_revision"]
                == tree.head()
            ),
            timeout=60,
            what="the startup sync",
        )
        old_head = tree.head()
        for i in range(3000):
            write_step(tree, f"s{i:05d}", "new()")
        new_head = tree.commit()
        tree.push()
        assert d.client().post("/api/v1/workspaces/auto/sync").status_code == 202
        time.sleep(0.3)
        started = time.monotonic()
        assert d.stop(signal.SIGTERM, timeout=20) == 0
        assert time.monotonic() - started < 10
    finally:
        if d.process.poll() is None:
            d.process.kill()
    steps = live(d.config_path, git_server)
    old = {f"s{i:05d}": "old()" for i in range(1500)}
    new = {f"s{i:05d}": "new()" for i in range(3000)}
    assert steps in (old, new)
    assert old_head != new_head
