"""The Pruner, the daemon's history pruning task, over the FakeStore: passes come one after the
other until the daemon stops, a failing pass is logged and the next one tries again, a stop
ends a pass after its current batch, and the audit goes by the longest `keep_days`."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from syncd.config import Config
from syncd.config.types import HistoryConfig
from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.core.model import Run, RunResult, Status, SyncState, Trigger
from syncd.ops.logs import FIELDS
from syncd.service.prune import DAY, Pruner
from syncd.store import StoreError
from tests.support.fakes import FakeStore, config, workspace

NOW = 100 * DAY


def filled(runs: int = 30, kind: type[FakeStore] = FakeStore) -> FakeStore:
    store = kind(clock=lambda: NOW)
    for i in range(runs):
        run = Run(f"r{i}", "dev", Trigger.POLL, None, RunResult.FAILED, i * DAY, i * DAY + 1)
        store.record_run(run, SyncState("dev", Status.UNKNOWN, last_run_id=run.id))
    for day in (5, 50, 95):
        store.record_audit(AuditEntry(day * DAY, "ci", "api", "sync", "ok", 200, "dev"))
    return store


def cfg(**history: float) -> Config:
    return config(replace(workspace("dev"), history=HistoryConfig(**history)))  # type: ignore[arg-type]


def test_a_pass_prunes_runs_by_age_and_the_audit_by_the_longest_keep_days() -> None:
    store = filled()
    pruner = Pruner(store, lambda: cfg(keep_days=80), batch=7, pause=0.0, clock=lambda: NOW)
    done = asyncio.run(pruner.prune())
    assert done.runs == 20  # started before day 20
    assert len(store.runs("dev", 100)) == 10
    assert done.audit == 1  # the entry of day 5
    assert [e.at for e in store.audit_entries(AuditQuery())] == [95 * DAY, 50 * DAY]
    assert len(done.batch_seconds) == 3 + 1  # 7 + 7 + 6 runs, then one audit batch


def test_passes_repeat_until_stopped_and_a_failing_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = filled()
    configs = [cfg(keep_runs=25), cfg(keep_runs=20), cfg(keep_runs=10)]
    seen: list[int] = []

    def next_config() -> Config:
        seen.append(len(store.runs("dev", 100)))
        if len(seen) == 2:
            raise StoreError("the store is away")
        return configs[min(len(seen), len(configs)) - 1]

    async def scenario() -> None:
        stop = asyncio.Event()
        pruner = Pruner(store, next_config, batch=500, pause=0.0, every=0.001, first_delay=0.001)
        task = asyncio.create_task(pruner.run(stop))
        for _ in range(2000):  # bounded: a pass takes well under a millisecond
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.001)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert seen[:4] == [30, 25, 25, 10]
    failed = [r for r in caplog.records if r.getMessage() == "history pruning failed"]
    assert [getattr(r, FIELDS)["error"] for r in failed] == ["the store is away"]


def test_a_stop_ends_a_pass_after_its_current_batch() -> None:
    stop = asyncio.Event()
    counted: list[int] = []

    class StopsAfterABatch(FakeStore):
        def prune_runs(
            self, ws: str, keep_runs: int | None, older_than: float | None, limit: int
        ) -> int:
            stop.set()  # the daemon stops while this batch runs
            return super().prune_runs(ws, keep_runs, older_than, limit)

    store = filled(kind=StopsAfterABatch)
    pruner = Pruner(store, lambda: cfg(keep_runs=1), counted.append, batch=5, pause=0.0)
    done = asyncio.run(pruner.prune(stop))
    assert (done.runs, done.stopped, done.audit) == (5, True, 0)
    assert counted == [5]
