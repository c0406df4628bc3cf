"""Several writers of one workspace, end to end: the applied revision never goes back.

Each test makes two real writers race over one workspace at the moment that matters, with the
https git server holding a fetch until the test lets it go: the daemon and `syncd sync` in
local mode on one SQLite file; two replicas on PostgreSQL, one cut off from the database or
frozen (SIGSTOP) in the middle of its run. Whatever the order, the workspace ends at the newest
commit, and no older commit is applied after a newer one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import postgres, write_step
from tests.support.configs import daemon_env, workspace
from tests.support.daemon import (
    Daemon,
    Remote,
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


def push_x(r: Remote) -> str:
    """The first commit of a race: one step changed."""
    write_step(r.tree, "step 0", "changed_in_x()")
    return r.commit_and_push("X")


def push_y(r: Remote) -> str:
    """The newer commit: the same step changed again, and a step added."""
    write_step(r.tree, "step 0", "changed_in_y()")
    write_step(r.tree, "new in y", "new()")
    return r.commit_and_push("Y")


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
            x = push_x(r)
            hold = r.server.hold_next_fetch()
            cli = subprocess.Popen(
                [sys.executable, "-m", "syncd", "sync", WS, "--config", str(d.config_path)],
                env=daemon_env(r.server),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                hold.wait_arrived()
                y = push_y(r)
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


# -- two replicas on PostgreSQL ----------------------------------------------------------------

HOLD_NAMESPACE = 0x73795257  # syncd.replicas.postgres: the workspaces' session locks


@pytest.fixture
def database() -> Iterator[str]:
    postgres.require()
    with postgres.fresh_database() as url:
        yield url


def replica_id(d: Daemon) -> str:
    with d.client() as c:
        found = c.get("/api/v1/replicas").json()["replicas"]
    return str(next(r["id"] for r in found if r["this"]))


def claimed_by(database: str) -> str | None:
    with psycopg.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT claimed_by FROM sync_requests WHERE claimed_by IS NOT NULL ORDER BY id"
        ).fetchone()
    return None if row is None else str(row[0])


def cut_lock_session(database: str) -> int:
    """End the session holding the workspaces' locks, as a network cut or a failover does."""
    with psycopg.connect(f"{postgres.SERVER}/postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = %s AND granted",
            (HOLD_NAMESPACE,),
        ).fetchall()
    return len(rows)


def two_replicas(tmp_path: Path, r: Remote, database: str) -> tuple[list[Daemon], str]:
    configs = [workspace(WS, r.url, r.server)]
    replicas = []
    for i in range(2):
        home = tmp_path / f"replica{i}"
        home.mkdir()
        replicas.append(
            start_daemon(home, r.server, r.tree, r.url, configs, store={"url": database})
        )
    first = r.tree.head()
    replicas[0].wait_until(lambda: applied(replicas[0], WS) == first, what="the first apply")
    return replicas, first


def holder_and_other(replicas: list[Daemon], database: str) -> tuple[Daemon, Daemon]:
    holder = replicas[0].wait_until(lambda: claimed_by(database), what="a replica to claim")
    ids = [replica_id(d) for d in replicas]
    a = replicas[ids.index(holder)]
    return a, replicas[1 - ids.index(holder)]


def assert_never_back(d: Daemon, order: list[str]) -> None:
    applies = succeeded_revisions(d)
    positions = [order.index(rev) for rev in applies if rev in order]
    assert positions == sorted(positions), (
        f"an older commit was applied after a newer one: {applies}"
    )


def assert_fenced_and_at_y(a: Daemon, b: Daemon, r: Remote, order: list[str]) -> None:
    """A's late apply was fenced; B's workspace sits at Y, whole, and never went back."""
    b.wait_until(lambda: "sync fenced" in a.log(), 30, "A's late apply to be fenced")
    time.sleep(1.0)  # A's fenced run would have been written by now
    assert settled_at(b, order[-1])
    assert live_steps(b, WS) == tree_steps(r.tree)
    assert_never_back(b, order)


def test_a_replica_cut_off_from_the_database_cannot_apply_its_older_commit(
    tmp_path: Path, database: str
) -> None:
    """Replica A resolves X and its fetch is held; Y is pushed; A's lock session is ended;
    replica B takes the request over and applies Y. On the landed release A then applied X
    over Y (and overwrote B's run record); now A's late apply is fenced."""
    with remote(tmp_path) as r:
        replicas, first = two_replicas(tmp_path, r, database)
        try:
            x = push_x(r)
            hold = r.server.hold_next_fetch()
            try:
                sync_requested(replicas[0])
                hold.wait_arrived()
                a, b = holder_and_other(replicas, database)
                y = push_y(r)
                assert cut_lock_session(database) >= 1
                sync_requested(b)  # its NOTIFY wakes B at once: B takes the workspace over
                b.wait_until(lambda: applied(b, WS) == y, 30, "B to apply Y")
            finally:
                hold.release()
            assert_fenced_and_at_y(a, b, r, [first, x, y])
        finally:
            for d in replicas:
                stop_daemon(d)


def test_a_frozen_replica_loses_its_workspace_and_cannot_apply_when_it_wakes(
    tmp_path: Path, database: str
) -> None:
    """Replica A is frozen (SIGSTOP) with its fetch held: its session, and so its lock, lives
    on. On the landed release nobody took the workspace over for as long as A stayed frozen;
    now B takes it once A's heartbeat is stale, applies Y, and A's apply after SIGCONT is
    fenced."""
    with remote(tmp_path) as r:
        replicas, first = two_replicas(tmp_path, r, database)
        a = None
        try:
            x = push_x(r)
            hold = r.server.hold_next_fetch()
            try:
                sync_requested(replicas[0])
                hold.wait_arrived()
                a, b = holder_and_other(replicas, database)
                os.kill(a.process.pid, signal.SIGSTOP)
                frozen_at = time.monotonic()
                y = push_y(r)
                sync_requested(b)
                b.wait_until(lambda: applied(b, WS) == y, 40, "B to apply Y while A is frozen")
                took = time.monotonic() - frozen_at
            finally:
                hold.release()
                if a is not None:
                    os.kill(a.process.pid, signal.SIGCONT)
            assert_fenced_and_at_y(a, b, r, [first, x, y])
            print(f"\ntakeover after SIGSTOP: Y applied by B {took:.2f} s after A froze")
        finally:
            for d in replicas:
                stop_daemon(d)
