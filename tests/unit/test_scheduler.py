"""Coalescing, bounds and the poll decision: the real engine over the stateful fakes."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from syncd.core import retry
from syncd.core.errors import GitError, NotFound
from syncd.core.model import Mode, Plan, Run, RunResult, Status, SyncState, Trigger
from syncd.core.retry import Policy
from syncd.git import Remote
from syncd.runs.local_queue import LocalQueue
from syncd.runs.merge import MAX_QUEUED_PER_WORKSPACE
from syncd.runs.polling import should_sync
from syncd.runs.requests import QueueFull, Request, ShuttingDown
from syncd.runs.scheduler import Scheduler
from syncd.store import ApplyBase, IndexUpdate, Lease
from syncd.sync.engine import Engine, Outcome
from tests.support.fakes import FakeGit, FakeStore, GatedGit, config, step_files, workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    """A scheduler over the real engine, the fake store, and a git whose fetches wait for
    `git.gate`: a run is in flight from its fetch until the test opens the gate."""

    store: FakeStore
    git: GatedGit
    scheduler: Scheduler

    def runs(self, *ws_ids: str) -> list[Run]:
        """Every finished run, oldest first."""
        return [r for r in self.store.runs_finished_since(0, math.inf) if r.workspace in ws_ids]


def world(*ids: str, parallel: int = 4) -> World:
    store, git = FakeStore(), GatedGit()
    git.commit(step_files({"greet": "hello()"}))
    cfg = config(*(workspace(i) for i in ids))
    engine = Engine(store, git)
    s = Scheduler(engine, store, config=lambda: cfg, max_parallel=parallel, rng=lambda: 0.5)
    return World(store, git, s)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_many_requests_coalesce_into_one_queued_run() -> None:
    w = world("a")
    s = w.scheduler
    await s.start(startup_sync=False)
    first = await s.request("a", Trigger.WEBHOOK)
    await until(lambda: w.git.active == 1)
    tickets = [(await s.request("a", Trigger.WEBHOOK)) for _ in range(100)]
    assert all(t.coalesced for t in tickets[1:])
    assert len({t.run_id for t in tickets}) == 1
    w.git.gate.set()
    await asyncio.gather(first.future, *(t.future for t in tickets))
    assert [r.id for r in w.runs("a")] == [first.run_id, tickets[0].run_id]


async def test_manual_request_upgrades_a_queued_automatic_one() -> None:
    w = world("a")
    s = w.scheduler
    await s.start(startup_sync=False)
    (await s.request("a", Trigger.POLL))
    await until(lambda: w.git.active == 1)
    (await s.request("a", Trigger.WEBHOOK))
    manual = await s.request("a", Trigger.MANUAL)
    w.git.gate.set()
    outcome = await manual.future
    assert outcome.run.trigger is Trigger.MANUAL
    assert [r.trigger for r in w.runs("a")] == [Trigger.POLL, Trigger.MANUAL]


async def test_distinct_pinned_requests_queue_up_to_a_bound() -> None:
    w = world("a")
    s = w.scheduler
    await s.start(startup_sync=False)
    (await s.request("a", Trigger.MANUAL))
    await until(lambda: w.git.active == 1)
    for i in range(MAX_QUEUED_PER_WORKSPACE):
        (await s.request("a", Trigger.MANUAL, revision=f"{i:040x}"))
    with pytest.raises(QueueFull):
        (await s.request("a", Trigger.MANUAL, revision="f" * 40))
    w.git.gate.set()
    await until(lambda: len(w.runs("a")) == 1 + MAX_QUEUED_PER_WORKSPACE)
    # The pinned commits are not on the remote: each queued request ran, and failed.
    assert [r.result for r in w.runs("a")][1:] == [RunResult.FAILED] * MAX_QUEUED_PER_WORKSPACE


class HeldRunner:
    """A scheduler stand-in whose runs wait for `go`: every request stays queued meanwhile."""

    accepting = True

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.ran: list[str] = []

    def admit(self, ws_id: str) -> None:
        return None

    async def run_one(self, ws_id: str, req: Request) -> Outcome:
        await self.go.wait()
        self.ran.append(ws_id)
        raise ShuttingDown("a stand-in records no run")

    def after_run(self, ws_id: str, req: Request, outcome: Outcome) -> None:
        return None

    def after_crash(self, ws_id: str, req: Request) -> None:
        return None


async def test_the_in_process_queue_takes_a_request_of_every_workspace_however_many() -> None:
    """It once capped all workspaces' requests at 1,024: a cold start of more dropped the
    rest's startup syncs, and a workspace without polling then never synced at all."""
    runner = HeldRunner()
    queue = LocalQueue(runner)
    ids = [f"w{k:05d}" for k in range(3_000)]
    for ws_id in ids:
        queue.submit_quietly(ws_id, Trigger.STARTUP, None)
    runner.go.set()
    for _ in range(3_000):  # bounded: 30 s (3,000 runs take well under 1 s on a quiet machine)
        if len(runner.ran) == len(ids):
            break
        await asyncio.sleep(0.01)
    assert sorted(runner.ran) == ids
    await asyncio.gather(*queue.stop())


