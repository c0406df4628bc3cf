"""Push to applied with the PostgreSQL store, against the same with SQLite, in one run.

    python bench/pg_latency.py [--quick]

Starts its own https git server on loopback, a repository of 100 steps, and two `syncd serve`
daemons side by side, each with one automatic workspace on that repository (webhooks only):
one on the default SQLite store, one on a fresh PostgreSQL database (created for the run as
syncd_bench_<random> and dropped after it; the server is $SYNCD_BENCH_PG, default
postgresql://postgres@127.0.0.1:5432). Then, 40 times (--quick: 10), after 2 untimed warm-up
pushes: change one step, commit and push (untimed), and time, for each daemon, from sending
GitHub's signed push webhook to the first `GET /api/v1/workspaces/{id}` that shows the commit
applied (as bench/webhook_latency.py times it). Both daemons apply the same commit; which one
goes first alternates. Goal: p50 and p99 on PostgreSQL each at most 1.5 times SQLite's.
Where no PostgreSQL answers, prints one row saying so. Always exits 0.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import dataclass

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
from webhook_latency import time_webhook

from syncd.core.steps import step_file_name

STEPS = 100
WARMUP = 2
GOAL_RATIO = 1.5
WS = "latency"  # the workspace id time_webhook expects
SCENARIO = "push to applied on PostgreSQL (baseline: SQLite)"


@dataclass(frozen=True)
class Measured:
    sqlite: list[float]  # seconds, webhook to applied, a push each
    postgres: list[float]


def measure(pushes: int) -> Measured:
    with temp_git_server() as (server, tmp), fresh_database() as pg_url:
        url, tree = make_repo(server, tmp, "latency", STEPS)
        ws = workspace(WS, url, server)  # automatic, poll 0s: webhooks only
        with (
            ServeProcess.start(tmp / "sqlite", [ws], server) as lite,
            ServeProcess.start(tmp / "postgres", [ws], server, store={"url": pg_url}) as pg,
        ):
            for daemon in (lite, pg):
                daemon.wait_ready(60)
                daemon.wait_all_applied(1, tree.head(), timeout=60)
            daemons = (lite, pg)
            clients = [d.client() for d in daemons]
            times: tuple[list[float], list[float]] = ([], [])
            for k in range(WARMUP + pushes):
                i = (k * 37) % STEPS  # a different step each time
                before = tree.head()
                sha = change_step(tree, i, version=k + 1)  # commit and push: untimed
                path = f"{STEPS_PATH}/{step_file_name(step_name(i))}"
                for d in (1, 0) if k % 2 else (0, 1):
                    took = time_webhook(daemons[d], clients[d], url, path, sha, before)
                    if k >= WARMUP:
                        times[d].append(took)
        return Measured(*times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 pushes instead of 40")
    args = parser.parse_args(argv)
    pushes = 10 if args.quick else 40
    print(
        f"# push to applied, PostgreSQL vs SQLite ({'quick' if args.quick else 'full'}):"
        f" {pushes} pushes to a repository of {STEPS} steps, the same commit to both\n"
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
            f"{SCENARIO}, p{q} of {pushes}",
            percentile(m.postgres, q),
            "s",
            percentile(m.sqlite, q),
            at_most=GOAL_RATIO,
        )
        for q in (50, 99)
    ]
    print(figures_table(rows))
    print(
        f"\nmin/median/max: PostgreSQL {spread(m.postgres)}, SQLite {spread(m.sqlite)}; both"
        " daemons on one machine with the git server and PostgreSQL, over loopback"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
