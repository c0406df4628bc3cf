"""Does a 1-change sync cost the same at 10,000 steps as at 100? And what does the initial
apply cost over plain SQLite?

    python bench/sync_scaling.py [--quick]

Starts its own https git server on loopback, builds a workspace of N steps (100 and 10,000;
--quick: 100 and 2,000), syncs it with the installed `syncd sync` (a subprocess, as users run
it), then changes one step at a time, pushes, and times `syncd sync` (5 times with --quick,
15 without, a different step each time; the median counts). Goals: the 1-change sync at the
large size within 2x of the small size; `SqliteStore.apply` of a plan creating every step of
the large size within 2x of inserting the same rows with `executemany` in one transaction.
Prints a markdown table; always exits 0 (benches do not fail CI).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from common import (
    STEPS_PATH,
    Row,
    change_step,
    make_repo,
    markdown_table,
    median,
    run_syncd,
    seconds_text,
    spread,
    step_content,
    step_name,
    syncd_env,
    temp_git_server,
    workspace,
    write_config,
)

from syncd.core.model import Run, RunResult, Status, Step, SyncState, Trigger
from syncd.core.plan import compute_plan
from syncd.core.steps import step_file_name
from syncd.store import ApplyBase, IndexUpdate, SqliteStore

WS = "bench"
SMALL = 100
APPLY_REPEATS = 7


def cli_scaling(steps: int, repeats: int) -> tuple[float, list[float]]:
    """Initial `syncd sync` of `steps` steps, then `repeats` 1-change syncs: (initial, times)."""
    with temp_git_server() as (server, tmp):
        url, tree = make_repo(server, tmp, f"steps{steps}", steps)
        config = write_config(tmp / "syncd", [workspace(WS, url, server)])
        env = syncd_env(server)
        args = ["sync", WS, "--config", str(config)]
        initial, out = run_syncd(args, env)
        assert f"{steps} created" in out, out
        times = []
        for k in range(repeats):
            change_step(tree, (k * steps) // repeats, version=k + 1)
            seconds, out = run_syncd(args, env)
            assert "0 created, 1 updated, 0 deleted" in out, out
            times.append(seconds)
        return initial, times


def sample_steps(steps: int) -> list[Step]:
    return [
        Step(
            step_name(i),
            step_content(i),
            f"{STEPS_PATH}/{step_file_name(step_name(i))}",
            f"{i:040x}",
        )
        for i in range(steps)
    ]


def time_store_apply(steps: int, db: Path) -> float:
    """`SqliteStore.apply` of a plan that creates every step, into an empty store."""
    desired = sample_steps(steps)
    plan = compute_plan({s.name: s.content for s in desired}, {})
    index = IndexUpdate(replace_all=True, upserts=tuple(desired))
    revision = "ab" * 20
    run = Run(uuid.uuid4().hex, WS, Trigger.MANUAL, revision, RunResult.SUCCEEDED, time.time())
    state = SyncState(WS, Status.SYNCED, revision, revision, run.id)
    # An empty store: no applied revision, and no live step by any of the plan's names.
    base = ApplyBase(None, {c.name: None for c in plan.changes})
    store = SqliteStore(db)
    try:
        started = time.perf_counter()
        store.apply(plan, index, run, state, base)
        return time.perf_counter() - started
    finally:
        store.close()


def time_executemany(steps: int, db: Path) -> float:
    """The same rows (steps and the git index) with plain executemany in one transaction, into
    the same schema with the same pragmas (WAL, synchronous FULL); rows built untimed."""
    SqliteStore(db).close()  # the schema
    now = time.time()
    step_rows, file_rows = [], []
    for s in sample_steps(steps):
        text = s.content.canonical_json()
        step_rows.append((WS, s.name, uuid.uuid4().hex, text, s.content.content_hash(), 1, now))
        file_rows.append((WS, s.path, s.name, s.blob, text))
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        started = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            "INSERT INTO steps (workspace, name, id, content, content_hash, version, updated_at,"
            " origin, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, 'git', 0)",
            step_rows,
        )
        con.executemany(
            "INSERT INTO git_files (workspace, path, name, blob, content) VALUES (?, ?, ?, ?, ?)",
            file_rows,
        )
        con.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        con.close()


def apply_vs_executemany(steps: int) -> tuple[list[float], list[float]]:
    applies, inserts = [], []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-db-") as tmp:
        for k in range(APPLY_REPEATS):  # interleaved, each into a fresh file
            applies.append(time_store_apply(steps, Path(tmp) / f"apply{k}.db"))
            inserts.append(time_executemany(steps, Path(tmp) / f"plain{k}.db"))
    return applies, inserts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 steps and 5 repeats")
    args = parser.parse_args(argv)
    large, repeats = (2_000, 5) if args.quick else (10_000, 15)
    print(
        f"# sync scaling ({'quick' if args.quick else 'full'}): {SMALL} vs {large:,} steps,"
        f" {repeats} one-change syncs each; Python {sys.version.split()[0]},"
        f" SQLite {sqlite3.sqlite_version}\n"
    )
    try:
        _, small_times = cli_scaling(SMALL, repeats)
        large_initial, large_times = cli_scaling(large, repeats)
        applies, inserts = apply_vs_executemany(large)
    except Exception:
        traceback.print_exc()
        print("bench failed before its table; see the error above")
        return 0
    rows = [
        Row(
            f"1-change `syncd sync`, {large:,} steps (baseline: {SMALL})",
            median(large_times),
            median(small_times),
            goal=2,
        ),
        Row(
            f"initial apply, {large:,} creates: `SqliteStore.apply` (baseline: executemany)",
            median(applies),
            median(inserts),
            goal=2,
        ),
        Row(f"initial `syncd sync` of {large:,} steps, whole CLI run", large_initial),
    ]
    print(markdown_table(rows))
    print(
        f"\n1-change syncs min/median/max: {SMALL} steps {spread(small_times)}, {large:,} steps"
        f" {spread(large_times)}; apply {spread(applies)}, executemany {spread(inserts)}"
        f" ({APPLY_REPEATS} runs each); initial CLI sync {seconds_text(large_initial)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
