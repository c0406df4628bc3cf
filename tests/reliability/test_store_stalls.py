"""A store that stops answering never stops the daemon answering.

SQLite's write lock held by another process, and a PostgreSQL server that stops answering
(frozen behind a relay: connections open, nothing through), while webhooks and sync requests
keep coming. `/healthz` answers at once throughout; `/readyz` says the store is stuck within
seconds and says it is back within seconds; what was refused meanwhile was refused clearly
(503), and the workspace reaches the branch head once the store is back.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import postgres, write_step
from tests.support.configs import workspace
from tests.support.daemon import Daemon, applied, remote, report, start_daemon, stop_daemon, view
from tests.support.freezer import freezer
from tests.support.payloads import build

WS = "auto"
# Far above what an answer from a free event loop takes, far below the store's own waits (the
# SQLite busy timeout is 10 s; a frozen server never answers): a bound on behaviour, not speed.
PROMPT = 1.0


def healthz_times(d: Daemon, count: int) -> list[float]:
    """Seconds each of `count` /healthz calls took; each must answer 200."""
    times = []
    with httpx.Client(base_url=d.url, timeout=30) as c:
        for _ in range(count):
            started = time.perf_counter()
            r = c.get("/healthz")
            times.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            time.sleep(0.05)
    return times


def post_webhook(d: Daemon, repo_url: str, head: str, delivery: str) -> int:
    headers, body = build("github", repo_url, "main", ["export/steps/x.step.json"], head, delivery)
    return httpx.post(
        f"{d.url}/hooks/github", content=body, headers=headers, timeout=60
    ).status_code


def settled_at(d: Daemon, head: str) -> bool:
    v = view(d, WS)
    return bool(v["last_applied_revision"] == head and v["status"] == "Synced")


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0]


def test_a_locked_sqlite_store_never_stops_the_daemon_answering(tmp_path: Path) -> None:
    """On the landed release each matched webhook held the event loop for the 10 s busy
    timeout while another process held SQLite's write lock: /healthz took 10 to 20 s."""
    with remote(tmp_path) as r:
        d = start_daemon(tmp_path, r.server, r.tree, r.url, [workspace(WS, r.url, r.server)])
        try:
            first = r.tree.head()
            d.wait_until(lambda: applied(d, WS) == first, what="the first apply")
            write_step(r.tree, "step 0", "changed()")
            head = r.commit_and_push("a change")
            db = next((tmp_path / "state").glob("*.db"))
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                with ThreadPoolExecutor(4) as pool:
                    hooks = [
                        pool.submit(post_webhook, d, r.url, head, f"locked-{i}") for i in range(4)
                    ]
                    times = healthz_times(d, 60)
                    statuses = [h.result() for h in hooks]
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            report("healthz while SQLite is locked", p99_ms=round(p99(times) * 1000, 1))
            assert max(times) < PROMPT, times
            assert set(statuses) <= {200, 202, 503}, statuses
            d.wait_until(lambda: settled_at(d, head), 90, "the change applied after the lock")
        finally:
            stop_daemon(d)


@pytest.fixture
def database() -> Iterator[str]:
    postgres.require()
    with postgres.fresh_database() as url:
        yield url


def test_a_frozen_database_never_stops_a_replica_answering(tmp_path: Path, database: str) -> None:
    """On the landed release a replica that took a request while PostgreSQL was frozen stopped
    answering anything, /healthz included, for as long as it stayed frozen; after it came back
    /readyz could stay 503 ("the last write failed") until a sync happened to apply."""
    parts = urlsplit(database)
    with remote(tmp_path) as r, freezer(parts.hostname or "127.0.0.1", parts.port or 5432) as fz:
        url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{fz.port}").geturl()
        d = start_daemon(
            tmp_path, r.server, r.tree, r.url, [workspace(WS, r.url, r.server)], store={"url": url}
        )
        try:
            first = r.tree.head()
            d.wait_until(lambda: applied(d, WS) == first, what="the first apply")
            write_step(r.tree, "step 0", "changed()")
            head = r.commit_and_push("a change")
            fz.freeze()
            frozen_at = time.monotonic()

            def readyz() -> int:
                with httpx.Client(base_url=d.url, timeout=30) as c:
                    return c.get("/readyz").status_code

            d.wait_until(lambda: readyz() == 503, 20, "/readyz to say the store is stuck")
            not_ready_after = time.monotonic() - frozen_at
            with ThreadPoolExecutor(4) as pool:
                asked = [
                    pool.submit(lambda: d.client().post(f"/api/v1/workspaces/{WS}/sync"))
                    for _ in range(3)
                ]
                hooks = [pool.submit(post_webhook, d, r.url, head, f"frozen-{i}") for i in range(2)]
                times = healthz_times(d, 60)
                answers = [a.result().status_code for a in asked]
                statuses = [h.result() for h in hooks]
            fz.thaw()
            thawed_at = time.monotonic()
            d.wait_until(lambda: readyz() == 200, 30, "/readyz to say the store is back")
            ready_after = time.monotonic() - thawed_at
            report(
                "healthz while PostgreSQL is frozen",
                p99_ms=round(p99(times) * 1000, 1),
                readyz_503_within_s=round(not_ready_after, 1),
                readyz_200_after_thaw_s=round(ready_after, 1),
            )
            assert max(times) < PROMPT, times
            assert set(answers) <= {202, 503}, answers
            assert set(statuses) <= {202, 503}, statuses
            with d.client() as c:
                assert c.post(f"/api/v1/workspaces/{WS}/sync").status_code == 202
            d.wait_until(lambda: settled_at(d, head), 60, "the change applied after the thaw")
        finally:
            fz.thaw()
            stop_daemon(d)
