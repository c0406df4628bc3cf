"""What a SQL store's dialect is: the text of every statement the shared store logic runs
(`syncd.store.base`, `syncd.store.writes`), and how a statement over a list of names is bound.

`sqlite_rows` and `postgres_rows` each fill this in. The logic is written once, over these
statements; the dialects differ in SQL text (parameter marks, booleans, upserts, the order of
runs recorded at the same instant) and in how they bind a list: SQLite caps the parameters of a
statement and so binds names in chunks, or runs a statement once per name; PostgreSQL binds one
array.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from syncd.store.audit import AuditSql
from syncd.store.backup_sql import BackupSql
from syncd.store.history import HistorySql
from syncd.store.leases import Connection, LeaseSql

# A dialect's connection (sqlite3's, psycopg's): what its transactions yield.
C = TypeVar("C", bound=Connection)


@dataclass(frozen=True, slots=True)
class Statements:
    """Each statement's parameters, in order; `_in`: a statement over a list of names (or
    paths), run through `Dialect.select_in` or `Dialect.write_in`."""

    # -- reads --------------------------------------------------------------------------------
    state: str  # (ws): rows.state_from_row's columns
    health: str  # (ws): rows.health_from_row's columns
    live_steps: str  # (ws): rows.live_step_from_row's columns, by name
    live_steps_in: str  # names: the same
    live_count: str  # (ws)
    drifted_names: str  # (ws): name, of every step edited (or deleted) outside git
    index_files: str  # (ws): rows.index_step_from_row's columns
    index_files_in: str  # paths: the same
    index_by_name_in: str  # names: the same
    index_count: str  # (ws)
    runs: str  # (ws, limit): newest first; among equal starts, the last recorded first
    last_success_at: str  # (ws, result)
    # Over many workspaces at once (a page of the list, the start, the status line):
    states_in: str  # ids: the id, then rows.state_from_row's columns
    healths_in: str  # ids: the workspace, then rows.health_from_row's columns
    runs_in: str  # run ids: rows.run_from_row's columns
    last_success_in: str  # (result), ids: the workspace, MAX(finished_at)
    runs_finished: str  # (since, until, limit): oldest first, in order recorded
    run: str  # (run id)
    get_meta: str  # (key)
    # -- writes -------------------------------------------------------------------------------
    upsert_state: str  # rows.state_params; `suspended` stays
    set_suspended: str  # (ws, suspended, updated_at)
    save_health: str  # rows.health_params
    set_meta: str  # (key, value)
    step_version: str  # (ws, name): id, version of the step's row, tombstone or not
    upsert_step: str  # (ws, name, id, content, content_hash, version, updated_at, origin)
    delete_outside: str  # (updated_at, ws, name): tombstones a live step; rowcount
    mark_out_of_sync: str  # (ws, updated_at)
    any_step: str  # (ws): a row when the workspace has any step row
    step_versions_in: str  # names: name, id, version of their rows, tombstones too
    live_versions_in: str  # names: name, version of the live (not deleted) ones
    applied_revision: str  # (ws): last_applied_revision
    delete_tombstones_in: str  # names
    clear_marks_in: str  # names: origin 'outside' becomes 'git'
    delete_steps_in: str  # names
    drift_left: str  # (ws): count of steps edited outside git
    clear_index: str  # (ws)
    remove_files_in: str  # paths
    upsert_file: str  # rows.index_params
    insert_run: str  # rows.run_params
    fail_run: str  # (result, error, finished_at, run id, ws): a recorded run found failed
    fail_state: str  # (run id, updated_at, ws): failed_revision becomes that run's revision
    set_run_checks: str  # (checks JSON, run id, ws)
    # -- webhook deliveries -------------------------------------------------------------------
    prune_deliveries: str  # (seen at or before)
    remember_delivery: str  # (provider, id, now, seen at or before): rowcount 0 when seen
    forget_delivery: str  # (provider, id)


class Dialect(ABC, Generic[C]):
    """A dialect's statements, its leases', its audit's, its history pruning's and its
    backups' statements, and its way with lists."""

    sql: Statements
    leases: LeaseSql
    audit: AuditSql
    history: HistorySql
    backup: BackupSql

    @abstractmethod
    def select_in(
        self, db: C, sql: str, lead: Sequence[Any], items: Sequence[str]
    ) -> Iterable[Any]:
        """The rows of an `_in` read: its leading parameters (the workspace, say), then the
        list `items` (no rows for no items)."""

    @abstractmethod
    def write_in(self, db: C, sql: str, ws: str, items: Sequence[str]) -> None:
        """An `_in` write for the workspace's `items` (nothing for no items)."""

    @abstractmethod
    def executemany(self, db: C, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """One statement for many rows, as the driver batches it (nothing for no rows)."""
