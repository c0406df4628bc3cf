"""What does polling cost with 1,000 workspaces on 100 remotes when nothing changes?

    python bench/polling_scale.py [--quick]

Starts its own https git server on loopback with 100 remotes (one history of 100 steps) and
the installed `syncd serve` with 1,000 automatic workspaces dealt over them, polling every
30 s. Once every workspace has applied the head (the startup syncs) and one more interval has
passed, it counts the git server's requests and the daemon's CPU (utime + stime from
/proc/PID/stat) over 3 poll intervals (90 s). --quick: 200 workspaces on 20 remotes, polling
every 2 s, over 5 intervals; the CPU of those intervals is charged to 30 s ones (CPU a cycle
/ 30 s), so both modes give the share of a core at a 30 s poll.

Figures: ls-remotes a cycle (authenticated GET info/refs, timed from the git server's request
log: for each remote, its ls-remotes over the poll cycles between its first and last one in
the window, summed over the remotes, so neither the window's edges nor the poll jitter
count; libgit2 first asks without credentials and is answered 401, so the HTTP count is
twice that, shown below the table), against the baseline of each workspace polling alone
(one ls-remote per workspace a cycle); and the share of a core. Goals: at most 100
ls-remotes a cycle for 100 remotes (--quick: 20 for 20); at most 5 % of a core. Nothing may
be fetched (no upload-pack) while nothing changes.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass

from common import (
    Figure,
    failed_row,
    figures_table,
    make_remotes,
    markdown_table,
    spread_workspaces,
    temp_git_server,
)
from daemon import ServeProcess

from syncd.ops.logs import FIELDS

STEPS = 100
GOAL_REQUESTS_A_CYCLE = 100
GOAL_CPU_PERCENT = 5.0
REAL_INTERVAL = 30.0


@dataclass(frozen=True)
class Setup:
    workspaces: int
    remotes: int
    interval: float  # seconds
    cycles: int


class LsRemoteLog(logging.Handler):
    """When each remote answered an authenticated GET info/refs (one ls-remote), from the git
    server's own request log lines."""

    LINE = re.compile(r'"GET /(?P<repo>[^ ]+?)\.git/info/refs\?service=git-upload-pack [^"]*" 200 ')

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.times: dict[str, list[float]] = defaultdict(list)
        self._lock_times = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        # The server logs each request as an event whose `line` field is the request line.
        line = getattr(record, FIELDS, {}).get("line") or record.getMessage()
        m = self.LINE.search(str(line))
        if m:
            with self._lock_times:
                self.times[m.group("repo")].append(time.monotonic())

    def window(self, start: float, end: float) -> dict[str, list[float]]:
        with self._lock_times:
            return {r: [t for t in ts if start <= t <= end] for r, ts in self.times.items()}


def requests_a_cycle(
    times: dict[str, list[float]], interval: float, remotes: int
) -> tuple[float, int]:
    """The ls-remotes a poll cycle brings, summed over the remotes; and how many remotes had
    fewer than two in the window (left out).

    For each remote: the ls-remotes after its first one in the window, over the cycles that
    passed between its first and last one (that time in poll intervals, rounded: each poll
    waits 0.9 to 1.1 intervals, so a few cycles never round to a wrong count). One ls-remote a
    cycle per remote gives exactly 1 whatever the window's edges and the jitter; polling each
    workspace alone would give the number of workspaces on the remote."""
    total, counted = 0.0, 0
    for ts in times.values():
        if len(ts) >= 2:
            cycles = max(1, round((ts[-1] - ts[0]) / interval))
            total += (len(ts) - 1) / cycles
            counted += 1
    return total, remotes - counted


@dataclass(frozen=True)
class Measured:
    a_cycle: float  # ls-remotes a nominal cycle, summed over remotes
    silent: int  # remotes with fewer than two ls-remotes in the window
    ls_remotes: int  # authenticated info/refs requests in the window
    http: int  # every request, with the 401 challenges
    upload_packs: int
    cpu: float  # daemon CPU seconds in the window
    window: float  # seconds
    startup: float  # seconds until every workspace had applied the head


