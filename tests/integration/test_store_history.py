"""History pruning in the stores, the same contract on the FakeStore, SQLite and PostgreSQL:
`keep_runs` keeps the newest runs (in the order `runs` lists them, ties too), `keep_days` lets
older ones go, the newest succeeded run, the newest applied one and the state's last run always
stay, other workspaces are untouched, and a batch deletes at most its limit, oldest first. The
audit is pruned by age the same way.

On the real stores, 100,000 runs are pruned by the `Pruner` in batches while another thread
records runs: every batch is at most its size, and that writer's records get through between
batches (no transaction holds the table for the whole pruning).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from syncd.config.types import HistoryConfig
from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.core.model import Run, RunResult, Status, SyncState, Trigger
from syncd.service.prune import DAY, Pruner
from syncd.store import SqliteStore, Store
from tests.support.fakes import FakeStore, config, workspace
from tests.support.stores import REAL, open_store


def run(
    i: int,
    ws: str = "dev",
    result: RunResult = RunResult.FAILED,
    started: float | None = None,
    dry_run: bool = False,
) -> Run:
    at = 1000.0 + i if started is None else started
    return Run(f"{ws}-{i}", ws, Trigger.POLL, "abc", result, at, at + 0.5, dry_run=dry_run)


def record(store: Store, *runs: Run, last: str | None = None) -> None:
    for r in runs:
        store.record_run(r, SyncState(r.workspace, Status.SYNCED, last_run_id=last or r.id))


def ids(store: Store, ws: str = "dev") -> list[str]:
    return [r.id for r in store.runs(ws, 1000)]


def test_keep_runs_keeps_the_newest_as_runs_lists_them(store: Store) -> None:
    record(store, *(run(i) for i in range(6)))
    # Two more started at the same instant as dev-5: the last recorded counts as newer.
    record(store, run(6, started=1005.0), run(7, started=1005.0))
    assert ids(store)[:3] == ["dev-7", "dev-6", "dev-5"]
    assert store.prune_runs("dev", 3, None, 500) == 5
    assert ids(store) == ["dev-7", "dev-6", "dev-5"]
    assert store.prune_runs("dev", 3, None, 500) == 0


def test_keep_days_lets_older_runs_go(store: Store) -> None:
    record(store, *(run(i) for i in range(10)))
    # Started before 1004.0: dev-0 to dev-3 go; a run started at exactly the cut-off stays.
    assert store.prune_runs("dev", None, 1004.0, 500) == 4
    assert ids(store) == [f"dev-{i}" for i in range(9, 3, -1)]


def test_both_rules_prune_what_either_lets_go(store: Store) -> None:
    record(store, *(run(i) for i in range(10)))
    assert store.prune_runs("dev", 8, 1005.0, 500) == 5
    assert len(ids(store)) == 5
    assert store.prune_runs("dev", 2, 1000.0, 500) == 3
    assert ids(store) == ["dev-9", "dev-8"]


def test_no_rule_prunes_nothing(store: Store) -> None:
    record(store, *(run(i) for i in range(3)))
    assert store.prune_runs("dev", None, None, 500) == 0
    assert len(ids(store)) == 3


def test_the_newest_succeeded_and_applied_runs_and_the_last_run_stay(store: Store) -> None:
    applied = run(0, result=RunResult.SUCCEEDED)
    dry = run(1, result=RunResult.SUCCEEDED, dry_run=True)
    failed = [run(i) for i in range(2, 8)]
    record(store, applied, dry, *failed[:-1])
    # The state names an old run as its last (a run recorded late by another writer).
    record(store, failed[-1], last="dev-2")
    # Every run is older than the cut-off; the newest, dev-7, goes by that rule, but not
    # dev-2 (the last run), dev-1 (the newest success) nor dev-0 (the newest applied).
    assert store.prune_runs("dev", 1, 10_000.0, 500) == 5
    assert ids(store) == ["dev-2", "dev-1", "dev-0"]


def test_other_workspaces_are_untouched(store: Store) -> None:
    record(store, *(run(i) for i in range(5)), *(run(i, "prod") for i in range(5)))
    assert store.prune_runs("dev", 1, None, 500) == 4
    assert len(ids(store, "prod")) == 5


def test_a_batch_deletes_at_most_its_limit_oldest_first(store: Store) -> None:
    record(store, *(run(i) for i in range(25)))
    assert store.prune_runs("dev", 5, None, 7) == 7
    assert ids(store)[-1] == "dev-7"  # dev-0 to dev-6 went first
    assert store.prune_runs("dev", 5, None, 7) == 7
    assert store.prune_runs("dev", 5, None, 7) == 6  # short: nothing left to go
    assert store.prune_runs("dev", 5, None, 7) == 0
    assert ids(store) == [f"dev-{i}" for i in range(24, 19, -1)]


def test_keep_runs_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="keep_runs"):
        store.prune_runs("dev", 0, None, 500)


def test_the_audit_is_pruned_by_age_in_batches(store: Store) -> None:
    for i in range(10):
        store.record_audit(AuditEntry(float(i), "ci", "api", "sync", "ok", 200, "dev"))
    assert store.prune_audit(6.0, 4) == 4
    assert store.prune_audit(6.0, 4) == 2
    assert store.prune_audit(6.0, 4) == 0
    left = store.audit_entries(AuditQuery())
    assert [e.at for e in left] == [9.0, 8.0, 7.0, 6.0]
    # The ids go on rising after the oldest entries went.
    store.record_audit(AuditEntry(10.0, "ci", "api", "sync", "ok", 200, "dev"))
    newest = store.audit_entries(AuditQuery(limit=2))
    assert (newest[0].id or 0) > (newest[1].id or 0)


# -- 100,000 runs, pruned by the Pruner while a writer records ------------------------------

BIG = 100_000
BATCH = 500


def _fill_sqlite(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO runs (id, workspace, trigger, revision, result, started_at, finished_at)"
        " SELECT 'old-' || i, 'dev', 'poll', 'abc', 'failed', 1000.0 + i, 1000.5 + i FROM n",
        (BIG - 1,),
    )
    db.execute("COMMIT")
    db.close()


def _fill_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO runs (id, workspace, trigger, revision, result, started_at, finished_at)"
            " SELECT 'old-' || i, 'dev', 'poll', 'abc', 'failed', 1000.0 + i, 1000.5 + i"
            " FROM generate_series(0, %s) AS i",
            (BIG - 1,),
        )


@pytest.mark.parametrize("kind", REAL)
def test_100k_runs_are_pruned_in_batches_that_let_a_writer_through(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    real = open_store(kind, tmp_path, request)
    try:
        if isinstance(real, SqliteStore):
            _fill_sqlite(real.path)
        else:
            _fill_postgres(request.getfixturevalue("pg_url"))
        cfg = config(replace(workspace("dev"), history=HistoryConfig(keep_runs=10)))
        pruner = Pruner(real, lambda: cfg, batch=BATCH, pause=0.002)

        written: list[float] = []
        stop = threading.Event()

        def writer() -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                record(real, run(BIG + i, started=10_000_000.0 + i))
                written.append(time.monotonic())
                time.sleep(0.002)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            started = time.monotonic()
            done = asyncio.run(pruner.prune())
            ended = time.monotonic()
        finally:
            stop.set()
            thread.join(30)
        # Every old run went but the newest ten, in batches of at most BATCH rows.
        assert done.runs >= BIG - 10 and not done.stopped
        assert len(done.batch_seconds) >= BIG // BATCH
        left = ids(real, "dev")
        assert sum(1 for i in left if i.startswith("old-")) == 0
        # The writer's records got through while the pruning went on, between its batches.
        during = [t for t in written if started < t < ended]
        assert len(during) >= 3, (len(during), len(done.batch_seconds))
    finally:
        real.close()


def test_the_pruner_prunes_each_workspace_by_its_own_rule() -> None:
    fake = FakeStore(clock=lambda: 1000.0)
    record(fake, *(run(i) for i in range(20)), *(run(i, "prod") for i in range(20)))
    dev = replace(workspace("dev"), history=HistoryConfig(keep_runs=5))
    prod = replace(workspace("prod"), history=HistoryConfig())
    cfg = config(dev, prod)
    counted: list[int] = []
    pruner = Pruner(fake, lambda: cfg, counted.append, batch=4, pause=0.0, clock=lambda: DAY)
    done = asyncio.run(pruner.prune())
    assert (done.runs, len(done.batch_seconds)) == (15, 4)
    assert counted == [15]
    assert len(ids(fake)) == 5 and len(ids(fake, "prod")) == 20
