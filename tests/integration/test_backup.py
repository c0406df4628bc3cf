"""Backups (`syncd.store.backup`): a store exported and imported into a new one holds the same
rows, on SQLite and on PostgreSQL, and SQLite -> PostgreSQL -> SQLite loses nothing; the export
is one snapshot even while another writer writes; a file cut short, of another version, changed
by one byte, or a store that is not empty, is refused with nothing written; 10,000 steps go
through without the file ever being in memory; the backup's tables are every column the stores
have.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.core.model import (
    Health,
    HealthRecord,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
    Trigger,
)
from syncd.core.plan import compute_plan
from syncd.store import IndexUpdate, SqliteStore
from syncd.store.backup import BackupRefused, export_backup, import_backup, occupied
from syncd.store.backup_format import TABLES
from syncd.store.base import SqlStore
from tests.support.fakes import base_of

AnyStore = SqlStore[Any]
WS = "prod"


def open_real(kind: str, where: Path | str) -> AnyStore:
    if kind == "sqlite":
        return SqliteStore(Path(where))
    from syncd.store.postgres import PostgresStore

    return PostgresStore(str(where))


@pytest.fixture
def pg_urls(pg_server: None) -> Iterator[tuple[str, str]]:
    from tests.support import postgres

    with postgres.fresh_database() as first, postgres.fresh_database() as second:
        yield first, second


def places(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    if kind == "sqlite":
        return tmp_path / "a.db", tmp_path / "b.db"
    first, second = request.getfixturevalue("pg_urls")
    return first, second


def fill(store: AnyStore) -> None:
    """A store as a daemon leaves it: steps from git (and their files), one edited and one
    deleted outside git, runs of every kind (two started at the same instant), a suspension
    and a pin, health, audit entries and a meta value; text with quotes and non-ASCII."""
    desired = {f"step {i} é": StepContent("true", f'run("{i}")\n') for i in range(5)}
    plan = compute_plan(desired, {})
    files = tuple(
        Step(n, c, f"export/{i}.step.json", f"blob{i}") for i, (n, c) in enumerate(desired.items())
    )
    first = Run("r1", WS, Trigger.WEBHOOK, "a" * 40, RunResult.SUCCEEDED, 100.0, 101.25)
    state = SyncState(WS, Status.SYNCED, "a" * 40, "a" * 40, "r1", source_key="k")
    store.apply(plan, IndexUpdate(True, files), first, state, base_of(store, WS, set(desired)))
    store.put_outside(WS, "step 1 é", StepContent("false", "x"))
    store.delete_outside(WS, "step 2 é")
    runs = [
        Run("r2", WS, Trigger.MANUAL, "b" * 40, RunResult.FAILED, 200.0, 200.5, error="bad\nstep"),
        Run("r3", WS, Trigger.POLL, "b" * 40, RunResult.PLANNED, 300.0, None, dry_run=True),
        Run("r4", WS, Trigger.DRIFT, None, RunResult.SUCCEEDED, 300.0, 301.0, 1, 2, 3),
        Run(
            "r5", "dev", Trigger.MANUAL, "c" * 40, RunResult.SUCCEEDED, 1e9 + 0.123456789, 1e9 + 1,
            actor="local:ana", message='fix "quotes" ü', author="Ana <a@x>", signed_by="ana@x",
        ),
    ]  # fmt: skip
    for r in runs:
        store.record_run(r, SyncState(r.workspace, Status.OUT_OF_SYNC, "a" * 40, last_run_id=r.id))
    store.save_state(SyncState("dev", Status.SYNCED, "c" * 40, pinned_revision="c" * 40))
    store.set_suspended("dev", True)
    store.save_health(HealthRecord(WS, Health.DEGRADED, 250.0, "it broke", 3, True))
    store.save_health(HealthRecord("dev", Health.HEALTHY, None, None, 0, False))
    for i, action in enumerate(("sync", "suspend", "step.put")):
        store.record_audit(
            AuditEntry(400.0 + i, "ci", "api", action, "ok", 200, WS, "a" * 40, "step 1 é", "d")
        )
    store.set_meta("notify.state", '{"cursor": 12.5}')


def rows(path: Path) -> list[str]:
    """The row lines of a backup: what two backups of the same store share."""
    lines = path.read_text("utf-8").splitlines()
    assert json.loads(lines[0])["syncd_backup"] == 1 and "syncd_backup_end" in lines[-1]
    return lines[1:-1]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_backup_restores_every_row(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    first_at, second_at = places(kind, tmp_path, request)
    source, target = open_real(kind, first_at), open_real(kind, second_at)
    try:
        fill(source)
        summary = export_backup(source, tmp_path / "one.jsonl")
        assert summary.counts == {
            "workspaces": 2,
            "health": 2,
            "steps": 5,
            "git_files": 5,
            "runs": 5,
            "audit": 3,
            "meta": 1,
        }
        assert os.stat(tmp_path / "one.jsonl").st_mode & 0o777 == 0o600
        assert import_backup(target, tmp_path / "one.jsonl", "target").sha256 == summary.sha256
        export_backup(target, tmp_path / "two.jsonl")
        assert rows(tmp_path / "two.jsonl") == rows(tmp_path / "one.jsonl")
        # What the daemon reads of it is the same.
        for ws in (WS, "dev"):
            assert target.state(ws) == source.state(ws)
            assert target.runs(ws) == source.runs(ws)
            assert target.live_steps(ws) == source.live_steps(ws)
            assert target.index_files(ws) == source.index_files(ws)
            assert target.drifted_names(ws) == source.drifted_names(ws)
            assert target.health(ws) == source.health(ws)
        assert target.audit_entries(AuditQuery()) == source.audit_entries(AuditQuery())
        assert target.get_meta("notify.state") == source.get_meta("notify.state")
    finally:
        source.close()
        target.close()


def test_sqlite_to_postgresql_to_sqlite_loses_nothing(
    tmp_path: Path, pg_url: str, request: pytest.FixtureRequest
) -> None:
    first, middle, last = (
        open_real("sqlite", tmp_path / "a.db"),
        open_real("postgresql", pg_url),
        open_real("sqlite", tmp_path / "c.db"),
    )
    try:
        fill(first)
        export_backup(first, tmp_path / "1.jsonl")
        import_backup(middle, tmp_path / "1.jsonl", "pg")
        export_backup(middle, tmp_path / "2.jsonl")
        import_backup(last, tmp_path / "2.jsonl", "c.db")
        export_backup(last, tmp_path / "3.jsonl")
        assert (
            rows(tmp_path / "1.jsonl") == rows(tmp_path / "2.jsonl") == rows(tmp_path / "3.jsonl")
        )
        assert (
            json.loads((tmp_path / "2.jsonl").read_text().splitlines()[0])["store"] == "postgresql"
        )
        # The restored PostgreSQL store goes on: the next audit id follows the restored ones,
        # and a new run lists first.
        middle.record_audit(AuditEntry(999.0, "ci", "api", "sync", "ok", 200, WS))
        ids = [e.id for e in middle.audit_entries(AuditQuery())]
        assert ids == [4, 3, 2, 1]
        middle.record_run(
            Run("r9", WS, Trigger.POLL, None, RunResult.FAILED, 300.0, 300.1),
            SyncState(WS, Status.SYNCED, last_run_id="r9"),
        )
        assert [r.id for r in middle.runs(WS)][:3] == ["r9", "r4", "r3"]
    finally:
        for s in (first, middle, last):
            s.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_export_is_one_instant_while_another_writer_writes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where, _ = places(kind, tmp_path, request)
    reader, writer = open_real(kind, where), open_real(kind, where)
    try:
        fill(writer)
        sql = reader.dialect.backup.select
        with reader.snapshot() as read:
            before = list(read(sql["workspaces"]))
            writer.record_run(
                Run("late", WS, Trigger.POLL, None, RunResult.FAILED, 500.0, 501.0),
                SyncState(WS, Status.UNKNOWN, last_run_id="late"),
            )
            runs = [r[0] for r in read(sql["runs"])]
            after = list(read(sql["workspaces"]))
        assert "late" not in runs and after == before
        assert writer.run("late") is not None
    finally:
        reader.close()
        writer.close()


# -- refusals: nothing written -----------------------------------------------------------------


@pytest.fixture
def good(tmp_path: Path) -> Path:
    store = open_real("sqlite", tmp_path / "src.db")
    try:
        fill(store)
        export_backup(store, tmp_path / "good.jsonl")
    finally:
        store.close()
    return tmp_path / "good.jsonl"


def _damaged(good: Path, how: str) -> bytes:
    data = good.read_bytes()
    lines = data.splitlines(keepends=True)
    if how == "cut mid-line":
        return data[: len(data) // 2]
    if how == "without its end line":
        return b"".join(lines[:-1])
    if how == "another version":
        header = json.loads(lines[0])
        return json.dumps({**header, "syncd_backup": 2}).encode() + b"\n" + b"".join(lines[1:])
    if how == "a flipped byte":
        at = data.index(b'"blob3"') + 1  # a git file's blob id: still valid JSON
        return data[:at] + b"c" + data[at + 1 :]
    if how == "a line more after the end":
        return data + lines[1]
    if how == "not a backup":
        return b'{"hello": "world"}\n'
    if how == "empty":
        return b""
    if how == "a wrong column":
        return data.replace(b'"status":"OutOfSync"', b'"status":7', 1)
    raise AssertionError(how)


REFUSED = {
    "cut mid-line": "truncated",
    "without its end line": "truncated",
    "another version": "backup format version 2; this syncd reads version 1",
    "a flipped byte": "checksum mismatch",
    "a line more after the end": "more after the end line",
    "not a backup": "not a syncd backup",
    "empty": "the file is empty",
    "a wrong column": "workspaces.status: expected text",
}


@pytest.mark.parametrize("how", list(REFUSED))
def test_a_damaged_file_is_refused_with_nothing_written(
    good: Path, tmp_path: Path, how: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_damaged(good, how))
    target = open_real("sqlite", tmp_path / "target.db")
    try:
        with pytest.raises(BackupRefused, match=REFUSED[how]):
            import_backup(target, bad, "target")
        assert occupied(target) == {}
    finally:
        target.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_store_that_is_not_empty_is_refused_naming_what_it_holds(
    kind: str, good: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where, _ = places(kind, tmp_path, request)
    target = open_real(kind, where)
    try:
        target.record_audit(AuditEntry(1.0, "ci", "api", "sync", "ok", 200, WS))
        with pytest.raises(BackupRefused, match=r"is not empty \(audit: 1\)"):
            import_backup(target, good, "target")
        assert occupied(target) == {"audit": 1}
    finally:
        target.close()


def test_a_failure_midway_rolls_the_import_back(good: Path, tmp_path: Path) -> None:
    # A row the database refuses (a duplicate key) half way: what was written before goes too.
    lines = good.read_bytes().splitlines(keepends=True)
    runs = [i for i, line in enumerate(lines) if line.startswith(b'{"table":"runs"')]
    body = b"".join(lines[:-1]) + lines[runs[0]]
    import hashlib

    counts = json.loads(lines[-1])["syncd_backup_end"]["counts"]
    counts["runs"] += 1
    end = {"syncd_backup_end": {"counts": counts, "sha256": hashlib.sha256(body).hexdigest()}}
    (tmp_path / "dup.jsonl").write_bytes(body + json.dumps(end).encode() + b"\n")
    target = open_real("sqlite", tmp_path / "target.db")
    try:
        with pytest.raises(Exception, match="UNIQUE"):
            import_backup(target, tmp_path / "dup.jsonl", "target")
        assert occupied(target) == {}
    finally:
        target.close()


# -- 10,000 steps, streamed ---------------------------------------------------------------------

STEPS = 10_000


def test_10k_steps_are_streamed_not_held(tmp_path: Path) -> None:
    source = SqliteStore(tmp_path / "big.db")
    target = SqliteStore(tmp_path / "copy.db")
    try:
        body = "x" * 400
        content = json.dumps({"if": "true", "do": body, "enabled": True, "valid": True})
        db = sqlite3.connect(source.path, isolation_level=None)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO steps VALUES ('big', ?, ?, ?, 'hash', 1, 1.0, 'git', 0)",
            ((f"step {i:05d}", f"id{i}", content) for i in range(STEPS)),
        )
        db.executemany(
            "INSERT INTO git_files VALUES ('big', ?, ?, 'blob', ?)",
            ((f"export/{i}.step.json", f"step {i:05d}", content) for i in range(STEPS)),
        )
        db.execute("COMMIT")
        db.close()
        tracemalloc.start()
        try:
            export_backup(source, tmp_path / "big.jsonl")
            exported_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            summary = import_backup(target, tmp_path / "big.jsonl", "copy.db")
            imported_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        size = (tmp_path / "big.jsonl").stat().st_size
        assert summary.counts["steps"] == summary.counts["git_files"] == STEPS
        assert size > 10 << 20
        # Neither side ever held the file: a small share of it at most.
        assert exported_peak < size // 4 and imported_peak < size // 4, (
            exported_peak,
            imported_peak,
            size,
        )
        assert target.live_count("big") == STEPS
    finally:
        source.close()
        target.close()


# -- every column the stores have is in a backup -------------------------------------------------


def test_the_backup_holds_every_column_of_sqlite(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    for table, kinds in TABLES.items():
        columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        assert columns == set(kinds), table
    db.close()


def test_the_backup_holds_every_column_of_postgresql(pg_url: str) -> None:
    import psycopg

    open_real("postgresql", pg_url).close()
    with psycopg.connect(pg_url) as db:
        for table, kinds in TABLES.items():
            found = db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table,),
            ).fetchall()
            # seq only orders runs as recorded: the order of the backup's run lines keeps it.
            assert {r[0] for r in found} - {"seq"} == set(kinds), table