def measure(setup: Setup) -> Measured:
    recorder = LsRemoteLog()
    git_log = logging.getLogger("syncd.demo.gitserver")
    git_log.addHandler(recorder)
    git_log.setLevel(logging.DEBUG)
    try:
        return measure_logged(setup, recorder)
    finally:
        git_log.removeHandler(recorder)


def measure_logged(setup: Setup, recorder: LsRemoteLog) -> Measured:
    with temp_git_server() as (server, tmp):
        urls, tree = make_remotes(server, tmp, setup.remotes, STEPS)
        head = tree.head()
        workspaces = spread_workspaces(
            urls, setup.workspaces, server, poll_interval=f"{setup.interval:g}s"
        )
        with ServeProcess.start(tmp / "syncd", workspaces, server) as daemon:
            daemon.wait_ready(60)
            startup = daemon.wait_all_applied(setup.workspaces, head, timeout=600)
            time.sleep(setup.interval * 1.2)  # the startup runs' traffic, and a first poll
            before, cpu_before, t0 = server.snapshot(), daemon.cpu_seconds(), time.monotonic()
            time.sleep(setup.interval * setup.cycles)
            after, cpu_after, t1 = server.snapshot(), daemon.cpu_seconds(), time.monotonic()
        diff = after - before
        a_cycle, silent = requests_a_cycle(recorder.window(t0, t1), setup.interval, setup.remotes)
        return Measured(
            a_cycle=a_cycle,
            silent=silent,
            ls_remotes=diff["info_refs"] - diff["unauthorized"],
            http=diff["total"],
            upload_packs=diff["upload_pack"],
            cpu=cpu_after - cpu_before,
            window=t1 - t0,
            startup=startup,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="200 workspaces on 20 remotes, 2 s polls"
    )
    args = parser.parse_args(argv)
    setup = Setup(200, 20, 2.0, 5) if args.quick else Setup(1_000, 100, REAL_INTERVAL, 3)
    print(
        f"# polling at scale ({'quick' if args.quick else 'full'}): {setup.workspaces:,}"
        f" workspaces on {setup.remotes} remotes, poll {setup.interval:g} s, measured over"
        f" {setup.cycles} intervals, nothing changes\n"
    )
    label = f"{setup.workspaces:,} workspaces on {setup.remotes} remotes"
    try:
        m = measure(setup)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(f"polling: {label}", e))
        return 0
    cycles = m.window / setup.interval
    cpu_a_cycle = m.cpu / cycles
    # The share of a core at a 30 s poll: the CPU of one cycle spread over 30 s.
    cpu_percent = 100 * cpu_a_cycle / REAL_INTERVAL
    rows = [
        Figure(
            f"polling: ls-remotes a cycle, {label} (baseline: each workspace alone)",
            m.a_cycle,
            "req/cycle",
            baseline=float(setup.workspaces),
            at_most=GOAL_REQUESTS_A_CYCLE * setup.remotes / 100,
            absolute=True,
        ),
        Figure(
            f"polling: daemon CPU at a 30 s poll, {label}",
            cpu_percent,
            "%",
            at_most=GOAL_CPU_PERCENT,
            absolute=True,
        ),
    ]
    print(figures_table(rows))
    scaled = " (the goal scaled to the remotes: 100 for 100)" if setup.remotes != 100 else ""
    print(
        f"\nwindow {m.window:.1f} s = {cycles:.1f} cycles{scaled}: {m.ls_remotes} ls-remotes,"
        f" {m.http} HTTP requests with the 401 challenges ({m.http / cycles:.1f} a cycle),"
        f" {m.upload_packs} fetches (upload-pack); {m.silent} remotes polled less than twice;"
        f" daemon CPU {m.cpu:.2f} s"
        f" ({1000 * cpu_a_cycle:.0f} ms a cycle); startup syncs of every workspace took"
        f" {m.startup:.1f} s after READY"
    )
    if m.upload_packs:
        print(f"**unexpected: {m.upload_packs} fetches while nothing changed**")
    return 0


if __name__ == "__main__":
    sys.exit(main())
