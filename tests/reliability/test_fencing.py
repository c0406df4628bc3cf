"""Several writers of one workspace, end to end: the applied revision never goes back.

Each test makes two real writers race over one workspace at the moment that matters, with the
https git server holding a fetch until the test lets it go: the daemon and `syncd sync` in
local mode on one SQLite file; two replicas on PostgreSQL, one cut off from the database or
frozen (SIGSTOP) in the middle of its run. Whatever the order, the workspace ends at the newest
commit, and no older commit is applied after a newer one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support import write_step
from tests.support.configs import daemon_env, workspace
from tests.support.daemon import (
    Daemon,
    applied,
    live_steps,
    remote,
    runs,
    start_daemon,
    stop_daemon,
    tree_steps,
    view,
)

WS = "auto"


def sync_requested(d: Daemon, ws: str = WS) -> None:
    with d.client() as c:
        r = c.post(f"/api/v1/workspaces/{ws}/sync")
    assert r.status_code == 202, r.text


def log_count(d: Daemon, text: str) -> int:
    return d.log().count(text)


def succeeded_revisions(d: Daemon, ws: str = WS) -> list[str]:
    """The revisions the workspace's succeeded applies recorded, oldest first."""
    done = [r for r in runs(d, ws) if r["result"] == "succeeded" and not r.get("dry_run")]
    done.sort(key=lambda r: r["finished_at"])
    return [str(r["revision"]) for r in done]


def settled_at(d: Daemon, head: str, ws: str = WS) -> bool:
    v = view(d, ws)
    return bool(v["last_applied_revision"] == head and v["status"] == "Synced")


def test_a_slow_local_sync_never_applies_an_older_commit_over_the_daemons(
    tmp_path: Path,
) -> None:
    """`syncd sync` resolves X and its fetch is held; the daemon is asked to sync after Y is
    pushed. The landed release let the daemon apply Y, then the CLI apply X over it and call
    the workspace Synced. Now the daemon waits for the CLI's lease, and applies Y after X."""
    with remote(tmp_path) as r:
        d = start_daemon(tmp_path, r.server, r.tree, r.url, [workspace(WS, r.url, r.server)])
        try:
            first = r.tree.head()
            d.wait_until(lambda: applied(d, WS) == first, what="the first apply")
            write_step(r.tree, "step 0", "changed_in_x()")
            x = r.commit_and_push("X")
            hold = r.server.hold_next_fetch()
            cli = subprocess.Popen(
                [sys.executable, "-m", "syncd", "sync", WS, "--config", str(d.config_path)],
                env=daemon_env(r.server),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                hold.wait_arrived()
                write_step(r.tree, "step 0", "changed_in_y()")
                write_step(r.tree, "new in y", "new()")
                y = r.commit_and_push("Y")
                starts = log_count(d, '"sync start"')
                sync_requested(d)
                d.wait_until(lambda: log_count(d, '"sync start"') > starts, what="its run")
                # The time the landed release needed to apply Y while the CLI's fetch waited.
                time.sleep(1.5)
            finally:
                hold.release()
            out, err = cli.communicate(timeout=90)
            assert cli.returncode == 0, (out, err)
            d.wait_until(lambda: settled_at(d, y), 60, "Y applied and Synced")
            assert live_steps(d, WS) == tree_steps(r.tree)
            order = succeeded_revisions(d)
            assert order[-2:] == [x, y], order
        finally:
            stop_daemon(d)
