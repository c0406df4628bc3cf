"""Health beside sync status, pinned syncs, suspend and resume, against the stateful fakes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pytest

from syncd.core.errors import GitError
from syncd.core.model import (
    Health,
    HealthRecord,
    Mode,
    Run,
    RunResult,
    Status,
    Trigger,
    automation_suspended,
)
from syncd.git import GitSource
from syncd.runs.scheduler import Scheduler, should_sync
from syncd.service.workspaces import Workspaces
from syncd.sync.engine import Engine, Observers
from syncd.sync.health import HealthKeeper, after_run, after_source_failure, after_suspension
from tests.support.fakes import FakeGit, FakeStore, config, step_files, workspace

AUTO = workspace("ws")
MANUAL = workspace("ws", mode=Mode.MANUAL)


def run(result: RunResult, revision: str | None = "abc", error: str | None = None) -> Run:
    return Run("r", "ws", Trigger.POLL, revision, result, 1.0, 2.0, error=error)


# -- the pure part -------------------------------------------------------------------------


def test_a_failure_degrades_and_since_stays_while_it_lasts() -> None:
    fresh = HealthRecord("ws")
    first = after_run(fresh, run(RunResult.FAILED, None, "401"), False, 10.0)
    assert (first.health, first.since, first.error, first.failures) == (
        Health.DEGRADED,
        10.0,
        "401",
        1,
    )
    assert first.source_failing  # no commit to blame: the source's
    again = after_source_failure(first, "401 again", 20.0)
    assert (again.since, again.failures, again.error) == (10.0, 2, "401 again")
    healed = after_run(again, run(RunResult.SUCCEEDED), False, 30.0)
    assert (healed.health, healed.since, healed.error, healed.failures) == (
        Health.HEALTHY,
        30.0,
        None,
        0,
    )
    assert not healed.source_failing


def test_a_bad_commit_degrades_but_is_not_the_sources_fault() -> None:
    bad = after_run(HealthRecord("ws"), run(RunResult.FAILED, "abc", "bad file"), False, 1.0)
    assert bad.health is Health.DEGRADED and not bad.source_failing


def test_suspension_shows_unless_degraded() -> None:
    healthy = HealthRecord("ws", Health.HEALTHY, 1.0)
    assert after_suspension(healthy, True, 5.0).health is Health.SUSPENDED
    assert after_suspension(healthy, True, 5.0).since == 5.0
    degraded = HealthRecord("ws", Health.DEGRADED, 1.0, "boom", 3)
    assert after_suspension(degraded, True, 5.0) == degraded
    # A planned run of a suspended workspace keeps it Suspended, since unchanged.
    suspended = after_suspension(healthy, True, 5.0)
    assert after_run(suspended, run(RunResult.PLANNED), True, 9.0).since == 5.0


# -- pinned syncs, suspend and resume over the engine ---------------------------------------


@dataclass
class World:
    store: FakeStore
    git: FakeGit
    engine: Engine
    keeper: HealthKeeper
    service: Workspaces

    def live(self) -> dict[str, str]:
        return {n: s.content.do for n, s in self.store.live_steps("ws").items()}

    def health(self) -> Health:
        state = self.store.state("ws")
        last = self.store.run(state.last_run_id) if state.last_run_id else None
        return self.keeper.current(AUTO, state, last).health


@pytest.fixture
def world(tmp_path: Path) -> World:
    ticks = count(1000)
    store = FakeStore(clock=lambda: float(next(ticks)))
    git = FakeGit()
    keeper = HealthKeeper(store, clock=lambda: float(next(ticks)))
    engine = Engine(store, git, observer=Observers((keeper,)), clock=lambda: float(next(ticks)))
    cfg = config(AUTO)
    service = Workspaces(lambda: cfg, store, GitSource(tmp_path), engine, health=keeper)
    return World(store, git, engine, keeper, service)


def test_a_pinned_sync_is_out_of_sync_against_the_head_and_suspends(world: World) -> None:
    v1 = world.git.commit(step_files({"greet": "v1"}))
    v2 = world.git.commit(step_files({"greet": "v2"}))
    world.engine.sync(AUTO, Trigger.WEBHOOK)
    out = world.engine.sync(AUTO, Trigger.MANUAL, revision=v1)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    state = world.store.state("ws")
    assert world.live() == {"greet": "v1"}
    assert state.status is Status.OUT_OF_SYNC and state.pinned_revision == v1
    assert state.last_applied_revision == v1 and state.last_seen_revision == v2
    assert automation_suspended(AUTO.mode, state) and world.health() is Health.SUSPENDED
    view = world.service.view(AUTO)
    assert view["suspended"] and view["pinned_revision"] == v1
    assert view["health"]["status"] == "Suspended"
    # Polls see nothing to do; a poll's run (the branch moved) records a plan, applies nothing.
    assert not should_sync(AUTO.mode, state, v2)
    v3 = world.git.commit(step_files({"greet": "v3"}))
    assert should_sync(AUTO.mode, state, v3)
    polled = world.engine.sync(AUTO, Trigger.POLL, head=v3)
    assert polled.run.result is RunResult.PLANNED
    assert world.live() == {"greet": "v1"} and world.store.state("ws").pinned_revision == v1
    assert not should_sync(AUTO.mode, world.store.state("ws"), v3)
    # Resume, and the manual sync it asks for, return it to the head.
    world.service.resume(AUTO)
    back = world.service.sync_now(AUTO)
    assert back.run.result is RunResult.SUCCEEDED
    state = world.store.state("ws")
    assert world.live() == {"greet": "v3"} and state.pinned_revision is None
    assert state.status is Status.SYNCED and not automation_suspended(AUTO.mode, state)
    assert world.health() is Health.HEALTHY


def test_a_pin_at_the_head_is_synced_and_a_manual_workspace_is_not_suspended(
    world: World,
) -> None:
    head = world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(MANUAL, Trigger.MANUAL, revision=head)
    state = world.store.state("ws")
    assert state.status is Status.SYNCED and state.pinned_revision == head
    assert not automation_suspended(Mode.MANUAL, state)
    assert automation_suspended(Mode.AUTOMATIC, state)


def test_a_suspended_automatic_workspace_applies_nothing_by_itself(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(AUTO, Trigger.WEBHOOK)
    view = world.service.suspend(AUTO)
    assert view["suspended"] and view["health"]["status"] == "Suspended"
    world.git.commit(step_files({"greet": "v2"}))
    for trigger in (Trigger.POLL, Trigger.WEBHOOK, Trigger.DRIFT, Trigger.STARTUP):
        assert world.engine.sync(AUTO, trigger).run.result is RunResult.PLANNED
    assert world.live() == {"greet": "v1"}
    # The runs saved their state: the suspension is still there.
    assert world.store.state("ws").suspended
    # A person's sync still applies; the suspension stays until resume.
    assert world.engine.sync(AUTO, Trigger.MANUAL).run.result is RunResult.SUCCEEDED
    assert world.live() == {"greet": "v2"} and world.store.state("ws").suspended
    world.service.resume(AUTO)
    assert not world.store.state("ws").suspended and world.health() is Health.HEALTHY


def test_a_run_in_flight_does_not_undo_a_suspend(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}))
    state = world.store.state("ws")  # what a run read before the suspend
    world.store.set_suspended("ws", True)
    world.store.save_state(state)
    assert world.store.state("ws").suspended


def test_a_failing_source_is_one_failed_run_and_its_recovery_another(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(AUTO, Trigger.WEBHOOK)
    error = GitError("remote rejected the credentials of user 'bot'")
    for _ in range(3):  # three polls fail: the first is a run, the others are counted
        if world.keeper.source_failed("ws", str(error)):
            world.engine.record_source_failure(AUTO, Trigger.POLL, error)
    failed = [r for r in world.store.runs("ws") if r.result is RunResult.FAILED]
    assert len(failed) == 1 and failed[0].trigger is Trigger.POLL
    record = world.store.health("ws")
    assert record is not None and record.health is Health.DEGRADED
    assert record.failures == 3 and record.error == str(error) and record.source_failing
    assert world.service.view(AUTO)["health"]["failures"] == 3
    assert world.service.health(AUTO)["source_reachable"] is False
    # The branch cannot be compared: Unknown, as Argo CD says of a comparison error; what
    # the workspace holds is kept.
    state = world.store.state("ws")
    assert (
        state.status is Status.UNKNOWN and state.last_applied_revision == world.git.branches["main"]
    )
    # The source answers: a sync ends the failure, and compares again.
    assert world.keeper.failing_sources(["ws", "other"]) == {"ws"}
    assert world.engine.sync(AUTO, Trigger.POLL).run.result is RunResult.SUCCEEDED
    assert world.health() is Health.HEALTHY and not world.keeper.failing_sources(["ws"])
    assert world.store.state("ws").status is Status.SYNCED


def test_the_status_line_counts_health(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(AUTO, Trigger.WEBHOOK)
    assert world.service.status_line() == "1 workspaces, 0 OutOfSync, 0 Degraded, 0 Suspended"
    world.service.suspend(AUTO)
    assert world.service.status_line() == "1 workspaces, 0 OutOfSync, 0 Degraded, 1 Suspended"


# -- the scheduler's polls ---------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.anyio
async def test_polls_record_a_failing_source_once_and_sync_when_it_is_back() -> None:
    store, git = FakeStore(), FakeGit()
    git.commit(step_files({"greet": "v1"}))
    polled = workspace("ws", poll_interval=0.02)
    cfg = config(polled)
    keeper = HealthKeeper(store)
    engine = Engine(store, git, observer=Observers((keeper,)))
    s = Scheduler(engine, store, config=lambda: cfg, rng=lambda: 0.0, health=keeper)
    engine.sync(polled, Trigger.STARTUP)
    git.outage = GitError("remote rejected the credentials")
    await s.start(startup_sync=False)
    try:

        def failures() -> int:
            record = store.health("ws")
            return record.failures if record else 0

        await until(lambda: failures() >= 3)
        runs = store.runs_finished_since(0, math.inf)
        assert [r.result for r in runs] == [RunResult.SUCCEEDED, RunResult.FAILED]
        git.outage = None
        await until(lambda: not keeper.failing_sources(["ws"]))
        await until(lambda: store.runs_finished_since(0, math.inf)[-1].trigger is Trigger.POLL)
        last = store.runs_finished_since(0, math.inf)[-1]
        assert last.result is RunResult.SUCCEEDED
        record = store.health("ws")
        assert record is not None and record.health is Health.HEALTHY
    finally:
        await s.stop()
