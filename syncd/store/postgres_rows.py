"""PostgreSQL's dialect: the SQL of every statement `PostgresStore` runs (the only SQL for
PostgreSQL outside the schema and its connecting), and how it binds a list of names: one array.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from syncd.store import leases, writes
from syncd.store.audit import audit_sql
from syncd.store.backup_sql import backup_sql
from syncd.store.dialect import Dialect, Statements
from syncd.store.history import history_sql
from syncd.store.protocol import ApplyBase
from syncd.store.rows import (
    HEALTH_COLUMNS,
    RUN_COLUMNS,
    RUN_PLACEHOLDERS,
    STATE_COLUMNS,
    upsert_state_sql,
)

_STEP = "SELECT id, name, content, version, content_hash, updated_at, origin FROM steps"
_FILE = "SELECT path, name, blob, content FROM git_files WHERE workspace = %s"

SQL = Statements(
    state=f"SELECT {STATE_COLUMNS} FROM workspaces WHERE id = %s",
    health=f"SELECT {HEALTH_COLUMNS} FROM health WHERE workspace = %s",
    live_steps=f"{_STEP} WHERE workspace = %s AND NOT deleted ORDER BY name",
    live_steps_in=f"{_STEP} WHERE workspace = %s AND NOT deleted AND name = ANY(%s)",
    live_count="SELECT count(*) FROM steps WHERE workspace = %s AND NOT deleted",
    drifted_names="SELECT name FROM steps WHERE workspace = %s AND origin = 'outside'",
    index_files=_FILE,
    index_files_in=f"{_FILE} AND path = ANY(%s)",
    index_by_name_in=f"{_FILE} AND name = ANY(%s)",
    index_count="SELECT count(*) FROM git_files WHERE workspace = %s",
    # seq orders runs that started at the same instant, as SQLite's rowid does.
    runs=(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE workspace = %s"
        " ORDER BY started_at DESC, seq DESC LIMIT %s"
    ),
    last_success_at="SELECT MAX(finished_at) FROM runs WHERE workspace = %s AND result = %s",
    states_in=f"SELECT id, {STATE_COLUMNS} FROM workspaces WHERE id = ANY(%s)",
    healths_in=f"SELECT workspace, {HEALTH_COLUMNS} FROM health WHERE workspace = ANY(%s)",
    runs_in=f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY(%s)",
    last_success_in=(
        "SELECT workspace, MAX(finished_at) FROM runs WHERE result = %s"
        " AND workspace = ANY(%s) GROUP BY workspace"
    ),
    runs_finished=(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE finished_at > %s AND finished_at <= %s"
        " ORDER BY finished_at, seq LIMIT %s"
    ),
    run=f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s",
    get_meta="SELECT value FROM meta WHERE key = %s",
    upsert_state=upsert_state_sql("%s"),
    set_suspended=(
        "INSERT INTO workspaces (id, suspended, updated_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET suspended = excluded.suspended,"
        " updated_at = excluded.updated_at"
    ),
    save_health=(
        "INSERT INTO health (workspace, health, since, error, failures, source_failing)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (workspace) DO UPDATE SET"
        " health = excluded.health, since = excluded.since, error = excluded.error,"
        " failures = excluded.failures, source_failing = excluded.source_failing"
    ),
    set_meta=(
        "INSERT INTO meta (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ),
    step_version="SELECT id, version FROM steps WHERE workspace = %s AND name = %s",
    upsert_step=(
        "INSERT INTO steps (workspace, name, id, content, content_hash, version, updated_at,"
        " origin, deleted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, FALSE)"
        " ON CONFLICT (workspace, name) DO UPDATE SET id = excluded.id,"
        " content = excluded.content, content_hash = excluded.content_hash,"
        " version = excluded.version, updated_at = excluded.updated_at,"
        " origin = excluded.origin, deleted = FALSE"
    ),
    delete_outside=(
        "UPDATE steps SET deleted = TRUE, origin = 'outside', updated_at = %s,"
        " version = version + 1 WHERE workspace = %s AND name = %s AND NOT deleted"
    ),
    mark_out_of_sync=(
        "INSERT INTO workspaces (id, status, drift, updated_at) VALUES (%s, 'OutOfSync', 1, %s)"
        " ON CONFLICT (id) DO UPDATE SET status = 'OutOfSync', drift = workspaces.drift + 1,"
        " updated_at = excluded.updated_at"
    ),
    any_step="SELECT 1 FROM steps WHERE workspace = %s LIMIT 1",
    step_versions_in="SELECT name, id, version FROM steps WHERE workspace = %s AND name = ANY(%s)",
    live_versions_in=(
        "SELECT name, version FROM steps WHERE workspace = %s AND NOT deleted AND name = ANY(%s)"
    ),
    applied_revision="SELECT last_applied_revision FROM workspaces WHERE id = %s",
    delete_tombstones_in="DELETE FROM steps WHERE workspace = %s AND deleted AND name = ANY(%s)",
    clear_marks_in=(
        "UPDATE steps SET origin = 'git' WHERE workspace = %s AND origin = 'outside'"
        " AND name = ANY(%s)"
    ),
    delete_steps_in="DELETE FROM steps WHERE workspace = %s AND name = ANY(%s)",
    drift_left="SELECT count(*) FROM steps WHERE workspace = %s AND origin = 'outside'",
    clear_index="DELETE FROM git_files WHERE workspace = %s",
    remove_files_in="DELETE FROM git_files WHERE workspace = %s AND path = ANY(%s)",
    upsert_file=(
        "INSERT INTO git_files (workspace, path, name, blob, content)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (workspace, path) DO UPDATE SET"
        " name = excluded.name, blob = excluded.blob, content = excluded.content"
    ),
    insert_run=f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({','.join(['%s'] * RUN_PLACEHOLDERS)})",
    fail_run=(
        "UPDATE runs SET result = %s, error = %s, finished_at = %s WHERE id = %s AND workspace = %s"
    ),
    set_run_checks="UPDATE runs SET checks = %s WHERE id = %s AND workspace = %s",
    fail_state=(
        "UPDATE workspaces SET failed_revision = (SELECT revision FROM runs WHERE id = %s),"
        " updated_at = %s WHERE id = %s"
    ),
    prune_deliveries="DELETE FROM deliveries WHERE seen_at <= %s",
    remember_delivery=(
        "INSERT INTO deliveries (provider, id, seen_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (provider, id) DO UPDATE SET seen_at = excluded.seen_at"
        " WHERE deliveries.seen_at <= %s"
    ),
    forget_delivery="DELETE FROM deliveries WHERE provider = %s AND id = %s",
)


class PostgresDialect(Dialect[psycopg.Connection[Any]]):
    sql = SQL
    # The database's clock: one clock for the leases of replicas on several hosts. An apply
    # locks its lease row, so that a take waits for the apply that checked the lease to commit.
    leases = leases.lease_sql("%s", "extract(epoch from clock_timestamp())", lock_row=" FOR UPDATE")
    audit = audit_sql("%s")
    history = history_sql("%s", "seq", postgres=True)
    # Text sorted by its bytes, as SQLite sorts it; audit ids restored as they were, so the
    # next entry's id comes after them.
    backup = backup_sql(
        "%s",
        "seq",
        ' COLLATE "C"',
        after_import=(
            "SELECT setval(pg_get_serial_sequence('audit', 'id'),"
            " COALESCE((SELECT MAX(id) FROM audit), 0) + 1, false)",
        ),
    )

    def select_in(
        self, db: psycopg.Connection[Any], sql: str, lead: Sequence[Any], items: Sequence[str]
    ) -> list[Any]:
        if not items:
            return []
        return db.execute(sql, (*lead, list(items))).fetchall()

    def write_in(
        self, db: psycopg.Connection[Any], sql: str, ws: str, items: Sequence[str]
    ) -> None:
        if items:
            db.execute(sql, (ws, list(items)))

    def executemany(
        self, db: psycopg.Connection[Any], sql: str, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        if rows:
            with db.cursor() as cur:
                cur.executemany(sql, rows)


POSTGRES = PostgresDialect()


def check_base(db: psycopg.Connection[Any], ws: str, base: ApplyBase) -> None:
    """ApplyConflict unless the store still holds the base the plan was read from."""
    writes.check_base(POSTGRES, db, ws, base)
