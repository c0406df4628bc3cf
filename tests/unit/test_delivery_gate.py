"""Change windows and promotion gates in the running parts: the real engine and scheduler over
the stateful fakes, with a clock the test moves (no sleeping across minutes). A held change is
planned, shown as `blocked` and counted, and applies by itself when the scheduler's timer for
its gate fires; a person's sync inside a window that takes none is refused with 409."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syncd.cli import output
from syncd.config import Config, WorkspaceConfig
from syncd.config.types import PromotionConfig, WindowConfig
from syncd.core.access import Access
from syncd.core.errors import Conflict, GitError
from syncd.core.model import Health, RunResult, Status, StepContent, Trigger
from syncd.git import GitSource
from syncd.ops.metrics import Metrics
from syncd.runs.scheduler import Scheduler
from syncd.service.actions import Actions, Inline, RunsHere
from syncd.service.answers import status_of
from syncd.service.audit import Actor
from syncd.service.workspaces import Workspaces
from syncd.sync.engine import Engine, Observers
from syncd.sync.health import HealthKeeper
from tests.support.daemon import metric
from tests.support.fakes import FakeGit, FakeStore, config, step_files, workspace

pytestmark = pytest.mark.anyio
BERLIN = ZoneInfo("Europe/Berlin")
FREEZE = WindowConfig("deny", "0 18 * * 5", 63 * 3600, "Europe/Berlin")  # Fri 18:00 - Mon 09:00


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN).timestamp()


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    clock: Clock
    store: FakeStore
    git: FakeGit
    metrics: Metrics
    scheduler: Scheduler
    service: Workspaces
    cfg: list[Config] = field(default_factory=list)

    async def sync(self, ws_id: str, trigger: Trigger = Trigger.WEBHOOK) -> RunResult:
        ticket = await self.scheduler.request(ws_id, trigger)
        return (await ticket.future).run.result

    def blocked(self, ws_id: str) -> dict[str, str | None] | None:
        view = self.service.view(self.service.get(ws_id))
        assert isinstance(view["blocked"], dict | None)
        return view["blocked"]

    def gauge(self, ws_id: str, reason: str) -> float:
        """The workspace's `syncd_workspace_blocked` for `reason` (0 when it has no series)."""
        text = self.metrics.render().decode()
        return metric(text, "syncd_workspace_blocked", workspace=ws_id, reason=reason)


def world(now: float, *workspaces: WorkspaceConfig) -> World:
    clock = Clock(now)
    store, git, metrics = FakeStore(clock=clock), FakeGit(), Metrics()
    for ws in workspaces:
        metrics.add_workspace(ws.id)
    git.commit(step_files({"greet": "hello()"}))
    health = HealthKeeper(store, clock=clock)
    engine = Engine(store, git, observer=Observers((health, metrics)), clock=clock)
    cfg = config(*workspaces)
    scheduler = Scheduler(engine, store, config=lambda: cfg, rng=lambda: 0.5, health=health)
    service = Workspaces(lambda: cfg, store, GitSource(Path("unused")), engine, health=health)
    return World(clock, store, git, metrics, scheduler, service)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_a_push_in_a_deny_window_is_held_and_applies_when_the_window_opens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    prod = dataclasses.replace(workspace("prod"), windows=(FREEZE,))
    w = world(berlin(2025, 6, 5, 12, 0), prod)  # a Thursday: open
    await w.scheduler.start(startup_sync=False)
    try:
        assert await w.sync("prod") is RunResult.SUCCEEDED
        assert w.blocked("prod") is None and w.gauge("prod", "window") == 0
        # Friday evening: a push is planned, not applied, and says why and until when.
        w.clock.now = berlin(2025, 6, 6, 20, 0)
        new = w.git.commit(step_files({"greet": "hello(friday)"}))
        assert await w.sync("prod") is RunResult.PLANNED
        state = w.store.state("prod")
        assert state.status is Status.OUT_OF_SYNC and state.last_applied_revision != new
        blocked = w.blocked("prod")
        assert blocked is not None and blocked["reason"] == "window"
        assert blocked["until"] == "2025-06-09T07:00:00.000Z"  # Monday 09:00 in Berlin (CEST)
        assert w.gauge("prod", "window") == 1 and w.gauge("prod", "promotion") == 0
        output.status_table([w.service.view(prod)])  # `syncd status`
        assert "held by window until 2025-06-09T07:00:00.000Z" in capsys.readouterr().out
        assert w.scheduler.gate_timers.until("prod") == berlin(2025, 6, 9, 9, 0)
        # A timer that fires early (Saturday) is armed again and runs nothing.
        w.clock.now = berlin(2025, 6, 7, 12, 0)
        w.scheduler.gate_timers.fire("prod")
        assert w.scheduler.gate_timers.until("prod") == berlin(2025, 6, 9, 9, 0)
        assert len(w.store.runs("prod")) == 2
        # Monday 09:00: the timer syncs it, with no poll or webhook.
        w.clock.now = berlin(2025, 6, 9, 9, 0, 1)
        w.scheduler.gate_timers.fire("prod")
        await until(lambda: w.store.state("prod").last_applied_revision == new)
        assert w.store.state("prod").status is Status.SYNCED
        assert w.blocked("prod") is None and w.gauge("prod", "window") == 0
        assert w.scheduler.gate_timers.until("prod") is None
        # An outside edit in the next freeze is not healed by itself either.
        w.clock.now = berlin(2025, 6, 13, 19, 0)
        w.service.put_step(w.service.get("prod"), "greet", StepContent("true", "edited()"))
        assert await w.sync("prod", Trigger.DRIFT) is RunResult.PLANNED
        assert w.blocked("prod") is not None
        # A person's sync is never held by the gate (the window allows manual syncs).
        assert await w.sync("prod", Trigger.MANUAL) is RunResult.SUCCEEDED
    finally:
        await w.scheduler.stop()


