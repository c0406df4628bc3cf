"""Push to applied with three replicas on PostgreSQL, against `git fetch` and SQLite, in one run.

    python bench/pg_latency.py [--quick]

Starts its own https git server on loopback, a repository of 100 steps, a mirror clone of it
(`git clone --mirror`, the baseline's), and four `syncd serve` daemons, each configured with
the same automatic workspace on that repository (webhooks only): one on the default SQLite
store, and three replicas on one fresh PostgreSQL database (created for the run as
syncd_bench_<random> and dropped after it; the server is $SYNCD_BENCH_PG, default
postgresql://postgres@127.0.0.1:5432). Then, 50 times (--quick: 10), after 2 untimed warm-up
pushes: change one step, commit and push (untimed), and time three things for the commit,
in an order that rotates from push to push:

- the replicas: from sending GitHub's signed push webhook to one replica (each in turn) to
  the first `GET /api/v1/workspaces/{id}` on that replica that shows the commit applied (as
  bench/webhook_latency.py times it). The request is a row in the database; whichever replica
  claims it runs the sync;
- the SQLite daemon, the same way;
- `git fetch` by git's CLI into the mirror clone, which brings the same commit.

Goals: p50 and p99 of the replicas each at most 1.2 times those of `git fetch`, and at most
1.5 times the SQLite daemon's. Where no PostgreSQL answers, prints one row saying so. Always
exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from common import (
    STEPS_PATH,
    Figure,
    change_step,
    failed_row,
    figures_table,
    fresh_database,
    make_repo,
    markdown_table,
    percentile,
    postgres_reachable,
    postgres_skipped,
    spread,
    step_name,
    temp_git_server,
    workspace,
)
from daemon import ServeProcess
from webhook_latency import time_git_fetch, time_webhook

from syncd.core.steps import step_file_name

STEPS = 100
WARMUP = 2
REPLICAS = 3
GOAL_VS_FETCH = 1.2
GOAL_VS_SQLITE = 1.5
WS = "latency"  # the workspace id time_webhook expects
SCENARIO = f"push to applied on PostgreSQL, {REPLICAS} replicas"


@dataclass(frozen=True)
class Measured:
    replicas: list[float]  # seconds, webhook to applied, a push each
    sqlite: list[float]
    fetches: list[float]  # seconds, `git fetch` of the same commits


def measure(pushes: int) -> Measured:
    with (
        temp_git_server() as (server, tmp),
        fresh_database() as pg_url,
        contextlib.ExitStack() as daemons,
    ):
        url, tree = make_repo(server, tmp, "latency", STEPS)
        mirror = tmp / "mirror.git"
        server.run_git("clone", "--quiet", "--mirror", url, str(mirror))
        ws = workspace(WS, url, server)  # automatic, poll 0s: webhooks only
        lite = daemons.enter_context(ServeProcess.start(tmp / "sqlite", [ws], server))
        replicas = [
            daemons.enter_context(
                ServeProcess.start(tmp / f"replica{i}", [ws], server, store={"url": pg_url})
            )
            for i in range(REPLICAS)
        ]
        for daemon in (lite, *replicas):
            daemon.wait_ready(60)
        for daemon in (lite, replicas[0]):  # the replicas share one store
            daemon.wait_all_applied(1, tree.head(), timeout=60)
        lite_client = lite.client()
        clients = [r.client() for r in replicas]
        times: tuple[list[float], list[float], list[float]] = ([], [], [])
        for k in range(WARMUP + pushes):
            i = (k * 37) % STEPS  # a different step each time
            before = tree.head()
            sha = change_step(tree, i, version=k + 1)  # commit and push: untimed
            path = f"{STEPS_PATH}/{step_file_name(step_name(i))}"
            r = k % REPLICAS
            timers: list[Callable[[], float]] = [
                partial(time_webhook, replicas[r], clients[r], url, path, sha, before),
                partial(time_webhook, lite, lite_client, url, path, sha, before),
                partial(time_git_fetch, server, mirror, sha),
            ]
            for j in range(len(timers)):
                which = (j + k) % len(timers)  # who goes first rotates
                took = timers[which]()
                if k >= WARMUP:
                    times[which].append(took)
        return Measured(*times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 pushes instead of 50")
    args = parser.parse_args(argv)
    pushes = 10 if args.quick else 50
    print(
        f"# push to applied, PostgreSQL with {REPLICAS} replicas vs `git fetch` and SQLite"
        f" ({'quick' if args.quick else 'full'}): {pushes} pushes to a repository of {STEPS}"
        " steps, the same commit to each\n"
    )
    if not postgres_reachable():
        print(postgres_skipped(SCENARIO))
        return 0
    try:
        m = measure(pushes)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(SCENARIO, e))
        return 0
    rows = [
        Figure(
            f"{SCENARIO}: webhook to applied, p{q} of {pushes} (baseline: `git fetch`)",
            percentile(m.replicas, q),
            "s",
            percentile(m.fetches, q),
            at_most=GOAL_VS_FETCH,
        )
        for q in (50, 99)
    ] + [
        Figure(
            f"{SCENARIO}, p{q} of {pushes} (baseline: SQLite)",
            percentile(m.replicas, q),
            "s",
            percentile(m.sqlite, q),
            at_most=GOAL_VS_SQLITE,
        )
        for q in (50, 99)
    ]
    print(figures_table(rows))
    print(
        f"\nmin/median/max: {REPLICAS} replicas on PostgreSQL {spread(m.replicas)}, SQLite"
        f" {spread(m.sqlite)}, `git fetch` {spread(m.fetches)}; the webhook goes to each replica"
        " in turn; every daemon, the git server and PostgreSQL on one machine, over loopback"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
