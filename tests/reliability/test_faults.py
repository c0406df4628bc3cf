"""Remote faults against the real daemon: the remote drops connections, answers 500, stalls past
the timeout, presents a certificate for another name, or rejects the credentials.

Each fault gets a daemon and an https remote of its own, so the remote's request counters see
that daemon alone. The five run side by side (a module fixture), and the tests below check
what each one observed:

1. an automatic workspace (polled every second, `git.timeout: 2s`) syncs commit A;
2. the fault is switched on and commit B is pushed behind the server, straight into the bare
   repository; a manual sync through the API (`?wait=true`) then fails, while /healthz is
   probed every 50 ms;
3. for a window the remote's requests, the git error counter and the scheduler's retries are
   counted: the daemon must back off, not hammer;
4. the fault is switched off (for the certificate: the config points back at the good remote,
   as an operator would fix it) and the workspace must reach B on its own, by poll or retry.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from syncd.core.retry import RUN
from syncd.core.steps import step_file_name
from tests.support import API_TOKEN, WEBHOOK_SECRET, GitServer, workspace, write_step
from tests.support.daemon import (
    STEPS_DIR,
    Content,
    Daemon,
    Remote,
    converged,
    live_steps,
    metric,
    metrics_text,
    remote,
    report,
    rewrite_config,
    scaled,
    start_daemon,
    stop_daemon,
    tree_steps,
    view,
    wait_for,
)

FAULTS = ("refuse", "500", "slow", "401", "cert")
GIT_PASSWORD = "fault-git-pass-0451"
GIT_TIMEOUT = 2.0
STALL = 30.0  # how long the "slow" remote sits on a request: far past the timeout
WINDOW = scaled(5, 20)  # seconds of counting requests while the fault lasts
CONVERGE_TIMEOUT = 90.0  # poll backoff after a short outage is far below this
HEALTHZ_LIMIT = 0.5
# Far fewer than one request per 100 ms: a retrying loop must not hammer a failing remote.
MAX_RATE = 4.0

# What the run's error must say, per fault.
CAUSE = {
    "refuse": r"connection|closed|refused|reset|eof",
    "500": r"HTTP 500",
    "slow": r"timed out|timeout",
    "401": r"rejected the credentials|refused access",
    "cert": r"certificate.*(mismatch|not valid)",
}

RETRY = re.compile(r'event="retry scheduled" workspace=auto delay_seconds=([0-9.]+) failures=(\d+)')
POLL_FAILED = re.compile(r'event="poll failed" remote=\S+ failures=(\d+)')


@dataclass
class Observed:
    fault: str
    before: dict[str, Content] = field(default_factory=dict)
    expected: dict[str, Content] = field(default_factory=dict)  # commit B's steps
    run: dict[str, Any] = field(default_factory=dict)  # the failed manual run
    kept: dict[str, Content] = field(default_factory=dict)  # steps after the failures
    kept_revision: str | None = None
    first_revision: str | None = None
    view: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    git_errors: float = 0.0  # syncd_git_operations_total{result="error"}, fault on to window end
    failed_runs: float = 0.0  # syncd_sync_runs_total{workspace="auto",result="failed"}
    healthz: list[float] = field(default_factory=list)  # seconds, each probe
    window: float = 0.0
    window_requests: int | None = None  # at the remote (None: TLS fails before any request)
    window_git_errors: float = 0.0
    retries: list[tuple[int, float]] = field(default_factory=list)  # (failures, delay)
    poll_failures: list[int] = field(default_factory=list)
    converge_seconds: float | None = None
    final: dict[str, Content] = field(default_factory=dict)
    final_view: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # every text syncd gave us
    log: str = ""


class HealthzProbe:
    """Asks /healthz every 50 ms in a thread of its own and keeps each answer's latency."""

    def __init__(self, d: Daemon) -> None:
        self.url = f"{d.url}/healthz"
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthzProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as c:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = c.get(self.url).status_code == 200
                except httpx.HTTPError as e:
                    ok, reason = False, repr(e)
                else:
                    reason = "status"
                if ok:
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.failures.append(reason)
                self._stop.wait(0.05)


def source_of(d: Daemon, ws: str, url: str, ca_file: Path) -> None:
    """Point a workspace at another remote by rewriting the config, then SIGHUP."""
    doc = yaml.safe_load(d.config_path.read_text())
    for entry in doc["workspaces"]:
        if entry["id"] == ws:
            entry["source"].update(url=url, ca_file=str(ca_file))
    rewrite_config(d, doc)
    d.process.send_signal(signal.SIGHUP)
    wait_for(lambda: view(d, ws)["source"]["url"] == url, 15, "the config reload")


