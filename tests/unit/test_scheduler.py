"""Coalescing, bounds and the poll decision, with a fake engine that keeps state."""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from syncd.engine import Outcome
from syncd.errors import NotFound
from syncd.model import Mode, Run, RunResult, Status, SyncState, Trigger
from syncd.retry import Policy
from syncd.scheduler import (
    MAX_QUEUED_PER_WORKSPACE,
    QueueFull,
    Scheduler,
    ShuttingDown,
    should_sync,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeEngine:
    """Records runs; each run waits until the test lets it finish."""

    gate: threading.Event = field(default_factory=threading.Event)
    runs: list[tuple[str, Trigger, str | None, bool]] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail: bool = False

    def sync(
        self, ws, trigger, revision=None, dry_run=False, progress=None, run_id=None, head=None
    ) -> Outcome:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        self.gate.wait(5)
        with self.lock:
            self.active -= 1
            self.runs.append((ws.id, trigger, revision, dry_run))
        result = RunResult.FAILED if self.fail else RunResult.SUCCEEDED
        run = Run(run_id or "x", ws.id, trigger, "abc", result, 0.0, 1.0)
        return Outcome(run, None, SyncState(ws.id))


def config(*ids: str):
    workspaces = [SimpleNamespace(id=i, poll_interval=0, source=None) for i in ids]

    def workspace(ws_id: str):
        for ws in workspaces:
            if ws.id == ws_id:
                return ws
        raise NotFound(ws_id)

    return SimpleNamespace(workspaces=workspaces, workspace=workspace)


def scheduler(engine: FakeEngine, *ids: str, parallel: int = 4) -> Scheduler:
    cfg = config(*ids)
    return Scheduler(engine, store=None, config=lambda: cfg, max_parallel=parallel, rng=lambda: 0.5)  # type: ignore[arg-type]


async def until(cond, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_many_requests_coalesce_into_one_queued_run() -> None:
    engine = FakeEngine()
    s = scheduler(engine, "a")
    await s.start(startup_sync=False)
    first = s.request("a", Trigger.WEBHOOK)
    await until(lambda: engine.active == 1)
    tickets = [s.request("a", Trigger.WEBHOOK) for _ in range(100)]
    assert all(t.coalesced for t in tickets[1:])
    assert len({t.run_id for t in tickets}) == 1
    engine.gate.set()
    await asyncio.gather(first.future, *(t.future for t in tickets))
    assert len(engine.runs) == 2


async def test_manual_request_upgrades_a_queued_automatic_one() -> None:
    engine = FakeEngine()
    s = scheduler(engine, "a")
    await s.start(startup_sync=False)
    s.request("a", Trigger.POLL)
    await until(lambda: engine.active == 1)
    s.request("a", Trigger.WEBHOOK)
    manual = s.request("a", Trigger.MANUAL)
    engine.gate.set()
    outcome = await manual.future
    assert outcome.run.trigger is Trigger.MANUAL
    assert [r[1] for r in engine.runs] == [Trigger.POLL, Trigger.MANUAL]


async def test_distinct_pinned_requests_queue_up_to_a_bound() -> None:
    engine = FakeEngine()
    s = scheduler(engine, "a")
    await s.start(startup_sync=False)
    s.request("a", Trigger.MANUAL)
    await until(lambda: engine.active == 1)
    for i in range(MAX_QUEUED_PER_WORKSPACE):
        s.request("a", Trigger.MANUAL, revision=f"{i:040x}")
    with pytest.raises(QueueFull):
        s.request("a", Trigger.MANUAL, revision="f" * 40)
    engine.gate.set()
    await until(lambda: len(engine.runs) == 1 + MAX_QUEUED_PER_WORKSPACE)


async def test_parallelism_across_workspaces_is_bounded() -> None:
    engine = FakeEngine()
    s = scheduler(engine, *"abcdef", parallel=2)
    await s.start(startup_sync=False)
    tickets = [s.request(w, Trigger.POLL) for w in "abcdef"]
    await until(lambda: engine.active == 2)
    await asyncio.sleep(0.05)
    assert engine.active == 2
    engine.gate.set()
    await asyncio.gather(*(t.future for t in tickets))
    assert engine.peak == 2 and len(engine.runs) == 6


async def test_unknown_workspace_and_stopping_are_refused() -> None:
    engine = FakeEngine()
    s = scheduler(engine, "a")
    await s.start(startup_sync=False)
    with pytest.raises(NotFound):
        s.request("zzz", Trigger.MANUAL)
    engine.gate.set()
    await s.request("a", Trigger.MANUAL).future
    assert await s.stop(deadline=1)
    with pytest.raises(ShuttingDown):
        s.request("a", Trigger.MANUAL)


async def test_stop_waits_for_the_run_in_flight_and_drops_the_queued() -> None:
    engine = FakeEngine()
    s = scheduler(engine, "a")
    await s.start(startup_sync=False)
    running = s.request("a", Trigger.MANUAL)
    await until(lambda: engine.active == 1)
    queued = s.request("a", Trigger.MANUAL, revision="a" * 40)
    stopping = asyncio.create_task(s.stop(deadline=5))
    await asyncio.sleep(0.05)
    engine.gate.set()
    assert await stopping
    assert (await running.future).run.result is RunResult.SUCCEEDED
    with pytest.raises(ShuttingDown):
        await queued.future
    assert len(engine.runs) == 1


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
    engine = FakeEngine()
    s = scheduler(engine, "a", "b", "c", parallel=1)
    await s.start(startup_sync=False)
    tickets = [s.request(w, Trigger.STARTUP) for w in "abc"]
    await until(lambda: engine.active == 1)
    stopping = asyncio.create_task(s.stop(deadline=5))
    await asyncio.sleep(0.05)
    engine.gate.set()
    assert await stopping
    results = await asyncio.gather(*(t.future for t in tickets), return_exceptions=True)
    assert sum(isinstance(r, ShuttingDown) for r in results) == 2
    assert len(engine.runs) == 1
