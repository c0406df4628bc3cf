"""A check that fails after an apply, in the running parts: the real engine and scheduler over
the stateful fakes, with a real command as the check (it fails once a flag file exists). The
run is `failed` with `check <name>: ...`; with `on_check_failure: rollback` the workspace goes
back to the revision applied before, pinned and suspended, audited and counted; with `keep`
the apply stays and its commit is not tried again."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from syncd.config import WorkspaceConfig
from syncd.config.types import CheckConfig, CommandCheck
from syncd.core.audit_model import AuditQuery
from syncd.core.model import Health, RunResult, Status, Trigger, automation_suspended
from syncd.notify.digest import summarize
from syncd.ops.metrics import Metrics
from syncd.runs.scheduler import Scheduler
from syncd.sync.engine import Engine, Observers
from syncd.sync.health import HealthKeeper
from tests.support.fakes import FakeGit, FakeStore, config, step_files, workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def checked(flag: Path, on_failure: str) -> WorkspaceConfig:
    """A workspace whose check fails once `flag` exists (retried once, at once)."""
    script = f"import os, sys; sys.exit(os.path.exists({str(flag)!r}))"
    smoke = CheckConfig(
        "smoke", command=CommandCheck((sys.executable, "-c", script)), retries=1, interval=0
    )
    return dataclasses.replace(
        workspace("prod"),
        checks=(smoke,),
        on_check_failure=on_failure,  # type: ignore[arg-type]
    )


class World:
    def __init__(self, ws: WorkspaceConfig) -> None:
        self.store, self.git, self.metrics = FakeStore(), FakeGit(), Metrics()
        self.health = HealthKeeper(self.store)
        engine = Engine(self.store, self.git, observer=Observers((self.health, self.metrics)))
        cfg = config(ws)
        self.scheduler = Scheduler(
            engine, self.store, config=lambda: cfg, rng=lambda: 0.5, health=self.health
        )

    async def sync(self) -> tuple[RunResult, str | None]:
        ticket = await self.scheduler.request("prod", Trigger.WEBHOOK)
        run = (await ticket.future).run
        return run.result, run.error

    def counted(self, result: str) -> float | None:
        labels = {"workspace": "prod", "check": "smoke", "result": result}
        return self.metrics.registry.get_sample_value("syncd_checks_total", labels)


async def test_a_failed_check_rolls_back_to_the_revision_applied_before(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    ws = checked(flag, "rollback")
    w = World(ws)
    await w.scheduler.start(startup_sync=False)
    try:
        good = w.git.commit(step_files({"greet": "hello()"}))
        assert await w.sync() == (RunResult.SUCCEEDED, None)
        assert w.counted("ok") == 1
        good_steps = w.store.live_steps("prod")
        # A commit that breaks what the check watches.
        flag.touch()
        bad = w.git.commit(step_files({"greet": "hello(broken)"}))
        result, error = await w.sync()
        assert result is RunResult.FAILED
        assert error == f"check smoke: {sys.executable}: exit status 1 (after 2 tries)"
        assert w.counted("failed") == 1
        # Back at the good revision, pinned there, and so suspended (as a rollback is).
        state = w.store.state("prod")
        assert state.last_applied_revision == good and state.pinned_revision == good
        assert state.status is Status.OUT_OF_SYNC and automation_suspended(ws.mode, state)
        assert {n: s.content for n, s in w.store.live_steps("prod").items()} == {
            n: s.content for n, s in good_steps.items()
        }
        back, failed, first = w.store.runs("prod")
        assert (failed.revision, failed.result, failed.error) == (bad, RunResult.FAILED, error)
        # The checks are part of the run, as the API shows it.
        assert [(c.name, c.result) for c in failed.checks] == [("smoke", "failed")]
        assert failed.to_dict()["checks"][0]["detail"] in error
        assert [(c.name, c.result) for c in first.checks] == [("smoke", "ok")]
        assert (back.revision, back.result, back.actor) == (
            good,
            RunResult.SUCCEEDED,
            "syncd:check smoke",
        )
        assert first.result is RunResult.SUCCEEDED
        [entry] = w.store.audit_entries(AuditQuery(workspace="prod"))
        assert (entry.actor, entry.via, entry.action, entry.revision, entry.result) == (
            "syncd",
            "daemon",
            "rollback",
            good,
            "ok",
        )
        assert entry.detail == error
        health = w.health.current(ws, state, back)
        assert health.health is Health.SUSPENDED
        # The digest tells of the failed run (its end is when the check failed).
        [report] = summarize([ws], {"prod": w.store.runs_finished_since(0, 1e12)}, 0, ())[0]
        assert [f.error for f in report.failures] == [error]
        # A poll does not undo the rollback: the workspace is pinned.
        assert (await w.sync())[0] is RunResult.PLANNED
        assert w.store.state("prod").last_applied_revision == good
    finally:
        await w.scheduler.stop()


async def test_with_keep_the_apply_stays_and_its_commit_is_not_tried_again(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    w = World(checked(flag, "keep"))
    await w.scheduler.start(startup_sync=False)
    try:
        bad = w.git.commit(step_files({"greet": "hello(broken)"}))
        result, error = await w.sync()
        assert result is RunResult.FAILED and error is not None
        assert error.startswith("check smoke: ")
        state = w.store.state("prod")
        assert state.last_applied_revision == bad and state.failed_revision == bad
        assert state.pinned_revision is None and not state.suspended
        assert [r.result for r in w.store.runs("prod")] == [RunResult.FAILED]
        assert w.store.audit_entries(AuditQuery(workspace="prod")) == []
        last = w.store.run(state.last_run_id or "")
        ws = w.scheduler.config().workspaces[0]
        assert w.health.current(ws, state, last).health is Health.DEGRADED
    finally:
        await w.scheduler.stop()