async def test_promotion_waits_for_the_upstream_to_apply_and_soak_while_healthy() -> None:
    staging = workspace("staging")
    prod = dataclasses.replace(workspace("prod"), promotion=PromotionConfig("staging", 900))
    w = world(1000.0, staging, prod)
    await w.scheduler.start(startup_sync=False)
    try:
        first = w.store.state("prod").last_applied_revision
        # Staging has not applied it: prod plans it and waits, with no time to wait for.
        assert await w.sync("prod") is RunResult.PLANNED
        assert w.store.state("prod").last_applied_revision == first
        blocked = w.blocked("prod")
        assert blocked is not None and blocked["reason"] == "promotion"
        assert blocked["until"] is None and "not applied" in str(blocked["detail"])
        assert w.gauge("prod", "promotion") == 1
        # Staging applies it: that wakes prod, which now waits for the soak (15 minutes).
        assert await w.sync("staging") is RunResult.SUCCEEDED
        await until(lambda: w.scheduler.gate_timers.until("prod") == 1900.0)
        assert len(w.store.runs("prod")) == 2
        # Staging turns Degraded during the soak: the timer's run finds it held, with no until.
        w.clock.now = 1500.0
        w.git.outage = GitError("https://git.example: connection refused")
        assert await w.sync("staging") is RunResult.FAILED
        w.git.outage = None
        w.clock.now = 1901.0
        w.scheduler.gate_timers.fire("prod")
        await until(lambda: len(w.store.runs("prod")) == 3)
        blocked = w.blocked("prod")
        assert blocked is not None and blocked["until"] is None
        assert "Degraded" in str(blocked["detail"])
        assert w.store.state("prod").last_applied_revision == first
        # Healthy again at 2000: the soak starts over, and prod applies by itself at 2900.
        w.clock.now = 2000.0
        assert await w.sync("staging") is RunResult.SUCCEEDED
        assert w.store.health("staging") is not None
        assert w.store.health("staging").health is Health.HEALTHY  # type: ignore[union-attr]
        await until(lambda: w.scheduler.gate_timers.until("prod") == 2900.0)
        w.clock.now = 2900.5
        w.scheduler.gate_timers.fire("prod")
        await until(lambda: w.store.state("prod").status is Status.SYNCED)
        assert w.store.state("prod").last_applied_revision == w.git.branches["main"]
        assert w.gauge("prod", "promotion") == 0 and w.blocked("prod") is None
    finally:
        await w.scheduler.stop()


async def test_a_manual_sync_in_a_window_without_manual_syncs_is_refused_with_409() -> None:
    closed = dataclasses.replace(FREEZE, manual_sync=False)
    prod = dataclasses.replace(workspace("prod"), windows=(closed,))
    w = world(berlin(2025, 6, 6, 20, 0), prod)
    acts = Actions(w.service, Inline(), RunsHere(w.service))
    ops = Actor("ops", "api", Access.of({"read", "sync"}))
    with pytest.raises(Conflict) as refused:
        async with acts.act(ops, "sync", "prod") as act:
            await act.sync(None, dry_run=False)
    assert status_of(refused.value) == 409
    text = str(refused.value)
    assert "closed change window" in text and '"0 18 * * 5"' in text
    assert "2025-06-09T07:00:00.000Z" in text and "manual_sync: false" in text
    assert w.store.runs("prod") == []  # nothing was run
    with pytest.raises(Conflict):  # a resume's sync to the head is a manual sync too
        async with acts.act(ops, "resume", "prod") as act:
            await act.resume()
    assert not w.store.state("prod").suspended and w.store.runs("prod") == []
    # A dry run applies nothing: it is not refused.
    async with acts.act(ops, "sync", "prod") as act:
        ticket = await act.sync(None, dry_run=True)
    assert (await ticket.future).run.dry_run
    # Once the window is open, the same sync goes through.
    w.clock.now = berlin(2025, 6, 9, 10, 0)
    async with acts.act(ops, "sync", "prod") as act:
        ticket = await act.sync(None, dry_run=False)
    assert (await ticket.future).run.result is RunResult.SUCCEEDED
