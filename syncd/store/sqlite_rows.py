"""SQLite's dialect: the SQL of every statement `SqliteStore` runs (the only SQL for SQLite
outside the schema), how it binds a list of names, and the database file's identity.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from syncd.store import leases
from syncd.store.audit import audit_sql
from syncd.store.backup_sql import backup_sql
from syncd.store.dialect import Dialect, Statements
from syncd.store.history import history_sql
from syncd.store.rows import (
    HEALTH_COLUMNS,
    RUN_COLUMNS,
    RUN_PLACEHOLDERS,
    STATE_COLUMNS,
    upsert_state_sql,
)

_STEP = "SELECT id, name, content, version, content_hash, updated_at, origin FROM steps"
_FILE = "SELECT path, name, blob, content FROM git_files WHERE workspace = ?"

# `{marks}`: the chunk's parameter marks (see SqliteDialect.select_in).
SQL = Statements(
    state=f"SELECT {STATE_COLUMNS} FROM workspaces WHERE id = ?",
    health=f"SELECT {HEALTH_COLUMNS} FROM health WHERE workspace = ?",
    live_steps=f"{_STEP} WHERE workspace = ? AND deleted = 0 ORDER BY name",
    live_steps_in=f"{_STEP} WHERE workspace = ? AND deleted = 0 AND name IN ({{marks}})",
    live_count="SELECT count(*) FROM steps WHERE workspace = ? AND deleted = 0",
    drifted_names="SELECT name FROM steps WHERE workspace = ? AND origin = 'outside'",
    index_files=_FILE,
    index_files_in=f"{_FILE} AND path IN ({{marks}})",
    index_by_name_in=f"{_FILE} AND name IN ({{marks}})",
    index_count="SELECT count(*) FROM git_files WHERE workspace = ?",
    runs=(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE workspace = ?"
        " ORDER BY started_at DESC, rowid DESC LIMIT ?"
    ),
    last_success_at="SELECT MAX(finished_at) FROM runs WHERE workspace = ? AND result = ?",
    states_in=f"SELECT id, {STATE_COLUMNS} FROM workspaces WHERE id IN ({{marks}})",
    healths_in=f"SELECT workspace, {HEALTH_COLUMNS} FROM health WHERE workspace IN ({{marks}})",
    runs_in=f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({{marks}})",
    last_success_in=(
        "SELECT workspace, MAX(finished_at) FROM runs WHERE result = ?"
        " AND workspace IN ({marks}) GROUP BY workspace"
    ),
    runs_finished=(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE finished_at > ? AND finished_at <= ?"
        " ORDER BY finished_at, rowid LIMIT ?"
    ),
    run=f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?",
    get_meta="SELECT value FROM meta WHERE key = ?",
    upsert_state=upsert_state_sql("?"),
    set_suspended=(
        "INSERT INTO workspaces (id, suspended, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET suspended = excluded.suspended,"
        " updated_at = excluded.updated_at"
    ),
    save_health=(
        "INSERT OR REPLACE INTO health (workspace, health, since, error, failures,"
        " source_failing) VALUES (?, ?, ?, ?, ?, ?)"
    ),
    set_meta="INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
    step_version="SELECT id, version FROM steps WHERE workspace = ? AND name = ?",
    upsert_step=(
        "INSERT OR REPLACE INTO steps (workspace, name, id, content, content_hash, version,"
        " updated_at, origin, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"
    ),
    delete_outside=(
        "UPDATE steps SET deleted = 1, origin = 'outside', updated_at = ?,"
        " version = version + 1 WHERE workspace = ? AND name = ? AND deleted = 0"
    ),
    mark_out_of_sync=(
        "INSERT INTO workspaces (id, status, drift, updated_at) VALUES (?, 'OutOfSync', 1, ?)"
        " ON CONFLICT (id) DO UPDATE SET status = 'OutOfSync', drift = drift + 1,"
        " updated_at = excluded.updated_at"
    ),
    any_step="SELECT 1 FROM steps WHERE workspace = ? LIMIT 1",
    step_versions_in=(
        "SELECT name, id, version FROM steps WHERE workspace = ? AND name IN ({marks})"
    ),
    live_versions_in=(
        "SELECT name, version FROM steps WHERE workspace = ? AND deleted = 0 AND name IN ({marks})"
    ),
    applied_revision="SELECT last_applied_revision FROM workspaces WHERE id = ?",
    # Run once per name (see SqliteDialect.write_in).
    delete_tombstones_in="DELETE FROM steps WHERE workspace = ? AND name = ? AND deleted = 1",
    clear_marks_in=(
        "UPDATE steps SET origin = 'git' WHERE workspace = ? AND name = ? AND origin = 'outside'"
    ),
    delete_steps_in="DELETE FROM steps WHERE workspace = ? AND name = ?",
    drift_left="SELECT count(*) FROM steps WHERE workspace = ? AND origin = 'outside'",
    clear_index="DELETE FROM git_files WHERE workspace = ?",
    remove_files_in="DELETE FROM git_files WHERE workspace = ? AND path = ?",
    upsert_file=(
        "INSERT OR REPLACE INTO git_files (workspace, path, name, blob, content)"
        " VALUES (?, ?, ?, ?, ?)"
    ),
    insert_run=f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({','.join(['?'] * RUN_PLACEHOLDERS)})",
    fail_run=(
        "UPDATE runs SET result = ?, error = ?, finished_at = ? WHERE id = ? AND workspace = ?"
    ),
    set_run_checks="UPDATE runs SET checks = ? WHERE id = ? AND workspace = ?",
    fail_state=(
        "UPDATE workspaces SET failed_revision = (SELECT revision FROM runs WHERE id = ?),"
        " updated_at = ? WHERE id = ?"
    ),
    prune_deliveries="DELETE FROM deliveries WHERE seen_at <= ?",
    remember_delivery=(
        "INSERT INTO deliveries (provider, id, seen_at) VALUES (?, ?, ?)"
        " ON CONFLICT (provider, id) DO UPDATE SET seen_at = excluded.seen_at"
        " WHERE deliveries.seen_at <= ?"
    ),
    forget_delivery="DELETE FROM deliveries WHERE provider = ? AND id = ?",
)


class SqliteDialect(Dialect[sqlite3.Connection]):
    sql = SQL
    # The host's clock in seconds since the epoch, as SQLite reads it (the CLI and the daemon
    # that share a file share a host).
    leases = leases.lease_sql("?", "((julianday('now') - 2440587.5) * 86400.0)")
    audit = audit_sql("?")
    history = history_sql("?", "rowid")
    backup = backup_sql("?", "rowid")

    def select_in(
        self, db: sqlite3.Connection, sql: str, lead: Sequence[Any], items: Sequence[str]
    ) -> list[Any]:
        rows: list[Any] = []
        for chunk in chunks(items):
            rows += db.execute(sql.format(marks=",".join("?" * len(chunk))), (*lead, *chunk))
        return rows

    def write_in(self, db: sqlite3.Connection, sql: str, ws: str, items: Sequence[str]) -> None:
        # One statement per name, by the primary key (executemany prepares it once).
        db.executemany(sql, [(ws, item) for item in items])

    def executemany(
        self, db: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        db.executemany(sql, rows)


SQLITE = SqliteDialect()


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    # SQLite caps the number of bound parameters per statement.
    for i in range(0, len(items), size):
        yield items[i : i + size]


def identity(path: Path) -> tuple[int, int]:
    """The database file's device and inode: whether it is still the file that was opened."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def is_busy(e: sqlite3.Error) -> bool:
    # Another process holds the write lock: the store itself is fine.
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
