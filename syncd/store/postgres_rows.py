"""PostgreSQL's statements that more than one `PostgresStore` method runs inside its
transaction."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from syncd.core.model import Run, StepContent, SyncState
from syncd.store.protocol import ApplyBase, IndexUpdate
from syncd.store.rows import (
    RUN_COLUMNS,
    check_applied,
    check_versions,
    index_params,
    run_params,
    state_params,
    upsert_state_sql,
)

UPSERT_STEP = (
    "INSERT INTO steps (workspace, name, id, content, content_hash, version, updated_at, origin,"
    " deleted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, FALSE)"
    " ON CONFLICT (workspace, name) DO UPDATE SET id = excluded.id, content = excluded.content,"
    " content_hash = excluded.content_hash, version = excluded.version,"
    " updated_at = excluded.updated_at, origin = excluded.origin, deleted = FALSE"
)

_UPSERT_STATE = upsert_state_sql("%s")


def insert_run(db: psycopg.Connection[Any], run: Run) -> None:
    # Inserted, never upserted: a run id is one writer's (syncd.store.leases checks first).
    db.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        run_params(run),
    )


def upsert_state(db: psycopg.Connection[Any], s: SyncState) -> None:
    db.execute(_UPSERT_STATE, state_params(s))


def check_base(db: psycopg.Connection[Any], ws: str, base: ApplyBase) -> None:
    """ApplyConflict unless the store still holds the base the plan was read from."""
    row = db.execute("SELECT last_applied_revision FROM workspaces WHERE id = %s", (ws,)).fetchone()
    check_applied(ws, base, row[0] if row else None)
    names = list(base.versions)
    now: dict[str, int] = {}
    if names:
        for r in db.execute(
            "SELECT name, version FROM steps WHERE workspace = %s AND NOT deleted"
            " AND name = ANY(%s)",
            (ws, names),
        ):
            now[r[0]] = int(r[1])
    check_versions(ws, base, now)


def mark_out_of_sync(db: psycopg.Connection[Any], ws: str) -> None:
    db.execute(
        "INSERT INTO workspaces (id, status, drift, updated_at) VALUES (%s, 'OutOfSync', 1, %s)"
        " ON CONFLICT (id) DO UPDATE SET status = 'OutOfSync', drift = workspaces.drift + 1,"
        " updated_at = excluded.updated_at",
        (ws, time.time()),
    )


def update_index(
    db: psycopg.Connection[Any], ws: str, index: IndexUpdate, texts: dict[StepContent, str]
) -> None:
    with db.cursor() as cur:
        if index.replace_all:
            cur.execute("DELETE FROM git_files WHERE workspace = %s", (ws,))
        elif index.removes:
            cur.execute(
                "DELETE FROM git_files WHERE workspace = %s AND path = ANY(%s)",
                (ws, list(index.removes)),
            )
        if index.upserts:
            cur.executemany(
                "INSERT INTO git_files (workspace, path, name, blob, content)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (workspace, path) DO UPDATE SET"
                " name = excluded.name, blob = excluded.blob, content = excluded.content",
                index_params(ws, index.upserts, texts),
            )
