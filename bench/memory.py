"""How much memory do 1,000 workspaces of 100 steps each cost the daemon?

    python bench/memory.py [--quick]

Starts its own https git server on loopback with 100 remotes (one history of 100 steps) and
the installed `syncd serve`, first with no workspace (the baseline: RSS once READY and idle),
then with 1,000 automatic workspaces dealt over the remotes (poll 30 s). The figure is VmRSS
from /proc/PID/status once every workspace has applied the head, so the store holds 100,000
live steps, and the daemon has been idle for a moment. --quick: 200 workspaces on 20 remotes;
its extra memory is also scaled to 1,000 workspaces (linearly, which overstates: part of it
is fixed), and the goal is checked on that. Goal: at most 150 MB more than the idle daemon.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
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

STEPS = 100
GOAL_EXTRA_MB = 150.0
GOAL_WORKSPACES = 1_000
SETTLE = 2.0  # seconds idle before reading RSS
MB = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    idle: float  # bytes
    loaded: float  # bytes
    peak: float  # bytes, VmHWM of the loaded daemon
    startup: float  # seconds until every workspace had applied the head


def measure(workspaces: int, remotes: int) -> Measured:
    with temp_git_server() as (server, tmp):
        urls, tree = make_remotes(server, tmp, remotes, STEPS)
        head = tree.head()
        with ServeProcess.start(tmp / "idle", [], server) as idle:
            idle.wait_ready(60)
            time.sleep(SETTLE)
            idle_rss = idle.rss_bytes()
        config = spread_workspaces(urls, workspaces, server, poll_interval="30s")
        with ServeProcess.start(tmp / "loaded", config, server) as daemon:
            daemon.wait_ready(60)
            startup = daemon.wait_all_applied(workspaces, head, timeout=900)
            time.sleep(SETTLE)
            return Measured(idle_rss, daemon.rss_bytes(), daemon.rss_bytes("VmHWM"), startup)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 workspaces on 20 remotes")
    args = parser.parse_args(argv)
    workspaces, remotes = (200, 20) if args.quick else (GOAL_WORKSPACES, 100)
    label = f"{workspaces:,} workspaces x {STEPS} steps"
    print(
        f"# memory ({'quick' if args.quick else 'full'}): {label} on {remotes} remotes vs"
        " the idle daemon with none\n"
    )
    try:
        m = measure(workspaces, remotes)
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row(f"memory: RSS, {label}", e))
        return 0
    extra = (m.loaded - m.idle) / MB
    rows = [
        Figure(f"memory: RSS, {label} (baseline: idle, none)", m.loaded / MB, "MB", m.idle / MB)
    ]
    if workspaces == GOAL_WORKSPACES:
        rows.append(
            Figure(
                "memory: extra RSS for those workspaces",
                extra,
                "MB",
                at_most=GOAL_EXTRA_MB,
                absolute=True,
            )
        )
    else:
        rows.append(Figure("memory: extra RSS for those workspaces", extra, "MB"))
        rows.append(
            Figure(
                f"memory: extra RSS scaled to {GOAL_WORKSPACES:,} workspaces (linear)",
                extra * GOAL_WORKSPACES / workspaces,
                "MB",
                at_most=GOAL_EXTRA_MB,
                absolute=True,
            )
        )
    print(figures_table(rows))
    print(
        f"\npeak RSS (VmHWM) during the startup syncs {m.peak / MB:.1f} MB; every workspace had"
        f" applied the head {m.startup:.1f} s after READY"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
