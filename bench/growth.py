"""How does syncd's cost grow with the number of workspaces, and with one workspace's steps?

    python bench/growth.py [--quick]

Starts its own https git server on loopback and, at 3 sizes (100 / 1,000 / 10,000 automatic
workspaces dealt round-robin over 10 / 100 / 1,000 remotes, one history of 100 steps;
--quick: 30 / 100 / 300 workspaces on 3 / 10 / 30 remotes), the installed `syncd serve`:
- cold start: a fresh state directory, no polling, timed from the spawn to the log's last
  `sync end ... result=succeeded` line (every workspace applied; the API then confirms it),
  against `git clone --mirror` of the same remotes, 4 at once, in the same run (as
  bench/cold_start.py). Startup syncs the daemon drops (its `request dropped` lines) or
  fails leave the size without a cold start figure (a failed row says how many); those
  workspaces are then synced through the API, 200 at a time, so that the figures below
  still see every workspace applied;
- memory: that daemon's VmRSS once every workspace has applied the head and it has idled
  2 s, less the RSS of a READY daemon with no workspace (as bench/memory.py);
- startup: spawn to the READY=1 datagram on the warm state directory the cold start left,
  3 starts (--quick: 2), the median (as bench/startup.py);
- polling: the last of those daemons polls every 10 s (--quick: 1.5 s); once its startup
  syncs are done and one more interval has passed, its CPU (utime + stime from /proc) and
  the git server's HTTP requests (with the 401 challenges) a cycle, over 2 cycles (as
  bench/polling_scale.py; a cycle is one ls-remote of each remote, counted at the git
  server, so a cycle that takes longer than its interval still counts once; nothing
  changes, so nothing may be fetched);
and, apart, a 1-change `syncd sync` in one workspace of 1,000 / 10,000 / 100,000 steps
(--quick: 1,000 / 3,000 / 10,000), the median of 7 (--quick: 3; as bench/sync_scaling.py),
each commit also fetched by `git fetch` into a mirror of its own: git's own cost of it, which
grows with the size of the one flat folder whose tree the commit rewrites.
The full run takes about 16 minutes on 2 cores; --quick, under 2.

Each figure's row at the next size has the size before as its baseline, so its ratio is the
growth factor. Goals (issue #27): growth at most 11x per 10x size (a log-log slope of at most
log10 11 = 1.04; between the quick sizes, 3.3x and 3x apart, the size ratio to that power)
for cold start, memory, startup and poll CPU; a 1-change sync at the largest step count at
most 1.2 times the same at the smallest; at the largest size, cold start at most 1.2 times
the clones and memory at most 300 MB over idle (--quick: the line through its two largest
sizes extended to 10,000 workspaces). Draws the curves, log-log, to bench/results/growth.png
(--quick: growth-quick.png) when matplotlib (the `bench` extra) is installed; says so and
draws nothing when it is not. A size whose daemon cannot start, or a step count whose sync
fails, prints why and leaves its rows out.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import re
import shutil
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cold_start import PARALLEL, clone_all
from common import (
    Figure,
    Row,
    failed_row,
    fast_change_step,
    fast_repo,
    make_remotes,
    markdown_table,
    median,
    run_syncd,
    spread_workspaces,
    syncd_env,
    table_line,
    temp_git_server,
    workspace,
    write_config,
)
from daemon import LogLines, ServeProcess

from syncd.demo.gitserver import GitServer

STEPS = 100  # in each remote's history
SIZES = {  # --quick, full: (workspaces, remotes)
    True: ((30, 3), (100, 10), (300, 30)),
    False: ((100, 10), (1_000, 100), (10_000, 1_000)),
}
STEP_SIZES = {True: (1_000, 3_000, 10_000), False: (1_000, 10_000, 100_000)}
SYNC_REPEATS = {True: 3, False: 7}
POLL_INTERVAL = {True: 1.5, False: 10.0}  # seconds
POLL_CYCLES = 2  # the window: this many ls-remotes of every remote
POLL_TIMEOUT = 300.0  # seconds
STARTS = {True: 2, False: 3}  # warm starts, the median counts
SETTLE = 2.0  # seconds idle before reading RSS
GROWTH_PER_10X = 11.0
SYNC_GOAL = 1.2
CLONES_GOAL = 1.2
MEMORY_GOAL_MB = 300.0
MEMORY_GOAL_WORKSPACES = 10_000
CATCH_UP_BATCH = 200
COLD_TIMEOUT = 900.0  # seconds; every wait below is bounded
MB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Curve:
    """One figure measured at each size: `values[size]`, missing where it could not be."""

    title: str  # the rows' and the panel's name
    unit: str
    label: Callable[[int], str]  # a size in words
    per_10x: float | None  # the growth goal per 10x size; None: for information
    values: dict[int, float] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)  # why a size has no value, briefly
    others: dict[str, dict[int, float]] = field(default_factory=dict)  # lines drawn beside
    x_name: str = "workspaces"
    flat: bool = False  # the plot's reference: no growth at all (else linear growth)

    def rows(self, sizes: tuple[int, ...]) -> list[Figure]:
        """The first size alone, then each size against the one before (its growth)."""
        out = []
        for k, size in enumerate(sizes):
            if size not in self.values:
                continue
            before = sizes[k - 1] if k else None
            if before is None or before not in self.values:
                out.append(
                    Figure(f"{self.title}, {self.label(size)}", self.values[size], self.unit)
                )
                continue
            goal = None if self.per_10x is None else growth_goal(self.per_10x, size / before)
            out.append(
                Figure(
                    f"{self.title}, {self.label(size)} (baseline: {self.label(before)})",
                    self.values[size],
                    self.unit,
                    baseline=self.values[before],
                    at_most=goal,
                )
            )
        return out


def growth_goal(per_10x: float, ratio: float) -> float:
    """The growth allowed between two sizes `ratio` apart, from the goal per 10x: the same
    slope on a log-log plot (exactly `per_10x` at 10x)."""
    return float(round(ratio ** math.log10(per_10x), 2))


@dataclass
class Measured:
    """Everything of one size of workspaces; None where a part could not be measured."""

    cold: float | None = None  # seconds, spawn to all applied
    cold_error: str | None = None  # why there is no `cold`
    dropped: int = 0  # startup sync requests the cold daemon dropped
    caught_up: int = 0  # workspaces then synced through the API
    clones: float | None = None  # seconds, `git clone --mirror` of the remotes
    rss: float | None = None  # bytes, after the cold start
    peak: float | None = None  # bytes, VmHWM during the cold start
    starts: list[float] = field(default_factory=list)  # seconds, spawn to READY, warm
    warm_syncs: float | None = None  # seconds, READY to every startup sync ended, warm
    poll_cpu: float | None = None  # CPU seconds a cycle
    poll_http: float | None = None  # HTTP requests a cycle
    poll_cycles: float | None = None  # ls-remotes in the window over the remotes
    poll_window: float | None = None  # seconds
    poll_fetches: int = 0  # upload-packs in the window (must be 0)
    errors: list[str] = field(default_factory=list)


def sizes_label(workspaces: int, remotes: int) -> str:
    return f"{workspaces:,} workspaces on {remotes:,} remotes"


# -- one size of workspaces ----------------------------------------------------------------


def idle_rss(server: GitServer, directory: Path) -> tuple[float, float]:
    """(RSS in bytes, spawn to READY in seconds) of a READY daemon with no workspace."""
    with ServeProcess.start(directory, [], server) as idle:
        ready = idle.wait_ready(60)
        time.sleep(SETTLE)
        rss = float(idle.rss_bytes())
    shutil.rmtree(directory, ignore_errors=True)
    return rss, ready


class StartupLines:
    """The startup comparison in a daemon's log: each workspace's startup run ends (whatever
    its result), or its request is dropped (`event="request dropped"`: the daemon's queue
    was full)."""

    def __init__(self, log: Path) -> None:
        self.ended = LogLines(log, 'event="sync end"', "trigger=startup")
        self.succeeded = LogLines(log, 'event="sync end"', "trigger=startup", "result=succeeded")
        self.dropped = LogLines(log, 'event="request dropped"', "trigger=startup")

    def wait(self, daemon: ServeProcess, count: int) -> float:
        """Seconds from the spawn until each of `count` workspaces' startup run ended or its
        request was dropped."""
        daemon.wait_until(
            lambda: self.ended.count() + self.dropped.count() >= count,
            COLD_TIMEOUT,
            f"the startup syncs of {count:,} workspaces",
            0.05,
        )
        return time.perf_counter() - daemon.spawned_at


def cold_start(
    m: Measured, directory: Path, workspaces: list[dict[str, Any]], server: GitServer, head: str
) -> None:
    """A fresh state directory, no polling: spawn to every workspace applied, and the RSS.
    Startup syncs the daemon dropped or failed leave the cold start without a figure; those
    workspaces are then synced through the API, so that the RSS and the warm starts after
    see every workspace applied."""
    count = len(workspaces)
    with ServeProcess.start(directory, workspaces, server) as daemon:
        lines = StartupLines(daemon.log_path)
        ended = lines.wait(daemon, count)
        m.dropped = lines.dropped.count()
        failed = lines.ended.count() - lines.succeeded.count()
        if m.dropped or failed:
            m.cold_error = (
                f"{m.dropped:,} of {count:,} startup sync requests dropped by the daemon (its"
                f' log\'s `event="request dropped"` lines), {failed:,} startup syncs failed;'
                f" the startup runs had all ended {ended:.1f} s after the spawn"
            )
            m.caught_up = catch_up(daemon, head)
        else:
            m.cold = ended
        # RSS before asking the API: its answer at 10,000 workspaces (megabytes of JSON) is
        # not what holding the workspaces costs.
        time.sleep(SETTLE)
        m.rss, m.peak = float(daemon.rss_bytes()), float(daemon.rss_bytes("VmHWM"))
        views = daemon.workspace_views()
        applied = sum(1 for w in views if w["last_applied_revision"] == head)
        if (len(views), applied) != (count, count):
            raise RuntimeError(f"the API lists {len(views)} workspaces, {applied} at {head[:12]}")


def catch_up(daemon: ServeProcess, head: str) -> int:
    """Syncs, through the API, of every workspace not at `head`, CATCH_UP_BATCH at a time
    (a batch's runs end before the next batch is asked for, so the daemon's queue has room);
    how many."""
    behind = [w["id"] for w in daemon.workspace_views() if w["last_applied_revision"] != head]
    client = daemon.client(timeout=60)
    ended = LogLines(daemon.log_path, 'event="sync end"')

    def ended_at_least(goal: int) -> Callable[[], bool]:
        return lambda: ended.count() >= goal

    target = ended.count()
    for k in range(0, len(behind), CATCH_UP_BATCH):
        batch = behind[k : k + CATCH_UP_BATCH]
        for ws_id in batch:
            client.post(f"/api/v1/workspaces/{ws_id}/sync").raise_for_status()
        target += len(batch)
        daemon.wait_until(ended_at_least(target), COLD_TIMEOUT, "the syncs asked for", 0.1)
    return len(behind)


def warm_starts(
    m: Measured, directory: Path, workspaces: list[dict[str, Any]], server: GitServer, quick: bool
) -> None:
    """STARTS spawns to READY on the cold start's state directory; the last one then polls."""
    interval = POLL_INTERVAL[quick]
    polled = [{**ws, "poll_interval": f"{interval:g}s"} for ws in workspaces]
    remotes = len({ws["source"]["url"] for ws in workspaces})
    starts = STARTS[quick]
    for k in range(starts):
        with ServeProcess.start(directory, polled, server) as daemon:
            m.starts.append(daemon.wait_ready(120))
            if k == starts - 1:
                poll_cycles(m, daemon, server, len(workspaces), interval, remotes)


