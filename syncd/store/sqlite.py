"""The embedded store: SQLite in WAL mode, so the daemon and the CLI can share one file.

The only module with SQL for SQLite. Writes are `BEGIN IMMEDIATE` transactions with
`synchronous=FULL`: a committed sync survives power loss, not only a crash.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from syncd.core.model import (
    HealthRecord,
    LiveStep,
    Origin,
    Plan,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
)
from syncd.store import leases
from syncd.store.protocol import (
    DELIVERY_PRUNE_EVERY,
    DELIVERY_TTL,
    LEASE_TTL,
    ApplyBase,
    IndexUpdate,
    Lease,
    StoreError,
)
from syncd.store.rows import (
    RUN_COLUMNS,
    health_from_row,
    health_params,
    index_step_from_row,
    live_step_from_row,
    run_from_row,
    state_from_row,
)
from syncd.store.sqlite_rows import (
    check_base,
    chunks,
    fresh_ids,
    identity,
    insert_run,
    is_busy,
    mark_out_of_sync,
    update_index,
    upsert_state,
)
from syncd.store.sqlite_schema import MIGRATIONS

# The host's clock in seconds since the epoch, as SQLite reads it (the CLI and the daemon that
# share a file share a host).
_LEASES = leases.lease_sql("?", "((julianday('now') - 2440587.5) * 86400.0)")


class SqliteStore:
    def __init__(self, path: Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._lock = threading.RLock()
        # Why the last write failed (disk full, I/O error), until an apply succeeds: /readyz.
        self._write_failure: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection, shared by threads under a lock: pygit2 and SQLite work runs off
            # the event loop in worker threads, and SQLite serializes writers anyway.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed sync survives power loss, not only a process crash.
            self._db.execute("PRAGMA synchronous = FULL")
            # The file this connection writes: if it is deleted or replaced, writes go nowhere.
            self._identity = identity(path)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"store {path}: cannot open: {e}") from e
        self.migrated_from = self._migrate()
        # Webhook deliveries have a connection of their own, so that the intake never waits on
        # the lock a long sync holds, and NORMAL sync: in WAL mode a commit then survives a
        # crash of syncd, not a power loss, which for a dedupe record costs a fsync per webhook
        # for no good reason (a lost record means one redundant, coalesced run at worst).
        self._hooks = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._hooks_lock = threading.Lock()
        self._hooks.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._hooks.execute("PRAGMA synchronous = NORMAL")
        self._pruned_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._hooks_lock:
            self._hooks.close()
        with self._lock:
            self._db.close()

    def integrity_ok(self) -> bool:
        with self._reading():
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def schema_version(self) -> int:
        with self._reading():
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> int:
        """Bring the schema up to date, in one transaction; return the version found."""
        with self._tx():
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"store {self.path} has schema version {version}; this syncd knows up to "
                    f"{len(MIGRATIONS)}: upgrade syncd"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
        return version

    def problem(self) -> str | None:
        """Why the store cannot take writes now, or None: its file deleted or replaced under
        this process, or the last write failed (disk full, I/O error) and no apply has
        succeeded since. (Another process holding the write lock is no failure: busy.)"""
        try:
            if identity(self.path) != self._identity:
                return f"store {self.path}: the database file was replaced"
        except FileNotFoundError:
            return f"store {self.path}: the database file is gone"
        except OSError as e:
            return f"store {self.path}: {e}"
        return self._write_failure

    @contextmanager
    def _tx(
        self, clears_failure: bool = False, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception.

        SQLite's own errors become StoreError naming the store's path. A failed write is
        remembered for `problem` until a write that `clears_failure` (an apply) succeeds: a
        run's record or a health record is small, and may fit where an apply does not.

        Not `durable`: committed without its own fsync (a lease: after a power loss no writer
        that held it lives on; the next durable commit makes it durable, in order)."""
        with self._reading():
            if not durable:
                self._db.execute("PRAGMA synchronous = NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back after some errors (SQLITE_FULL).
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                if not is_busy(e):
                    self._write_failure = f"store {self.path}: the last write failed: {e}"
                raise
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous = FULL")
            if clears_failure:
                self._write_failure = None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Under the connection's lock; SQLite's errors become StoreError naming the path."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as e:
                raise StoreError(f"store {self.path}: {e}") from e

    # -- sync state ------------------------------------------------------------------------

    def state(self, ws: str) -> SyncState:
        with self._reading():
            row = self._db.execute(
                "SELECT status, last_applied_revision, last_seen_revision, last_run_id,"
                " failed_revision, drift, source_key, pinned_revision, suspended"
                " FROM workspaces WHERE id = ?",
                (ws,),
            ).fetchone()
        return state_from_row(ws, row)

    def save_state(self, state: SyncState) -> None:
        with self._tx() as db:
            upsert_state(db, state)

    def set_suspended(self, ws: str, suspended: bool) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO workspaces (id, suspended, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET suspended = excluded.suspended,"
                " updated_at = excluded.updated_at",
                (ws, int(suspended), time.time()),
            )

    # -- health ----------------------------------------------------------------------------

    def health(self, ws: str) -> HealthRecord | None:
        with self._reading():
            row = self._db.execute(
                "SELECT health, since, error, failures, source_failing FROM health"
                " WHERE workspace = ?",
                (ws,),
            ).fetchone()
        return health_from_row(ws, row)

    def save_health(self, record: HealthRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO health (workspace, health, since, error, failures,"
                " source_failing) VALUES (?, ?, ?, ?, ?, ?)",
                health_params(record),
            )

    # -- live steps ------------------------------------------------------------------------

    def live_steps(self, ws: str, names: Collection[str] | None = None) -> dict[str, LiveStep]:
        sql = (
            "SELECT id, name, content, version, content_hash, updated_at, origin FROM steps"
            " WHERE workspace = ? AND deleted = 0"
        )
        with self._reading():
            if names is None:
                rows = self._db.execute(sql + " ORDER BY name", (ws,)).fetchall()
            else:
                rows = []
                for chunk in chunks(list(names)):
                    marks = ",".join("?" * len(chunk))
                    rows += self._db.execute(f"{sql} AND name IN ({marks})", (ws, *chunk))
        return {r[1]: live_step_from_row(r) for r in rows}

    def live_count(self, ws: str) -> int:
        with self._reading():
            row = self._db.execute(
                "SELECT count(*) FROM steps WHERE workspace = ? AND deleted = 0", (ws,)
            ).fetchone()
        return int(row[0])

    def drifted_names(self, ws: str) -> set[str]:
        with self._reading():
            rows = self._db.execute(
                "SELECT name FROM steps WHERE workspace = ? AND origin = 'outside'", (ws,)
            )
            return {r[0] for r in rows}

    def put_outside(self, ws: str, name: str, content: StepContent) -> LiveStep:
        """An edit made outside git (as the workspace UI makes): kept until the next apply."""
        now = time.time()
        with self._tx() as db:
            old = db.execute(
                "SELECT id, version FROM steps WHERE workspace = ? AND name = ?", (ws, name)
            ).fetchone()
            step_id, version = (old[0], old[1] + 1) if old else (next(fresh_ids(1)), 1)
            db.execute(
                "INSERT OR REPLACE INTO steps (workspace, name, id, content, content_hash,"
                " version, updated_at, origin, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    ws,
                    name,
                    step_id,
                    content.canonical_json(),
                    content.content_hash(),
                    version,
                    now,
                    Origin.OUTSIDE.value,
                ),
            )
            mark_out_of_sync(db, ws)
        return LiveStep(
            step_id, name, content, version, content.content_hash(), now, Origin.OUTSIDE
        )

    def delete_outside(self, ws: str, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE steps SET deleted = 1, origin = 'outside', updated_at = ?,"
                " version = version + 1 WHERE workspace = ? AND name = ? AND deleted = 0",
                (time.time(), ws, name),
            )
            if cur.rowcount:
                mark_out_of_sync(db, ws)
            return cur.rowcount > 0

    # -- git's files as of the last applied commit -----------------------------------------

    def index_files(self, ws: str, paths: Collection[str] | None = None) -> dict[str, Step]:
        sql = "SELECT path, name, blob, content FROM git_files WHERE workspace = ?"
        with self._reading():
            if paths is None:
                rows = self._db.execute(sql, (ws,)).fetchall()
            else:
                rows = []
                for chunk in chunks(list(paths)):
                    marks = ",".join("?" * len(chunk))
                    rows += self._db.execute(f"{sql} AND path IN ({marks})", (ws, *chunk))
        return {r[0]: index_step_from_row(r) for r in rows}

    def index_by_name(self, ws: str, names: Collection[str]) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = {}
        sql = "SELECT path, name, blob, content FROM git_files WHERE workspace = ?"
        with self._reading():
            for chunk in chunks(list(names)):
                marks = ",".join("?" * len(chunk))
                for r in self._db.execute(f"{sql} AND name IN ({marks})", (ws, *chunk)):
                    out.setdefault(r[1], []).append(index_step_from_row(r))
        return out

    def index_count(self, ws: str) -> int:
        with self._reading():
            row = self._db.execute(
                "SELECT count(*) FROM git_files WHERE workspace = ?", (ws,)
            ).fetchone()
        return int(row[0])

    # -- applying and recording ------------------------------------------------------------

    # -- writers' leases (see syncd.store.leases) ------------------------------------------

    def take_lease(
        self, ws: str, holder: str, ttl: float = LEASE_TTL, force: bool = False
    ) -> Lease | None:
        with self._tx(durable=False) as db:
            return leases.take(db, _LEASES, ws, holder, ttl, force)

    def renew_leases(self, held: Collection[Lease], ttl: float = LEASE_TTL) -> list[Lease]:
        with self._tx(durable=False) as db:
            return leases.renew(db, _LEASES, held, ttl)

    def lease_holder(self, ws: str) -> str | None:
        with self._reading():
            return leases.holder(self._db, _LEASES, ws)

    def release_lease(self, lease: Lease) -> None:
        with self._tx(durable=False) as db:
            leases.release(db, _LEASES, lease)

    def apply(
        self,
        plan: Plan,
        index: IndexUpdate,
        run: Run,
        state: SyncState,
        base: ApplyBase,
        lease: Lease | None = None,
    ) -> SyncState:
        """Apply a plan, the new git index, the run and the state: all or nothing.

        Optimistic: ApplyConflict, writing nothing, unless the store still holds the base the
        plan was read from. Only the steps of the base change; a step edited outside git that
        the plan did not cover keeps its mark, and the workspace stays OutOfSync for it.
        Returns the state saved."""
        ws, now = state.workspace, time.time()
        with self._tx(clears_failure=True) as db:
            leases.check_write(db, _LEASES, lease, run.id, ws)
            check_base(db, ws, base)
            upserts = plan.creates + plan.updates
            # A workspace's first apply has no rows to look up (one probe instead of a
            # lookup per 500 names).
            has_steps = db.execute(
                "SELECT 1 FROM steps WHERE workspace = ? LIMIT 1", (ws,)
            ).fetchone()
            old = {
                r[0]: (r[1], r[2])
                for chunk in (chunks([c.name for c in upserts]) if has_steps else ())
                for r in db.execute(
                    "SELECT name, id, version FROM steps WHERE workspace = ? AND name IN"
                    f" ({','.join('?' * len(chunk))})",
                    (ws, *chunk),
                )
            }
            new_ids = fresh_ids(sum(1 for c in upserts if c.name not in old))
            rows = []
            # Each content is serialized once: for the row, its hash and the git index.
            texts: dict[StepContent, str] = {}
            for change in upserts:
                assert change.after is not None
                found = old.get(change.name)
                step_id, version = found if found else (next(new_ids), 0)
                text = texts[change.after] = change.after.canonical_json()
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                rows.append((ws, change.name, step_id, text, digest, version + 1, now))
            if has_steps:
                # The steps the plan covered are now as git has them: their tombstones go and
                # their marks clear; a step edited outside git after the plan was read keeps
                # its mark. Before the writes below, which only write rows of git's.
                covered = [(ws, name) for name in base.versions]
                db.executemany(
                    "DELETE FROM steps WHERE workspace = ? AND name = ? AND deleted = 1", covered
                )
                db.executemany(
                    "UPDATE steps SET origin = 'git' WHERE workspace = ? AND name = ?"
                    " AND origin = 'outside'",
                    covered,
                )
            db.executemany(
                "INSERT OR REPLACE INTO steps (workspace, name, id, content, content_hash,"
                " version, updated_at, origin, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, 'git', 0)",
                rows,
            )
            db.executemany(
                "DELETE FROM steps WHERE workspace = ? AND name = ?",
                [(ws, c.name) for c in plan.deletes],
            )
            update_index(db, ws, index, texts)
            insert_run(db, run)
            left = db.execute(
                "SELECT count(*) FROM steps WHERE workspace = ? AND origin = 'outside'", (ws,)
            ).fetchone()[0]
            if left:  # edited outside git while this sync ran: not synced yet
                state = replace(state, status=Status.OUT_OF_SYNC, drift=int(left))
            upsert_state(db, state)
        return state

    def record_run(self, run: Run, state: SyncState, lease: Lease | None = None) -> None:
        with self._tx() as db:
            leases.check_write(db, _LEASES, lease, run.id, state.workspace)
            insert_run(db, run)
            upsert_state(db, state)

    def runs(self, ws: str, limit: int = 50) -> list[Run]:
        with self._reading():
            rows = self._db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE workspace = ?"
                " ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (ws, limit),
            ).fetchall()
        return [run_from_row(r) for r in rows]

    def last_success_at(self, ws: str) -> float | None:
        """When the workspace's last succeeded run finished; None before the first."""
        with self._reading():
            row = self._db.execute(
                "SELECT MAX(finished_at) FROM runs WHERE workspace = ? AND result = ?",
                (ws, RunResult.SUCCEEDED.value),
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def runs_finished_since(self, since: float, until: float, limit: int = 10_000) -> list[Run]:
        """Runs of every workspace that finished in (since, until], oldest first."""
        with self._reading():
            rows = self._db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE finished_at > ? AND finished_at <= ?"
                " ORDER BY finished_at, rowid LIMIT ?",
                (since, until, limit),
            ).fetchall()
        return [run_from_row(r) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._reading():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- webhook deliveries ----------------------------------------------------------------

    def remember_delivery(
        self, provider: str, delivery: str, now: float, ttl: float = DELIVERY_TTL
    ) -> bool:
        """Record a delivery; False when it was already taken within `ttl` (one statement)."""
        with self._hooks_lock:
            if now - self._pruned_at >= DELIVERY_PRUNE_EVERY:
                self._hooks.execute("DELETE FROM deliveries WHERE seen_at <= ?", (now - ttl,))
                self._pruned_at = now
            cur = self._hooks.execute(
                "INSERT INTO deliveries (provider, id, seen_at) VALUES (?, ?, ?)"
                " ON CONFLICT (provider, id) DO UPDATE SET seen_at = excluded.seen_at"
                " WHERE deliveries.seen_at <= ?",
                (provider, delivery, now, now - ttl),
            )
            return cur.rowcount > 0

    def forget_delivery(self, provider: str, delivery: str) -> None:
        with self._hooks_lock:
            self._hooks.execute(
                "DELETE FROM deliveries WHERE provider = ? AND id = ?", (provider, delivery)
            )

    def run(self, run_id: str) -> Run | None:
        with self._reading():
            row = self._db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        return run_from_row(row) if row else None


def _statements(script: str) -> list[str]:
    # executescript would COMMIT our transaction; run the statements one by one instead.
    statements = []
    for chunk in script.split(";"):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            statements.append(code)
    return statements
