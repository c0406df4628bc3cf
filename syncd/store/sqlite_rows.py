"""SQLite's statements that more than one `SqliteStore` method runs inside its transaction, and
the small helpers around them (ids, chunks of bound parameters, the database file's identity).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

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

_UPSERT_STATE = upsert_state_sql("?")


def insert_run(db: sqlite3.Connection, run: Run) -> None:
    db.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        run_params(run),
    )


def upsert_state(db: sqlite3.Connection, s: SyncState) -> None:
    db.execute(_UPSERT_STATE, state_params(s))


def check_base(db: sqlite3.Connection, ws: str, base: ApplyBase) -> None:
    """ApplyConflict unless the store still holds the base the plan was read from."""
    row = db.execute("SELECT last_applied_revision FROM workspaces WHERE id = ?", (ws,)).fetchone()
    check_applied(ws, base, row[0] if row else None)
    now: dict[str, int] = {}
    for chunk in chunks(list(base.versions)):
        marks = ",".join("?" * len(chunk))
        for r in db.execute(
            f"SELECT name, version FROM steps WHERE workspace = ? AND deleted = 0"
            f" AND name IN ({marks})",
            (ws, *chunk),
        ):
            now[r[0]] = int(r[1])
    check_versions(ws, base, now)


def mark_out_of_sync(db: sqlite3.Connection, ws: str) -> None:
    db.execute(
        "INSERT INTO workspaces (id, status, drift, updated_at) VALUES (?, 'OutOfSync', 1, ?)"
        " ON CONFLICT (id) DO UPDATE SET status = 'OutOfSync', drift = drift + 1,"
        " updated_at = excluded.updated_at",
        (ws, time.time()),
    )


def update_index(
    db: sqlite3.Connection, ws: str, index: IndexUpdate, texts: dict[StepContent, str]
) -> None:
    if index.replace_all:
        db.execute("DELETE FROM git_files WHERE workspace = ?", (ws,))
    else:
        db.executemany(
            "DELETE FROM git_files WHERE workspace = ? AND path = ?",
            [(ws, p) for p in index.removes],
        )
    db.executemany(
        "INSERT OR REPLACE INTO git_files (workspace, path, name, blob, content)"
        " VALUES (?, ?, ?, ?, ?)",
        index_params(ws, index.upserts, texts),
    )


def fresh_ids(count: int) -> Iterator[str]:
    """`count` fresh step ids, each what uuid.uuid4().hex gives, from one read of the random
    source: building a UUID object per step was a fifth of an initial apply's time."""
    raw = os.urandom(16 * count)
    for i in range(0, 16 * count, 16):
        n = int.from_bytes(raw[i : i + 16], "big")
        # RFC 4122 variant and version 4, as uuid.UUID(bytes=..., version=4) sets them.
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
        n = (n & ~(0xF000 << 64)) | (4 << 76)
        yield f"{n:032x}"


def identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def is_busy(e: sqlite3.Error) -> bool:
    # Another process holds the write lock: the store itself is fine.
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)


def chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    # SQLite caps the number of bound parameters per statement.
    for i in range(0, len(items), size):
        yield items[i : i + size]