def observe(fault: str, root: Path) -> Observed:
    seen = Observed(fault)
    with contextlib.ExitStack() as stack:
        rm = stack.enter_context(remote(root, password=GIT_PASSWORD))
        other = None
        if fault == "cert":  # the same repository, behind a certificate for another name
            other = GitServer(root / "other", password=GIT_PASSWORD, hostnames=("other.example",))
            stack.enter_context(other)
            other.create_repo(rm.name)
        ws = workspace("auto", rm.url, rm.server, "automatic", poll_interval="1s")
        d = start_daemon(root, rm.server, rm.tree, rm.url, [ws], git={"timeout": f"{GIT_TIMEOUT}s"})
        try:
            run_fault(fault, d, rm, other, seen)
        finally:
            stop_daemon(d)
            seen.log = d.log()
            seen.outputs.append(seen.log)
    return seen


def run_fault(fault: str, d: Daemon, rm: Remote, other: GitServer | None, seen: Observed) -> None:
    # 1. commit A applied
    wait_for(lambda: converged(d, "auto", rm.tree), 30, "the first sync")
    seen.before, seen.first_revision = live_steps(d, "auto"), rm.tree.head()
    before = metrics_text(d)

    # 2. the fault, then commit B where the daemon cannot fetch it (past the https side)
    write_step(rm.tree, "step 0", "second(0)")
    rm.tree.remove(f"{STEPS_DIR}/{step_file_name('step 1')}")
    write_step(rm.tree, "step 3", "second(3)")
    rm.tree.commit("B")
    seen.expected = tree_steps(rm.tree)
    counted: GitServer = rm.server
    if other is not None:
        rm.push_into(other)
        source_of(d, "auto", other.url(rm.name), other.ca_file)
        counted = other
    else:
        rm.server.set_fault(fault, STALL if fault == "slow" else 0.0)  # type: ignore[arg-type]
    rm.push_into(rm.server)

    with HealthzProbe(d) as probe, d.client() as c:
        r = c.post("/api/v1/workspaces/auto/sync?wait=true", timeout=120)
        assert r.status_code == 200, r.text
        seen.run = r.json()
        seen.outputs.append(r.text)
        # 3. the window: what a failing remote sees of the daemon's retries
        start, m0, t0 = counted.snapshot(), metrics_text(d), time.monotonic()
        time.sleep(WINDOW)
        seen.window = time.monotonic() - t0
        m1 = metrics_text(d)
        if fault != "cert":
            seen.window_requests = (counted.snapshot() - start)["total"]
        seen.window_git_errors = git_errors(m1) - git_errors(m0)
        seen.view = view(d, "auto")
        health = c.get("/api/v1/workspaces/auto/health")
        seen.health = health.json()
        seen.kept, seen.kept_revision = live_steps(d, "auto"), seen.view["last_applied_revision"]
        seen.outputs += [m1, health.text, str(seen.view)]
    seen.healthz = probe.latencies
    assert not probe.failures, f"/healthz failed during the fault: {probe.failures[:3]}"
    seen.git_errors = git_errors(m1) - git_errors(before)
    seen.failed_runs = metric(
        m1, "syncd_sync_runs_total", workspace="auto", result="failed"
    ) - metric(before, "syncd_sync_runs_total", workspace="auto", result="failed")
    log = d.log()
    seen.retries = [(int(n), float(s)) for s, n in RETRY.findall(log)]
    seen.poll_failures = [int(n) for n in POLL_FAILED.findall(log)]

    # 4. the remote returns
    t1 = time.monotonic()
    if fault == "cert":
        source_of(d, "auto", rm.url, rm.server.ca_file)
    else:
        rm.server.set_fault(None)
    wait_for(lambda: converged(d, "auto", rm.tree), CONVERGE_TIMEOUT, "the sync to converge")
    seen.converge_seconds = time.monotonic() - t1
    seen.final, seen.final_view = live_steps(d, "auto"), view(d, "auto")


