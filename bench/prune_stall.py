"""How long a sync's store write waits while history pruning deletes 100,000 runs, against the
same writes with no pruning, in one run.

    python bench/prune_stall.py [--quick]

For SQLite (a file) and PostgreSQL (a fresh database, where one answers on 127.0.0.1:5432): the
store holds 100,000 old runs of one workspace (--quick: 30,000). A writer makes a sync's writes
one after another (a run record, then an apply of one step with its run, alternately, each
timed) first alone (the baseline), then while the daemon's `Pruner` (its own batch size and
pause) deletes every run but the newest 1,000 through the store's own connection. Rows: p50 and
p99 of the writes' times. Goal (the issue's bar): no write waits more than 100 ms, so the p99
with pruning must stay under it; the longest write and the pruning's longest batch are printed
below the table. Always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]
from common import (
    Figure,
    failed_row,
    figures_table,
    fresh_database,
    markdown_table,
    percentile,
    postgres_reachable,
)

from syncd.config import Config, load_config
from syncd.core.model import Run, RunResult, Status, Step, StepContent, SyncState, Trigger
from syncd.core.plan import compute_plan
from syncd.service.prune import Pruner
from syncd.store import ApplyBase, IndexUpdate, SqliteStore, Store

GOAL_SECONDS = 0.1
WS = "bench"
KEEP = 1000
MAX_WRITES = 20_000  # a bound on the writer's loop, far above what a pruning lasts
GAP = 0.002  # seconds between two writes, as a busy daemon's syncs come


def config_for(directory: Path) -> Config:
    doc = {
        "state_dir": str(directory / "state"),
        "workspaces": [
            {
                "id": WS,
                "name": WS,
                "source": {"url": "https://git.invalid/steps.git"},
                "history": {"keep_runs": KEEP},
            }
        ],
    }
    path = directory / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path, {})


def fill_sqlite(path: Path, count: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO runs (id, workspace, trigger, revision, result, started_at, finished_at)"
        " SELECT 'old-' || i, ?, 'poll', 'abc', 'failed', 1000.0 + i, 1000.5 + i FROM n",
        (count - 1, WS),
    )
    db.execute("COMMIT")
    db.close()


def fill_postgres(url: str, count: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO runs (id, workspace, trigger, revision, result, started_at, finished_at)"
            " SELECT 'old-' || i, %s, 'poll', 'abc', 'failed', 1000.0 + i, 1000.5 + i"
            " FROM generate_series(0, %s) AS i",
            (WS, count - 1),
        )
        db.execute("ANALYZE runs")


class SyncWrites:
    """A sync's writes, one after another: a run record, then an apply of one step."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.n = 0

    def one(self) -> float:
        """Make the next write; how long it took."""
        self.n += 1
        n, store = self.n, self.store
        run = Run(f"w{n}-{time.time_ns()}", WS, Trigger.POLL, None, RunResult.SUCCEEDED, 0.0)
        run.started_at = time.time()
        run.finished_at = run.started_at
        if n % 2:
            state = SyncState(
                WS, Status.SYNCED, store.state(WS).last_applied_revision, None, run.id
            )
            started = time.perf_counter()
            store.record_run(run, state)
            return time.perf_counter() - started
        live = store.live_steps(WS, ["step"])
        content = StepContent("true", f"run({n})")
        plan = compute_plan({"step": content}, {k: v.content for k, v in live.items()})
        applied = store.state(WS).last_applied_revision
        base = ApplyBase(applied, {"step": live["step"].version if "step" in live else None})
        index = IndexUpdate(upserts=(Step("step", content, "export/step.step.json", f"b{n}"),))
        state = SyncState(WS, Status.SYNCED, f"rev{n}", f"rev{n}", run.id)
        started = time.perf_counter()
        store.apply(plan, index, run, state, base)
        return time.perf_counter() - started


def writes_while(store: Store, busy: Callable[[], bool], at_least: int) -> list[float]:
    """Timed writes while `busy()` (and at least `at_least` of them)."""
    writes, times = SyncWrites(store), list[float]()
    for _ in range(MAX_WRITES):
        if len(times) >= at_least and not busy():
            break
        times.append(writes.one())
        time.sleep(GAP)
    return times


def measure(store: Store, config: Config) -> tuple[list[float], list[float], Any]:
    baseline = writes_while(store, lambda: False, 500)
    pruner = Pruner(store, lambda: config)
    result: dict[str, Any] = {}

    def prune() -> None:
        try:
            result["pass"] = asyncio.run(pruner.prune())
        except BaseException as e:  # shown, not swallowed
            result["error"] = e

    thread = threading.Thread(target=prune)
    thread.start()
    during = writes_while(store, thread.is_alive, 50)
    thread.join()
    if "error" in result:
        raise result["error"]
    return baseline, during, result["pass"]


def figures(label: str, runs: int, baseline: list[float], during: list[float]) -> list[Figure]:
    rows = []
    for q in (50, 99):
        rows.append(
            Figure(
                f"sync write p{q}, {label}, while pruning {runs:,} runs",
                percentile(during, q),
                "s",
                percentile(baseline, q),
                at_most=GOAL_SECONDS if q == 99 else None,
                absolute=True,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30,000 runs instead of 100,000")
    args = parser.parse_args(argv)
    runs = 30_000 if args.quick else 100_000
    print(
        f"# A sync's store writes while history pruning deletes {runs:,} runs"
        f" ({'quick' if args.quick else 'full'})\n"
    )
    rows: list[Figure] = []
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            config = config_for(Path(tmp))
            sqlite_store = SqliteStore(Path(tmp) / "state/syncd.db")
            try:
                fill_sqlite(sqlite_store.path, runs)
                baseline, during, done = measure(sqlite_store, config)
            finally:
                sqlite_store.close()
            rows += figures("SQLite", runs, baseline, during)
            notes.append(_note("SQLite", during, done))
            if postgres_reachable():
                from syncd.store.postgres import PostgresStore

                with fresh_database() as url:
                    pg = PostgresStore(url)
                    try:
                        fill_postgres(url, runs)
                        baseline, during, done = measure(pg, config)
                    finally:
                        pg.close()
                rows += figures("PostgreSQL", runs, baseline, during)
                notes.append(_note("PostgreSQL", during, done))
    except Exception as e:
        traceback.print_exc()
        print(markdown_table([]) + "\n" + failed_row("sync write while pruning", e))
        return 0
    print(figures_table(rows))
    print("\nbaseline: the same writes with no pruning, in the same run")
    for note in notes:
        print(note)
    return 0


def _note(label: str, during: list[float], done: Any) -> str:
    return (
        f"{label}: {done.runs:,} runs pruned in {len(done.batch_seconds)} batches, longest"
        f" batch {done.longest_batch * 1000:.1f} ms; {len(during)} writes meanwhile, longest"
        f" {max(during) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