async def test_parallelism_across_workspaces_is_bounded() -> None:
    w = world(*"abcdef", parallel=2)
    s = w.scheduler
    await s.start(startup_sync=False)
    tickets = [(await s.request(i, Trigger.POLL)) for i in "abcdef"]
    await until(lambda: w.git.active == 2)
    await asyncio.sleep(0.05)
    assert w.git.active == 2
    w.git.gate.set()
    await asyncio.gather(*(t.future for t in tickets))
    assert w.git.peak == 2 and len(w.runs(*"abcdef")) == 6
    assert all(w.store.state(i).status is Status.SYNCED for i in "abcdef")


async def test_unknown_workspace_and_stopping_are_refused() -> None:
    w = world("a")
    s = w.scheduler
    await s.start(startup_sync=False)
    with pytest.raises(NotFound):
        (await s.request("zzz", Trigger.MANUAL))
    w.git.gate.set()
    await (await s.request("a", Trigger.MANUAL)).future
    assert await s.stop(deadline=1)
    with pytest.raises(ShuttingDown):
        (await s.request("a", Trigger.MANUAL))


async def test_stop_waits_for_the_run_in_flight_and_drops_the_queued() -> None:
    w = world("a")
    s = w.scheduler
    await s.start(startup_sync=False)
    running = await s.request("a", Trigger.MANUAL)
    await until(lambda: w.git.active == 1)
    queued = await s.request("a", Trigger.MANUAL, revision="a" * 40)
    stopping = asyncio.create_task(s.stop(deadline=5))
    await asyncio.sleep(0.05)
    w.git.gate.set()
    assert await stopping
    assert (await running.future).run.result is RunResult.SUCCEEDED
    with pytest.raises(ShuttingDown):
        await queued.future
    assert len(w.runs("a")) == 1


def st(status: Status, seen: str | None = "h1", failed: str | None = None) -> SyncState:
    return SyncState("a", status, last_seen_revision=seen, failed_revision=failed)


@pytest.mark.parametrize(
    ("mode", "state", "head", "expected"),
    [
        (Mode.AUTOMATIC, st(Status.SYNCED), "h2", True),  # the branch moved
        (Mode.MANUAL, st(Status.SYNCED), "h2", True),  # manual records the new plan
        (Mode.AUTOMATIC, st(Status.SYNCED), "h1", False),  # nothing new
        (Mode.AUTOMATIC, st(Status.OUT_OF_SYNC, failed="h1"), "h1", False),  # bad commit waits
        (Mode.AUTOMATIC, st(Status.OUT_OF_SYNC), "h1", True),  # behind: try again
        (Mode.MANUAL, st(Status.OUT_OF_SYNC), "h1", False),  # manual waits for a person
        (Mode.MANUAL, st(Status.UNKNOWN, seen=None), "h1", True),  # never compared
        (Mode.AUTOMATIC, st(Status.SYNCED), None, False),  # branch gone
    ],
)
def test_poll_decision(mode: Mode, state: SyncState, head: str | None, expected: bool) -> None:
    assert should_sync(mode, state, head) is expected


def test_backoff_grows_and_is_capped() -> None:
    delays = [Policy(5, 300).delay(n, lambda: 1.0) for n in range(1, 12)]
    assert delays[0] == 5 and delays[1] == 10 and delays[-1] == 300
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert Policy(5, 300).delay(3, lambda: 0.0) == 10  # jitter keeps at least half


async def test_runs_waiting_for_a_slot_never_start_after_stop() -> None:
    w = world("a", "b", "c", parallel=1)
    s = w.scheduler
    await s.start(startup_sync=False)
    tickets = [(await s.request(i, Trigger.STARTUP)) for i in "abc"]
    await until(lambda: w.git.active == 1)
    stopping = asyncio.create_task(s.stop(deadline=5))
    await asyncio.sleep(0.05)
    w.git.gate.set()
    assert await stopping
    results = await asyncio.gather(*(t.future for t in tickets), return_exceptions=True)
    assert sum(isinstance(r, ShuttingDown) for r in results) == 2
    assert len(w.runs("a", "b", "c")) == 1


