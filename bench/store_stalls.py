"""`/healthz` while the store stops answering, against `/healthz` while it answers, in one run.

    python bench/store_stalls.py [--quick]

Starts its own https git server on loopback and one `syncd serve` with one automatic workspace
(webhooks only). Times 200 sequential `GET /healthz` (--quick: 60) with the store answering
(the baseline), then the same while matched webhooks keep coming (four senders) and:
- SQLite: another process holds the database's write lock (`BEGIN IMMEDIATE`);
- PostgreSQL, where one answers: a second daemon whose store is reached through a relay on
  loopback that is frozen (connections open, nothing through, as SIGSTOP or a silent network
  leaves them), then stopped (connections closed, new ones refused: the server is down).
Goal: p99 under 50 ms in each (an absolute goal; the ratio to the baseline is printed).
Always exits 0.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from common import (
    STEPS_PATH,
    Figure,
    failed_row,
    figures_table,
    fresh_database,
    make_repo,
    markdown_table,
    percentile,
    postgres_reachable,
    temp_git_server,
    workspace,
)
from daemon import WEBHOOK_SECRET, ServeProcess

from syncd.demo.webhook import github_push

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.freezer import Freezer  # the repository's test relay

GOAL_SECONDS = 0.05
SCENARIO = "/healthz p99"
WS = "stalls"


def healthz_times(daemon: ServeProcess, count: int) -> list[float]:
    times = []
    with httpx.Client(base_url=daemon.url, timeout=60) as c:
        for _ in range(count):
            started = time.perf_counter()
            answer = c.get("/healthz")
            times.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"/healthz answered {answer.status_code}")
            time.sleep(0.01)
    return times


@contextmanager
def webhooks_coming(daemon: ServeProcess, url: str, head: str) -> Iterator[None]:
    """Four senders of matched pushes (each a new delivery) until the block ends."""
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=daemon.url, timeout=60) as c:
            for _ in range(10_000):
                if stop.is_set():
                    return
                headers, body = github_push(
                    url,
                    head,
                    WEBHOOK_SECRET,
                    added=[f"{STEPS_PATH}/x.step.json"],
                    delivery=uuid.uuid4().hex,
                )
                try:
                    c.post("/hooks/github", content=body, headers=headers)
                except httpx.HTTPError:
                    time.sleep(0.1)

    senders = [threading.Thread(target=send, daemon=True) for _ in range(4)]
    for s in senders:
        s.start()
    try:
        yield
    finally:
        stop.set()
        for s in senders:
            s.join(90)


def p99_under(
    daemon: ServeProcess, url: str, head: str, count: int, stall: Callable[[], object]
) -> float:
    stall()
    time.sleep(0.5)  # the webhooks reach the stuck store first
    with webhooks_coming(daemon, url, head):
        time.sleep(0.5)
        return percentile(healthz_times(daemon, count), 99)


def measure_sqlite(count: int) -> tuple[float, float]:
    with temp_git_server() as (server, tmp):
        url, tree = make_repo(server, tmp, "stalls", 10)
        with ServeProcess.start(tmp / "d", [workspace(WS, url, server)], server) as d:
            d.wait_ready(60)
            d.wait_all_applied(1, tree.head(), timeout=60)
            baseline = percentile(healthz_times(d, count), 99)
            db = next((tmp / "d" / "state").glob("*.db"))
            lock = sqlite3.connect(db, isolation_level=None)
            try:
                locked = p99_under(
                    d, url, tree.head(), count, lambda: lock.execute("BEGIN IMMEDIATE")
                )
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            return baseline, locked


def measure_postgres(count: int) -> tuple[float, float, float]:
    with temp_git_server() as (server, tmp), fresh_database() as pg_url:
        url, tree = make_repo(server, tmp, "stalls", 10)
        host_port, _, name = pg_url.rpartition("/")
        relay = Freezer("127.0.0.1", int(host_port.rsplit(":", 1)[1]))
        relay.start()
        user = host_port.split("//", 1)[1].split("@", 1)[0]
        store = {"url": f"postgresql://{user}@127.0.0.1:{relay.port}/{name}"}
        try:
            ws = [workspace(WS, url, server)]
            with ServeProcess.start(tmp / "d", ws, server, store=store) as d:
                d.wait_ready(60)
                d.wait_all_applied(1, tree.head(), timeout=60)
                baseline = percentile(healthz_times(d, count), 99)
                frozen = p99_under(d, url, tree.head(), count, relay.freeze)
                down = p99_under(d, url, tree.head(), count, relay.stop)
                return baseline, frozen, down
        finally:
            relay.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 probes instead of 200")
    args = parser.parse_args(argv)
    count = 60 if args.quick else 200
    print(
        f"# /healthz while the store stalls ({'quick' if args.quick else 'full'}): {count}"
        " sequential probes each, matched webhooks coming meanwhile\n"
    )
    rows: list[Figure] = []
    try:
        baseline, locked = measure_sqlite(count)
        rows.append(
            Figure(
                f"{SCENARIO}, SQLite write-locked by another process",
                locked,
                "s",
                baseline,
                at_most=GOAL_SECONDS,
                absolute=True,
            )
        )
        if postgres_reachable():
            baseline, frozen, down = measure_postgres(count)
            for what, value in (("frozen", frozen), ("down", down)):
                rows.append(
                    Figure(
                        f"{SCENARIO}, PostgreSQL {what}",
                        value,
                        "s",
                        baseline,
                        at_most=GOAL_SECONDS,
                        absolute=True,
                    )
                )
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(SCENARIO, e))
        return 0
    print(figures_table(rows))
    print("\nbaseline: the same probes with the store answering, in the same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
