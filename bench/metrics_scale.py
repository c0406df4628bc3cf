"""`/metrics` at 10,000 workspaces: how big, how long to render, and does `/healthz` wait?

    python bench/metrics_scale.py [--quick]

Two parts, in one run:
- in-process, the same 10,000 workspaces (--quick: 1,000) in syncd's metrics and in the
  contract's first layout (every series with a workspace label: runs by trigger and result from
  0, status and health with a 0 for each other value, a histogram per workspace), that one made
  with the Prometheus client's own Gauge, Counter and Histogram and its renderer: the bytes and
  the seconds to render each, median of 5;
- the installed `syncd serve` with those workspaces (manual, dealt over 10 remotes, no polling):
  `GET /metrics` 5 times, its size and time, while a second client asks `/healthz` in a loop;
  that client's slowest answer during the scrapes, against its slowest answer with no scrape
  (the same number of requests; the startup syncs of the 10,000 go on through both).
Bars (issue #27): at 10,000 workspaces the page is at most 5 MB and renders within 300 ms, and
`/healthz` answers within 50 ms while it renders.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import httpx
from common import Figure, failed_row, figures_table, make_remotes, temp_git_server, workspace
from daemon import ServeProcess
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from syncd.core.model import Health, RunResult, Status, SyncState, Trigger
from syncd.ops.metrics import DURATION_BUCKETS, Metrics

REMOTES = 10
SIZES = {True: 1_000, False: 10_000}
MAX_MB, MAX_RENDER, MAX_HEALTHZ = 5.0, 0.3, 0.05


def ws_ids(count: int) -> list[str]:
    return [f"ws{k:05d}" for k in range(count)]


def syncd_layout(count: int) -> Callable[[], bytes]:
    m = Metrics()
    for ws in ws_ids(count):
        m.restore(ws, SyncState(ws, Status.SYNCED), last_success=1.7e9)
        m.set_health(ws, Health.HEALTHY)
    return m.render


def contract_layout(count: int) -> Callable[[], bytes]:
    """The first layout, as the client library's own metrics with a workspace label on each."""
    r = CollectorRegistry()
    runs = Counter("syncd_sync_runs", "", ["workspace", "trigger", "result"], registry=r)
    duration = Histogram(
        "syncd_sync_duration_seconds", "", ["workspace"], buckets=DURATION_BUCKETS, registry=r
    )
    steps = Counter("syncd_steps_changed", "", ["workspace", "action"], registry=r)
    status = Gauge("syncd_workspace_status", "", ["workspace", "status"], registry=r)
    health = Gauge("syncd_workspace_health", "", ["workspace", "health"], registry=r)
    drift = Gauge("syncd_workspace_drift_steps", "", ["workspace"], registry=r)
    last = Gauge("syncd_workspace_last_success_timestamp_seconds", "", ["workspace"], registry=r)
    blocked = Gauge("syncd_workspace_blocked", "", ["workspace", "reason"], registry=r)
    for ws in ws_ids(count):
        for trigger in Trigger:
            for result in RunResult:
                runs.labels(ws, trigger.value, result.value)
        duration.labels(ws)
        for action in ("create", "update", "delete"):
            steps.labels(ws, action)
        for s in Status:
            status.labels(ws, s.value).set(1 if s is Status.SYNCED else 0)
        for h in Health:
            health.labels(ws, h.value).set(1 if h is Health.HEALTHY else 0)
        drift.labels(ws).set(0)
        last.labels(ws).set(1.7e9)
        for reason in ("window", "promotion"):
            blocked.labels(ws, reason).set(0)
    return lambda: generate_latest(r)


def render_figures(render: Callable[[], bytes], repeats: int = 5) -> tuple[float, float]:
    """(megabytes, median seconds to render)."""
    times, size = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        size = len(render())
        times.append(time.perf_counter() - started)
    return size / 1e6, statistics.median(times)


class Prober(threading.Thread):
    """Asks `/healthz` in a loop and keeps each answer's seconds, until stopped (or 120 s)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.times, self.stop = url, list[float](), threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set() and time.monotonic() < deadline:
                started = time.perf_counter()
                c.get(f"{self.url}/healthz").raise_for_status()
                self.times.append(time.perf_counter() - started)
                time.sleep(0.005)


def daemon_figures(count: int, tmp: Path) -> tuple[float, float, float, float]:
    """(MB, median scrape seconds, slowest /healthz during scrapes, slowest without)."""
    with temp_git_server() as (server, gtmp):
        urls, _tree = make_remotes(server, gtmp, REMOTES, 10)
        spaces = []
        for k, ws_id in enumerate(ws_ids(count)):
            ws = workspace(ws_id, urls[k % REMOTES], server)
            ws["mode"] = "manual"
            spaces.append(ws)
        with ServeProcess.start(tmp / "daemon", spaces, server) as daemon:
            daemon.wait_ready(300)
            with httpx.Client(timeout=60) as c:
                c.get(f"{daemon.url}/metrics").raise_for_status()  # warm: every row's text made
                quiet = Prober(daemon.url)
                quiet.start()
                time.sleep(2)
                quiet.stop.set()
                quiet.join()
                busy = Prober(daemon.url)
                busy.start()
                times, size = [], 0
                for _ in range(5):
                    started = time.perf_counter()
                    page = c.get(f"{daemon.url}/metrics")
                    times.append(time.perf_counter() - started)
                    size = len(page.content)
                busy.stop.set()
                busy.join()
        # The same number of probes on each side: the slowest of n grows with n.
        n = min(len(quiet.times), len(busy.times))
        return size / 1e6, statistics.median(times), max(busy.times[:n]), max(quiet.times[:n])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 workspaces, not 10,000")
    args = parser.parse_args(argv)
    count = SIZES[args.quick]
    name = f"/metrics, {count:,} workspaces"
    try:
        mb, seconds = render_figures(syncd_layout(count))
        old_mb, old_seconds = render_figures(contract_layout(count))
        rows = [
            Figure(
                f"{name}: size (baseline: contract layout)", mb, "MB", old_mb, MAX_MB, None, True
            ),
            Figure(
                f"{name}: render in-process (baseline: contract layout)", seconds, "s", old_seconds
            ),
        ]
        with tempfile.TemporaryDirectory() as tmp:
            d_mb, d_seconds, busy, quiet = daemon_figures(count, Path(tmp))
        rows += [
            Figure(
                f"{name}: `GET /metrics` of a daemon", d_seconds, "s", None, MAX_RENDER, None, True
            ),
            Figure(f"{name}: its size", d_mb, "MB", None, MAX_MB, None, True),
            Figure(
                f"{name}: slowest `/healthz` during scrapes"
                " (baseline: as many without; startup syncs run in both)",
                busy,
                "s",
                quiet,
                None,
                None,
            ),
            Figure(
                f"{name}: slowest `/healthz` during scrapes, absolute",
                busy,
                "s",
                None,
                MAX_HEALTHZ,
                None,
                True,
            ),
        ]
        print(figures_table(rows))
    except Exception as e:  # a bench reports, it does not fail CI
        traceback.print_exc()
        print(failed_row(name, e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