class FlakyHeads(FakeGit):
    """A git whose first ls-remotes fail with an error that is not the remote's (a full disk
    while creating the mirror)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def heads(self, remote: Remote) -> dict[str, str]:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        return super().heads(remote)


async def test_a_poll_that_crashes_keeps_polling() -> None:
    store, git = FakeStore(), FlakyHeads(failures=1)
    git.commit(step_files({"greet": "hello()"}))
    cfg = config(workspace("a", poll_interval=0.01))
    s = Scheduler(Engine(store, git), store, config=lambda: cfg, rng=lambda: 0.5)
    await s.start(startup_sync=False)
    try:
        await until(lambda: store.state("a").status is Status.SYNCED)
    finally:
        await s.stop()
    assert git.failures == 0


class LockedOnce(FakeStore):
    """A store whose first apply fails with an error no store should let out (a raw SQLite
    error; SqliteStore names its path in a StoreError): not a SyncdError, so the engine
    crashes and records no run."""

    def __init__(self) -> None:
        super().__init__()
        self.locked = True

    def apply(
        self,
        plan: Plan,
        index: IndexUpdate,
        run: Run,
        state: SyncState,
        base: ApplyBase,
        lease: Lease | None = None,
    ) -> SyncState:
        if self.locked:
            self.locked = False
            raise sqlite3.OperationalError("database is locked")
        return super().apply(plan, index, run, state, base, lease)


async def test_a_crashed_run_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook's run that crashed recorded nothing, so no poll would notice: the loop
    retries it as it retries a transient failure."""
    monkeypatch.setattr(retry, "RUN", Policy(base=0.01, cap=0.01))
    store, git = LockedOnce(), FakeGit()
    git.commit(step_files({"greet": "hello()"}))
    cfg = config(workspace("a"))
    s = Scheduler(Engine(store, git), store, config=lambda: cfg, rng=lambda: 0.5)
    await s.start(startup_sync=False)
    try:
        ticket = await s.request("a", Trigger.WEBHOOK)
        with pytest.raises(sqlite3.OperationalError):
            await ticket.future
        await until(lambda: store.state("a").status is Status.SYNCED)
    finally:
        await s.stop()
    assert not store.locked


class CountingGit(FakeGit):
    """A FakeGit that counts ls-remotes (heads, and resolve through it)."""

    def __init__(self) -> None:
        super().__init__()
        self.ls_remotes = 0

    def heads(self, remote: Remote) -> dict[str, str]:
        self.ls_remotes += 1
        return super().heads(remote)


async def test_the_startup_comparison_asks_each_remote_once() -> None:
    store, git = FakeStore(), CountingGit()
    head = git.commit(step_files({"greet": "hello()"}))
    ids = [f"w{i}" for i in range(6)]
    cfg = config(*(workspace(i) for i in ids))
    s = Scheduler(Engine(store, git), store, config=lambda: cfg, max_parallel=2)
    await s.start(startup_sync=True)
    await until(lambda: all(store.state(i).last_applied_revision == head for i in ids))
    await until(lambda: not s.busy())
    # one ls-remote and one fetch for the six: each run is planned from the shared mirror
    assert (git.ls_remotes, git.fetches) == (1, 1)
    runs = store.runs_finished_since(0, math.inf)
    assert sorted(r.workspace for r in runs) == ids
    assert {(r.trigger, r.result) for r in runs} == {(Trigger.STARTUP, RunResult.SUCCEEDED)}
    assert await s.stop()


async def test_a_remote_down_at_startup_still_gets_every_workspace_a_run() -> None:
    store, git = FakeStore(), CountingGit()
    git.commit(step_files({"greet": "hello()"}))
    git.outage = GitError("connection refused")
    cfg = config(workspace("a"), workspace("b"))
    s = Scheduler(Engine(store, git), store, config=lambda: cfg, rng=lambda: 0.5)
    await s.start(startup_sync=True)
    await until(lambda: len(store.runs_finished_since(0, math.inf)) == 2)
    runs = store.runs_finished_since(0, math.inf)
    assert {(r.workspace, r.result) for r in runs} == {
        ("a", RunResult.FAILED),
        ("b", RunResult.FAILED),
    }
    assert all("connection refused" in (r.error or "") for r in runs)
    assert await s.stop()


async def test_a_crash_in_the_startup_fetch_still_gets_every_workspace_a_run() -> None:
    store, git = FakeStore(), FlakyHeads(failures=1)
    head = git.commit(step_files({"greet": "hello()"}))
    cfg = config(workspace("a"), workspace("b"))
    s = Scheduler(Engine(store, git), store, config=lambda: cfg, rng=lambda: 0.5)
    await s.start(startup_sync=True)
    # the startup ls-remote failed; each run resolved the head itself
    await until(lambda: all(store.state(i).last_applied_revision == head for i in "ab"))
    assert await s.stop()