def poll_cycles(
    m: Measured, daemon: ServeProcess, server: GitServer, count: int, interval: float, remotes: int
) -> None:
    """CPU and git requests a poll cycle, once the startup syncs are done and one more
    interval has passed. A cycle is one ls-remote of every remote, counted at the git
    server: the window lasts until POLL_CYCLES times as many ls-remotes as remotes came (or
    POLL_TIMEOUT), so a cycle that takes longer than its interval (1,000 ls-remotes on
    the bench's own git server) is neither cut nor counted twice."""
    assert daemon.notify.ready_at is not None
    ended = StartupLines(daemon.log_path).wait(daemon, count)
    m.warm_syncs = ended - (daemon.notify.ready_at - daemon.spawned_at)
    time.sleep(interval * 1.2)
    before, cpu_before, t0 = server.snapshot(), daemon.cpu_seconds(), time.monotonic()

    def ls_remotes() -> int:
        diff = server.snapshot() - before
        return diff["info_refs"] - diff["unauthorized"]

    with contextlib.suppress(TimeoutError):  # then the cycles that came count
        daemon.wait_until(
            lambda: ls_remotes() >= POLL_CYCLES * remotes, POLL_TIMEOUT, "poll cycles", 0.1
        )
    after, cpu_after, t1 = server.snapshot(), daemon.cpu_seconds(), time.monotonic()
    diff = after - before
    if diff["info_refs"] - diff["unauthorized"] <= 0:
        raise RuntimeError(f"no poll in {t1 - t0:.1f} s\n{daemon.log_tail()}")
    cycles = (diff["info_refs"] - diff["unauthorized"]) / remotes
    m.poll_cycles = cycles
    m.poll_window = t1 - t0
    m.poll_cpu = (cpu_after - cpu_before) / cycles
    m.poll_http = diff["total"] / cycles
    m.poll_fetches = diff["upload_pack"]