def git_errors(text: str) -> float:
    return metric(text, "syncd_git_operations_total", result="error")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Observed | BaseException]:
    """Every fault, each against its own daemon and remote, side by side."""
    results: dict[str, Observed | BaseException] = {}
    with concurrent.futures.ThreadPoolExecutor(len(FAULTS)) as pool:
        futures = {
            f: pool.submit(observe, f, tmp_path_factory.mktemp(f"fault-{f}")) for f in FAULTS
        }
        for fault, future in futures.items():
            try:
                results[fault] = future.result(timeout=300)
            except BaseException as e:  # reported by each test of that fault
                results[fault] = e
    for fault, seen in results.items():
        if isinstance(seen, Observed):
            report(
                f"remote fault: {fault}",
                error=seen.run.get("error"),
                healthz_probes=len(seen.healthz),
                healthz_max_ms=round(max(seen.healthz, default=0) * 1000, 1),
                window_s=round(seen.window, 1),
                window_requests=seen.window_requests,
                window_git_errors=seen.window_git_errors,
                retries_scheduled=[round(s, 1) for _, s in seen.retries],
                poll_failures=max(seen.poll_failures, default=0),
                converge_s=round(seen.converge_seconds or -1, 1),
            )
    return results


def outcome(observed: dict[str, Observed | BaseException], fault: str) -> Observed:
    seen = observed[fault]
    if isinstance(seen, BaseException):
        raise seen
    return seen


@pytest.mark.parametrize("fault", FAULTS)
def test_the_workspace_keeps_its_steps(observed: Any, fault: str) -> None:
    seen = outcome(observed, fault)
    assert seen.run["result"] == "failed", seen.run
    assert seen.kept == seen.before, "a failing remote changed the workspace's steps"
    assert seen.kept_revision == seen.first_revision


@pytest.mark.parametrize("fault", FAULTS)
def test_status_run_and_metrics_say_what_failed(observed: Any, fault: str) -> None:
    seen = outcome(observed, fault)
    last = seen.view["last_run"]
    assert last["result"] == "failed" and last["error"], last
    # The error names the operation and the remote it failed against.
    assert re.match(r"ls_remote https://127\.0\.0\.1:\d+/steps\.git: ", seen.run["error"])
    assert seen.health["source_reachable"] is False, seen.health
    assert seen.health["last_error"] == last["error"]
    assert seen.git_errors >= 1 and seen.failed_runs >= 1
    for text in seen.outputs:
        for secret in (GIT_PASSWORD, API_TOKEN, WEBHOOK_SECRET):
            assert secret not in text, f"a secret in syncd's output: ...{text[:200]}"


@pytest.mark.parametrize("fault", FAULTS)
def test_the_error_names_the_cause(observed: Any, fault: str) -> None:
    seen = outcome(observed, fault)
    assert re.search(CAUSE[fault], seen.run["error"], re.I), seen.run["error"]


@pytest.mark.parametrize("fault", FAULTS)
def test_healthz_stays_fast_while_the_sync_is_stuck(observed: Any, fault: str) -> None:
    seen = outcome(observed, fault)
    assert len(seen.healthz) >= 10, f"only {len(seen.healthz)} /healthz answers"
    slowest = max(seen.healthz)
    assert slowest < HEALTHZ_LIMIT, f"/healthz took {slowest:.3f}s: the event loop is blocked"


@pytest.mark.parametrize("fault", FAULTS)
def test_retries_back_off(observed: Any, fault: str) -> None:
    seen = outcome(observed, fault)
    if seen.window_requests is not None:
        rate = seen.window_requests / seen.window
        assert rate < MAX_RATE, f"{seen.window_requests} requests in {seen.window:.1f}s"
    attempts = seen.window_git_errors / seen.window
    assert attempts < MAX_RATE, f"{seen.window_git_errors} failed git operations in {seen.window}s"
    # The scheduler's retries come further and further apart, from half of the run policy's base on.
    assert seen.retries, "no retry was scheduled after the failed run"
    failures = [n for n, _ in seen.retries]
    delays = [s for _, s in seen.retries]
    assert failures == list(range(1, len(failures) + 1)), seen.retries
    assert delays == sorted(delays) and delays[0] >= RUN.base / 2, seen.retries
    # The poll loop failed too, and counts its failures: its next interval grows with them.
    assert seen.poll_failures, "the poll loop never reported a failure"


@pytest.mark.parametrize("fault", FAULTS)
def test_the_sync_converges_when_the_remote_returns(observed: Any, fault: str) -> None:
    seen = outcome(observed, fault)
    assert seen.converge_seconds is not None
    assert seen.final == seen.expected
    assert seen.final_view["status"] == "Synced"
    assert seen.final_view["last_run"]["result"] == "succeeded"
