"""How long does a cold `syncd serve` take to apply 1,000 workspaces on 100 remotes, next to
`git clone --mirror` of the same 100 remotes with the same parallelism?

    python bench/cold_start.py [--quick]

Starts its own https git server on loopback with 100 remotes (one history of 100 steps;
--quick: 30 remotes, 300 workspaces), then, in turns:
- the baseline: `git clone --mirror` of every remote into a fresh folder, as many at once as
  syncd runs syncs (`server.max_parallel_syncs`, 4), timed from the first clone's start to
  the last one's end;
- syncd: the installed `syncd serve` in a fresh state directory with the workspaces dealt
  round-robin over the remotes (automatic, no polling), timed from the spawn to the moment
  its log shows the last workspace's startup sync succeeded (its `event="sync end" ... result=
  succeeded` lines, counted as they come; the API then confirms every workspace applied the
  head).
A cold start is what a new host or a wiped state directory goes through: every workspace
has its steps to create, and syncd has every mirror to make. Rounds alternate (3; --quick: 1)
and the median counts. Goal: syncd at most 1.5 times the clones' time.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    Figure,
    failed_row,
    figures_table,
    make_remotes,
    markdown_table,
    median,
    spread_workspaces,
    temp_git_server,
)
from daemon import ServeProcess

from syncd.demo.gitserver import GitServer

STEPS = 100
PARALLEL = 4  # server.max_parallel_syncs' default, which the bench's config leaves alone
GOAL_RATIO = 1.5
SIZES = {True: (30, 300), False: (100, 1_000)}  # --quick, full: (remotes, workspaces)


def clone_all(server: GitServer, urls: list[str], into: Path) -> float:
    """Seconds to `git clone --mirror` every URL, PARALLEL at once."""
    into.mkdir(parents=True)

    def clone(k_url: tuple[int, str]) -> None:
        k, url = k_url
        server.run_git("clone", "--mirror", "--quiet", url, str(into / f"m{k:03d}.git"))

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(clone, enumerate(urls)))
    seconds = time.perf_counter() - started
    shutil.rmtree(into, ignore_errors=True)
    return seconds


def succeeded_syncs(log: Path) -> int:
    lines = log.read_text(errors="replace").splitlines()
    # logfmt: event="sync end" ... result=succeeded
    return sum(1 for line in lines if 'event="sync end"' in line and "result=succeeded" in line)


def cold_start(
    directory: Path, workspaces: list[dict[str, Any]], server: GitServer, head: str
) -> float:
    """Seconds from spawning `syncd serve` to every workspace's startup sync succeeded."""
    count = len(workspaces)
    with ServeProcess.start(directory, workspaces, server) as daemon:
        deadline = time.monotonic() + 600
        while succeeded_syncs(daemon.log_path) < count:
            if daemon.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"syncd did not apply {count} workspaces:\n{daemon.log_tail()}")
            time.sleep(0.05)
        seconds = time.perf_counter() - daemon.spawned_at
        daemon.wait_all_applied(count, head, timeout=60)  # and the API agrees
    shutil.rmtree(directory, ignore_errors=True)
    return seconds


def measure(quick: bool, rounds: int) -> tuple[list[float], list[float]]:
    remotes, count = SIZES[quick]
    with temp_git_server() as (server, tmp):
        urls, tree = make_remotes(server, tmp, remotes, STEPS)
        workspaces = spread_workspaces(urls, count, server)
        clones, syncd = [], []
        for k in range(rounds):
            clones.append(clone_all(server, urls, tmp / f"clones{k}"))
            syncd.append(cold_start(tmp / f"syncd{k}", workspaces, server, tree.head()))
        return syncd, clones


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 remotes, 300 workspaces, once")
    args = parser.parse_args(argv)
    remotes, count = SIZES[args.quick]
    rounds = 1 if args.quick else 3
    scenario = (
        f"cold start: {count:,} workspaces on {remotes} remotes all applied"
        f" (baseline: `git clone --mirror` of the {remotes}, {PARALLEL} at once)"
    )
    print(
        f"# cold start ({'quick' if args.quick else 'full'}): {count:,} workspaces of {STEPS}"
        f" steps on {remotes} remotes, {rounds} round(s)\n"
    )
    try:
        syncd, clones = measure(args.quick, rounds)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(scenario, e))
        return 0
    print(figures_table([Figure(scenario, median(syncd), "s", median(clones), at_most=GOAL_RATIO)]))
    print(
        f"\nspawn to all applied: {', '.join(f'{s:.2f}' for s in syncd)} s; the clones:"
        f" {', '.join(f'{s:.2f}' for s in clones)} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
