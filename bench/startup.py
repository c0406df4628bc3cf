"""How much longer does `syncd serve` take to be READY with 1,000 workspaces than with none?

    python bench/startup.py [--quick]

Starts its own https git server on loopback with 100 remotes (one history of 100 steps), then
starts the installed `syncd serve` again and again, each time in a fresh state directory, and
times it from the spawn to the READY=1 datagram on $NOTIFY_SOCKET (as systemd sees it): with
1,000 workspaces on those remotes (poll 30 s, automatic), and with none. Runs alternate
between the two configs; the median of each counts (5 each; --quick: 3). READY comes once
the socket listens, after the store is open and every workspace's state is published; the
startup comparison then goes on in the background (bench/cold_start.py times it). Goal: at
most 2 s more than none. For information: how long each daemon with the workspaces takes from
SIGTERM to its exit, sent as soon as it is READY, when the startup comparison has barely begun.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from common import (
    Figure,
    failed_row,
    figures_table,
    make_remotes,
    markdown_table,
    median,
    spread,
    spread_workspaces,
    temp_git_server,
)
from daemon import ServeProcess

from syncd.demo.gitserver import GitServer

WORKSPACES = 1_000
REMOTES = 100
STEPS = 100
GOAL_EXTRA_SECONDS = 2.0


def time_ready(
    directory: Path, workspaces: list[dict[str, Any]], server: GitServer
) -> tuple[float, float]:
    """(spawn to READY=1, SIGTERM to exit) in seconds."""
    daemon = ServeProcess.start(directory, workspaces, server)
    try:
        ready = daemon.wait_ready(60)
    finally:
        started = time.perf_counter()
        daemon.stop()
    return ready, time.perf_counter() - started


def measure(repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds to READY with the workspaces and with none; seconds to stop with them."""
    with temp_git_server() as (server, tmp):
        urls, _tree = make_remotes(server, tmp, REMOTES, STEPS)
        many = spread_workspaces(urls, WORKSPACES, server, poll_interval="30s")
        with_many, with_none, stops = [], [], []
        for k in range(repeats):
            with_none.append(time_ready(tmp / f"none{k}", [], server)[0])
            ready, stop = time_ready(tmp / f"many{k}", many, server)
            with_many.append(ready)
            stops.append(stop)
        return with_many, with_none, stops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 starts of each instead of 5")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 5
    scenario = f"startup: `serve` to READY, {WORKSPACES:,} workspaces (baseline: none)"
    print(
        f"# startup ({'quick' if args.quick else 'full'}): {WORKSPACES:,} workspaces on"
        f" {REMOTES} remotes vs none, {repeats} starts each\n"
    )
    try:
        with_many, with_none, stops = measure(repeats)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(scenario, e))
        return 0
    many, none = median(with_many), median(with_none)
    rows = [
        Figure(scenario, many, "s", none),
        Figure(
            "startup: extra time to READY for those workspaces",
            many - none,
            "s",
            at_most=GOAL_EXTRA_SECONDS,
            absolute=True,
        ),
        Figure(
            "stop: SIGTERM to exit just after READY, startup comparison of"
            f" {WORKSPACES:,} under way (for information)",
            median(stops),
            "s",
        ),
    ]
    print(figures_table(rows))
    print(
        f"\nspawn to READY=1 min/median/max: {WORKSPACES:,} workspaces {spread(with_many)},"
        f" none {spread(with_none)}; SIGTERM to exit {spread(stops)} (the contract allows"
        " 10 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