def measure_size(
    server: GitServer, tmp: Path, urls: list[str], head: str, workspaces: int, quick: bool
) -> Measured:
    """Every figure of one size; a part that fails is said in `errors` and left out."""
    m = Measured()
    config = spread_workspaces(urls, workspaces, server)
    directory = tmp / f"syncd{workspaces}"
    try:
        m.clones = clone_all(server, urls, tmp / f"clones{workspaces}")
    except Exception as e:  # the peer: its row goes, syncd's stay
        m.errors.append(f"`git clone --mirror` failed: {type(e).__name__}: {e}")
    try:
        cold_start(m, directory, config, server, head)
        warm_starts(m, directory, config, server, quick)
    except Exception as e:
        traceback.print_exc()
        m.errors.append(f"syncd serve: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    shutil.rmtree(directory, ignore_errors=True)
    return m


def measure_workspaces(quick: bool) -> tuple[dict[int, Measured], float, float]:
    """Each size's figures by its workspace count; the idle daemon's RSS and READY time."""
    sizes = SIZES[quick]
    out: dict[int, Measured] = {}
    with temp_git_server() as (server, tmp):
        # The largest size's remotes serve every size: the smaller ones use the first few.
        urls, tree = make_remotes(server, tmp, sizes[-1][1], STEPS)
        head = tree.head()
        idle, idle_ready = idle_rss(server, tmp / "idle")
        for workspaces, remotes in sizes:
            started = time.monotonic()
            print(f"measuring {sizes_label(workspaces, remotes)} ...", file=sys.stderr)
            out[workspaces] = measure_size(server, tmp, urls[:remotes], head, workspaces, quick)
            print(f"... {time.monotonic() - started:.0f} s", file=sys.stderr)
    return out, idle, idle_ready


# -- one workspace of many steps -----------------------------------------------------------


def step_syncs(steps: int, repeats: int, m: StepsMeasured) -> None:
    """One workspace of `steps` steps: its initial `syncd sync`, then `repeats` syncs of one
    changed step each, a different step each time (as bench/sync_scaling.py; the repository
    is written by fast-import, which takes seconds at 100,000 steps). Each change is also
    fetched by `git fetch` into a mirror of its own, in turn with the sync (the first of the
    two alternates): git's own cost of that commit, which grows with the folder's size too
    (one flat folder's tree holds every entry, and a commit rewrites it whole)."""
    with temp_git_server() as (server, tmp):
        name = f"steps{steps}"
        url, _head = fast_repo(server, name, steps)
        config = write_config(tmp / "syncd", [workspace("bench", url, server)])
        env = syncd_env(server)
        args = ["sync", "bench", "--config", str(config)]
        initial, out = run_syncd(args, env)
        if f"{steps} created" not in out:
            raise RuntimeError(f"the initial sync of {steps} steps said: {out}")
        mirror = tmp / "git-fetch.git"
        server.run_git("clone", "--mirror", "--quiet", url, str(mirror))
        times, fetches = [], []
        for k in range(repeats):
            fast_change_step(server, name, (k * steps) // repeats, version=k + 1)
            if k % 2:
                fetches.append(git_fetch(server, mirror))
            seconds, out = run_syncd(args, env)
            if "0 created, 1 updated, 0 deleted" not in out:
                raise RuntimeError(f"a 1-change sync of {steps} steps said: {out}")
            times.append(seconds)
            if not k % 2:
                fetches.append(git_fetch(server, mirror))
        m.initial[steps], m.times[steps], m.fetches[steps] = initial, times, fetches
        m.medians[steps], m.fetch_medians[steps] = median(times), median(fetches)


def git_fetch(server: GitServer, mirror: Path) -> float:
    """Seconds to `git fetch` the mirror's remote (one new commit)."""
    started = time.perf_counter()
    server.run_git("-C", str(mirror), "fetch", "--quiet", "origin")
    return time.perf_counter() - started


@dataclass
class StepsMeasured:
    medians: dict[int, float] = field(default_factory=dict)  # 1-change sync by step count
    times: dict[int, list[float]] = field(default_factory=dict)
    fetch_medians: dict[int, float] = field(default_factory=dict)  # `git fetch` of the same
    fetches: dict[int, list[float]] = field(default_factory=dict)
    initial: dict[int, float] = field(default_factory=dict)  # the initial sync
    failed: dict[int, str] = field(default_factory=dict)  # why a step count has no figure

    def less_fetch(self, steps: int) -> float:
        """The median of each sync less the `git fetch` of its own commit."""
        return median([t - f for t, f in zip(self.times[steps], self.fetches[steps], strict=True)])


def measure_steps(quick: bool) -> StepsMeasured:
    m = StepsMeasured()
    for steps in STEP_SIZES[quick]:
        started = time.monotonic()
        print(f"measuring a 1-change sync in {steps:,} steps ...", file=sys.stderr)
        try:
            step_syncs(steps, SYNC_REPEATS[quick], m)
        except Exception as e:
            traceback.print_exc()
            # syncd's own reason when it logged one (`error="..."`), else the exception's
            said = re.search(r'error="([^"]+)"', str(e))
            m.failed[steps] = said.group(1) if said else f"{type(e).__name__}: {e}"
        print(f"... {time.monotonic() - started:.0f} s", file=sys.stderr)
    return m


# -- the table and the plot ----------------------------------------------------------------


def workspace_curves(
    quick: bool, measured: dict[int, Measured], idle: float, idle_ready: float = 0.0
) -> list[Curve]:
    remotes = dict(SIZES[quick])

    def label(workspaces: int) -> str:
        return sizes_label(workspaces, remotes[workspaces])

    cold, memory, startup, cpu, requests = curves = [
        Curve("cold start: spawn to all applied", "s", label, GROWTH_PER_10X),
        Curve("memory: RSS over the idle daemon, all applied", "MB", label, GROWTH_PER_10X),
        Curve("startup: spawn to READY on a warm state directory", "s", label, GROWTH_PER_10X),
        Curve("polling: daemon CPU a poll cycle", "s", label, GROWTH_PER_10X),
        Curve("polling: git HTTP requests a poll cycle", "req", label, None),
    ]
    cold.others["git clone --mirror"] = {}
    if idle_ready:
        startup.others["READY with no workspace"] = {w: idle_ready for w in remotes}
    for size, m in measured.items():
        if m.clones is not None:
            cold.others["git clone --mirror"][size] = m.clones
        if m.cold is not None:
            cold.values[size] = m.cold
        elif m.dropped:
            cold.missing[size] = f"{m.dropped:,} startup syncs dropped"
        if m.rss is not None:
            memory.values[size] = (m.rss - idle) / MB
        if m.starts:
            startup.values[size] = median(m.starts)
        if m.poll_cpu is not None and m.poll_http is not None:
            cpu.values[size] = m.poll_cpu
            requests.values[size] = m.poll_http
    for curve in curves:
        for size in remotes:
            if size not in curve.values:
                curve.missing.setdefault(size, "not measured")
    return curves


def step_curve(quick: bool, stepped: StepsMeasured) -> Curve:
    curve = Curve(
        "1-change `syncd sync`",
        "s",
        lambda steps: f"{steps:,} steps",
        None,
        dict(stepped.medians),
        others={"`git fetch` of the same commit": dict(stepped.fetch_medians)},
        x_name="steps",
        flat=True,
    )
    for steps in STEP_SIZES[quick]:
        if steps not in curve.values:
            curve.missing[steps] = stepped.failed.get(steps, "not measured")
    return curve


def table_lines(
    quick: bool, measured: dict[int, Measured], idle: float, stepped: StepsMeasured
) -> list[str]:
    """The table's rows: each curve's, the goals at the largest size, and a failed row for
    each cold start the daemon could not finish and each step count that could not sync."""
    sizes = tuple(w for w, _ in SIZES[quick])
    remotes_of = dict(SIZES[quick])
    largest, remotes = SIZES[quick][-1]
    cold, memory, *others = workspace_curves(quick, measured, idle)
    big = measured.get(largest, Measured())
    out: list[Row | Figure | str] = [*cold.rows(sizes)]
    for size, m in measured.items():
        if m.cold_error is not None:
            scenario = f"{cold.title}, {sizes_label(size, remotes_of[size])}"
            out.append(failed_row(scenario, RuntimeError(m.cold_error)))
    if big.cold is not None and big.clones is not None:
        out.append(
            Figure(
                f"cold start: {sizes_label(largest, remotes)} all applied (baseline:"
                f" `git clone --mirror` of the {remotes:,}, {PARALLEL} at once)",
                big.cold,
                "s",
                big.clones,
                at_most=CLONES_GOAL,
            )
        )
    out += memory.rows(sizes)
    if big.rss is not None:
        out.append(memory_goal_row(memory, sizes, remotes))
    for curve in others:
        out += curve.rows(sizes)
    step_sizes, steps = STEP_SIZES[quick], stepped.medians
    sync = step_curve(quick, stepped)
    out += sync.rows(step_sizes)
    for count, why in stepped.failed.items():
        out.append(failed_row(f"{sync.title}, {count:,} steps", RuntimeError(why)))
    fetched = stepped.fetch_medians
    out += [
        Figure(f"`git fetch` of the same commit, {n:,} steps", fetched[n], "s")
        for n in step_sizes
        if n in fetched
    ]
    small, large = step_sizes[0], step_sizes[-1]
    if small in steps and large in steps:
        out.append(
            Figure(
                f"1-change `syncd sync`, {large:,} steps (baseline: {small:,} steps)",
                steps[large],
                "s",
                steps[small],
                at_most=SYNC_GOAL,
            )
        )
    if all(n in d for n in (small, large) for d in (steps, fetched)):
        # What syncd adds to git's own cost of the commit, and how that grows.
        out.append(
            Figure(
                f"1-change `syncd sync` less `git fetch` of the same commit, {large:,} steps"
                f" (baseline: the same at {small:,} steps)",
                stepped.less_fetch(large),
                "s",
                stepped.less_fetch(small),
            )
        )
    return [r if isinstance(r, str) else table_line(r) for r in out]


def memory_goal_row(memory: Curve, sizes: tuple[int, ...], remotes: int) -> Figure:
    """The goal on the RSS over idle at MEMORY_GOAL_WORKSPACES: measured there in a full run;
    --quick extends the line through its two largest sizes to it (the idle daemon's part
    does not grow, so scaling the whole figure would overstate it)."""
    largest = sizes[-1]
    value, label = memory.values[largest], sizes_label(largest, remotes)
    before = sizes[-2]
    if largest != MEMORY_GOAL_WORKSPACES and before in memory.values:
        per_workspace = max(0.0, (value - memory.values[before]) / (largest - before))
        value += per_workspace * (MEMORY_GOAL_WORKSPACES - largest)
        label += f", extended linearly to {MEMORY_GOAL_WORKSPACES:,} workspaces"
    return Figure(
        f"memory: RSS over idle, {label}", value, "MB", at_most=MEMORY_GOAL_MB, absolute=True
    )


def growth_notes(curves: list[Curve], sizes: tuple[int, ...]) -> list[str]:
    """Each curve's growth factors and its log-log slope between consecutive sizes."""
    out = []
    for curve in curves:
        parts = []
        for a, b in itertools.pairwise(sizes):
            if a in curve.values and b in curve.values and curve.values[a] > 0:
                factor = curve.values[b] / curve.values[a]
                slope = math.log(factor) / math.log(b / a) if factor > 0 else float("nan")
                parts.append(f"{a:,}→{b:,} {factor:.2f}x (slope {slope:.2f})")
        if parts:
            out.append(f"- {curve.title}: " + ", ".join(parts))
    return out


def plot(curves: list[Curve], path: Path, title: str) -> str:
    """Draws each curve log-log in a panel of one PNG, with linear growth (or, for a `flat`
    curve, none) from its smallest size dashed, its other lines (the clones) dotted, and the
    sizes it has no value for named at the bottom; what it did, in words."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError as e:
        return f"no plot: matplotlib is not installed ({e}); `pip install -e '.[bench]'`"
    columns = 3
    lines = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 4 * lines), squeeze=False)
    for ax, curve in zip(axes.flat, curves, strict=False):
        xs = sorted(x for x in curve.values if curve.values[x] > 0)
        ys = [curve.values[x] for x in xs]
        if xs:
            ax.loglog(xs, ys, "o-", label="syncd")
            reference = [ys[0] * (1.0 if curve.flat else x / xs[0]) for x in xs]
            ax.loglog(xs, reference, "--", color="grey", label="flat" if curve.flat else "linear")
        for name, line in curve.others.items():
            ox = sorted(x for x in line if line[x] > 0)
            if ox:
                ax.loglog(ox, [line[x] for x in ox], "s:", label=name)
        for a, b in itertools.pairwise(xs):
            ax.annotate(
                f"{curve.values[b] / curve.values[a]:.1f}x",
                (math.sqrt(a * b), math.sqrt(curve.values[a] * curve.values[b])),
                fontsize=8,
                ha="right",
                va="bottom",
            )
        ticks = sorted({*curve.values, *curve.missing})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
        if curve.flat and ys:  # a flat line over a narrow band would look like a slope
            ax.set_ylim(min(ys) / 2, max(ys) * 2)
        for x, why in curve.missing.items():
            ax.annotate(
                f"{x:,}:\n" + textwrap.fill(why, 24),
                (x, 0.04),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="firebrick",
                ha="center",
                va="bottom",
            )
        ax.set_title(curve.title, fontsize=9)
        ax.set_xlabel(curve.x_name)
        ax.set_ylabel({"s": "seconds", "MB": "MB", "req": "requests"}.get(curve.unit, curve.unit))
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{x:,}" for x in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        if xs:
            ax.legend(fontsize=8, loc="upper left")
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"curves drawn to {path}"


def size_notes(size: int, m: Measured, idle_ready: float, interval: float) -> str:
    """What one size's figures rest on, in a line under the table."""
    details = [f"{size:,} workspaces:"]
    if m.cold is not None and m.clones is not None:
        details.append(
            f"cold start {m.cold:.2f} s, clones {m.clones:.2f} s ({m.cold / m.clones:.2f}x);"
        )
    if m.cold_error is not None:
        clones = "" if m.clones is None else f" (the clones: {m.clones:.2f} s)"
        details.append(
            f"no cold start figure: {m.cold_error}{clones}; {m.caught_up:,} workspaces then"
            " synced through the API before the RSS and the warm starts;"
        )
    if m.peak is not None:
        details.append(f"peak RSS {m.peak / MB:.0f} MB;")
    if m.starts:
        details.append(
            f"warm READY {', '.join(f'{s:.2f}' for s in m.starts)} s (with no workspace:"
            f" {idle_ready:.2f} s);"
        )
    if m.warm_syncs is not None:
        details.append(f"the warm startup syncs ended {m.warm_syncs:.1f} s after READY;")
    if m.poll_cycles is not None and m.poll_window is not None:
        details.append(
            f"{m.poll_cycles:.1f} poll cycles in {m.poll_window:.1f} s (interval {interval:g} s),"
            f" {m.poll_fetches} fetches while nothing changed"
        )
    return " ".join(details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="30/100/300 workspaces on 3/10/30 remotes, 1,000/3,000/10,000 steps",
    )
    parser.add_argument("--png", type=Path, help="where to draw the curves")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = SIZES[quick]
    print(
        f"# growth ({'quick' if quick else 'full'}):"
        f" {' / '.join(f'{w:,}' for w, _ in sizes)} workspaces on"
        f" {' / '.join(f'{r:,}' for _, r in sizes)} remotes of {STEPS} steps; a 1-change sync in"
        f" {' / '.join(f'{s:,}' for s in STEP_SIZES[quick])} steps\n"
    )
    started = time.monotonic()
    failed: list[str] = []
    try:
        measured, idle, idle_ready = measure_workspaces(quick)
    except Exception as e:  # the git server or the idle daemon: no size can be measured
        traceback.print_exc()
        measured, idle, idle_ready = {}, 0.0, 0.0
        failed.append(failed_row("growth: the workspaces' figures", e))
    stepped = measure_steps(quick)
    lines = table_lines(quick, measured, idle, stepped)
    print("\n".join([markdown_table([]), *lines, *failed]))
    for size, m in measured.items():
        for error in m.errors:
            print(f"\nskipped at {size:,} workspaces: {error}")
    for count, why in stepped.failed.items():
        print(f"\nskipped the 1-change sync at {count:,} steps: {' '.join(why.split())[:300]}")

    curves = workspace_curves(quick, measured, idle, idle_ready)
    sync = step_curve(quick, stepped)
    print("\ngrowth factors between consecutive sizes (log-log slope; 1 is linear):\n")
    print("\n".join(growth_notes(curves, tuple(w for w, _ in sizes))))
    print("\n".join(growth_notes([sync], STEP_SIZES[quick])))
    print()
    for size, m in measured.items():
        print(size_notes(size, m, idle_ready, POLL_INTERVAL[quick]))
    for count, times in stepped.times.items():
        print(
            f"{count:,} steps: initial sync {stepped.initial[count]:.2f} s, 1-change syncs"
            f" {', '.join(f'{t:.2f}' for t in times)} s, `git fetch` of each"
            f" {', '.join(f'{t:.2f}' for t in stepped.fetches.get(count, []))} s"
        )
    print(f"idle daemon RSS {idle / MB:.1f} MB; the whole run {time.monotonic() - started:.0f} s")
    png = args.png or RESULTS / ("growth-quick.png" if quick else "growth.png")
    title = (
        f"syncd growth ({'quick' if quick else 'full'} run, {time.strftime('%Y-%m-%d')}):"
        " figure by size, log-log"
    )
    try:
        print(plot([*curves, sync], png, title))
    except Exception as e:  # a plot never fails the bench
        print(f"no plot: {type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
