"""Polling against the real daemon: one ls-remote per remote and cycle, whatever the number of
workspaces on it; a pushed commit arrives without any webhook; nothing is fetched while idle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import GitServer, WorkTree, workspace, write_step
from tests.support.daemon import Daemon, start_daemon

INTERVAL = 1.0


@pytest.fixture
def polled(tmp_path: Path) -> Iterator[tuple[Daemon, GitServer]]:
    # A server of its own, so its request counters see this daemon alone.
    with GitServer(tmp_path / "git") as server:
        url = server.create_repo("polled")
        tree = WorkTree(server, "polled", tmp_path / "work")
        write_step(tree, "first", "one()")
        tree.commit("first")
        tree.push()
        poll = {"poll_interval": f"{INTERVAL}s"}
        workspaces = [
            workspace("a1", url, server, "automatic", **poll),
            workspace("a2", url, server, "automatic", **poll),
            workspace("m1", url, server, "manual", **poll),
        ]
        d = start_daemon(tmp_path, server, tree, url, workspaces)
        try:
            yield d, server
        finally:
            if d.process.poll() is None:
                d.process.kill()
                d.process.wait(10)


def applied(d: Daemon, ws: str) -> str | None:
    with d.client() as c:
        revision: str | None = c.get(f"/api/v1/workspaces/{ws}").json()["last_applied_revision"]
        return revision


def test_a_push_arrives_by_polling_with_one_ls_remote_per_cycle(
    polled: tuple[Daemon, GitServer],
) -> None:
    d, server = polled
    first = d.tree.head()
    d.wait_until(
        lambda: applied(d, "a1") == first and applied(d, "a2") == first, what="the startup sync"
    )
    # Idle: the branch does not move, so polls ls-remote once per cycle and fetch nothing.
    time.sleep(INTERVAL * 1.5)  # let the startup runs' own traffic pass
    before = server.snapshot()
    window = 5 * INTERVAL
    time.sleep(window)
    idle = server.snapshot() - before
    cycles = window / (INTERVAL * 0.9) + 1
    assert idle["upload_pack"] == 0, idle
    # libgit2 may first ask without credentials (answered 401), then with them: at most two
    # requests per ls-remote. Polling each workspace alone would need three times as many.
    assert 1 <= idle["info_refs"] <= 2 * cycles, idle
    per_cycle = idle["info_refs"] / (window / INTERVAL)
    assert per_cycle < 3, f"{per_cycle:.1f} ls-remote requests a cycle for 3 workspaces"
    # A push arrives without a webhook, and is fetched once for all three workspaces.
    write_step(d.tree, "second", "two()")
    second = d.tree.commit("second")
    d.tree.push()
    before = server.snapshot()
    d.wait_until(
        lambda: applied(d, "a1") == second and applied(d, "a2") == second,
        timeout=15,
        what="polling to bring the push",
    )

    def manual_seen() -> str | None:
        with d.client() as c:
            revision: str | None = c.get("/api/v1/workspaces/m1").json()["last_seen_revision"]
            return revision

    d.wait_until(lambda: manual_seen() == second, what="the manual workspace to see the push")
    assert applied(d, "m1") is None  # manual: seen and planned, never applied by a poll
    fetched = server.snapshot() - before
    assert 1 <= fetched["upload_pack"] <= 2, fetched  # one shared mirror, one fetch
    runs = d.client().get("/api/v1/workspaces/a1/runs").json()["runs"]
    assert runs[0]["trigger"] == "poll" and runs[0]["revision"] == second
