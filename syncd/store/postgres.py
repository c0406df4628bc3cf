"""The PostgreSQL store: the same protocol and semantics as `SqliteStore`, for teams that run
PostgreSQL already and want the store off the daemon's host.

The only module with SQL for PostgreSQL. psycopg 3 with a pool of connections in autocommit
mode: a read is one round trip with no BEGIN/COMMIT around it, and a write is an explicit
transaction. Writes to one workspace are serialized by a transaction-level advisory lock, as
SQLite's single writer serializes them, so an apply and an edit made outside git never
interleave. The schema is migrated at open under a session advisory lock, one migration per
transaction. Messages name the host and the database, never the password.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import PoolTimeout

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
from syncd.store.postgres_connect import (
    HOOKS_BACKOFF,
    HOOKS_WAIT,
    POOL_WAIT,
    PROBE_WAIT,
    WRITE_LOCK_NAMESPACE,
    clean_error,
    connection_lost,
    describe,
    migrate,
    open_hooks_pool,
    open_pool,
)
from syncd.store.postgres_rows import (
    UPSERT_STEP,
    check_base,
    insert_run,
    mark_out_of_sync,
    update_index,
    upsert_state,
)
from syncd.store.postgres_schema import MIGRATIONS
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

# The database's clock: one clock for the leases of replicas on several hosts. An apply locks
# its lease row, so that a take waits for the apply that checked the lease to commit.
_LEASES = leases.lease_sql("%s", "extract(epoch from clock_timestamp())", lock_row=" FOR UPDATE")


TAKE_LOCK_WAIT = "2s"


class PostgresStore:
    def __init__(
        self,
        url: str,
        password: str | None = None,
        *,
        pool_size: int = 8,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.where = describe(url)
        self._password = password
        params: dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout))}
        if password is not None:
            params["password"] = password
        try:
            self._conninfo = pg_conninfo.make_conninfo(url, **params)
        except psycopg.ProgrammingError as e:
            raise StoreError(f"store {self.where}: invalid PostgreSQL URL: {self._clean(e)}") from e
        # Connect once directly first: the pool retries in the background and would only say
        # "timed out"; this gives the server's reason (refused, no such database, bad password).
        self.migrated_from = self._migrate()
        self._pool = open_pool(self._conninfo, self.where, pool_size, connect_timeout)
        # Webhook deliveries have a small pool of their own: see open_hooks_pool.
        self._hooks_pool = open_hooks_pool(self._conninfo)
        self._pruned_at = 0.0
        # Until when webhooks skip the store after it failed: while the database is away each
        # would otherwise wait on the event loop for a connection.
        self._hooks_down_until = 0.0
        # Why the last write failed, until a write succeeds: /readyz. A failure because the
        # connection was lost ends when the database answers again.
        self._write_failure: str | None = None
        self._failure_was_connection = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._hooks_pool.close()
        self._pool.close()

    def schema_version(self) -> int:
        with self._conn() as conn:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    @property
    def conninfo(self) -> str:
        """The connection string, password included: for the replicas' own sessions."""
        return self._conninfo

    def clean(self, error: BaseException) -> str:
        """An error's message on one line, without the password."""
        return self._clean(error)

    def _clean(self, error: BaseException) -> str:
        """The server's or libpq's message on one line, without the password."""
        return clean_error(error, self._password)

    def _migrate(self) -> int:
        """Bring the schema up to date; return the version found (see `migrate`)."""
        return migrate(self._conninfo, self.where, MIGRATIONS, self._clean)

    def problem(self) -> str | None:
        """Why the store cannot take writes now, or None: the database does not answer, or
        the last write failed and none has succeeded since. One round trip; for /readyz."""
        try:
            with self._pool.connection(timeout=PROBE_WAIT) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout) as e:
            return f"store {self.where}: the database does not answer: {self._clean(e)}"
        if self._failure_was_connection:
            # The last write failed because the database was away, and it answers again: that
            # failure is over (/readyz turns ready now, not at the next apply). A failure of
            # the database itself (a full disk) stays until a write succeeds.
            self._write_failure, self._failure_was_connection = None, False
        return self._write_failure

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection from the pool; the driver's errors become StoreError naming the store
        (host:port/database), so that a sync fails as with any store and is retried."""
        try:
            with self._pool.connection(timeout=POOL_WAIT) as conn:
                yield conn
        except PoolTimeout as e:
            raise StoreError(
                f"store {self.where}: no database connection within {POOL_WAIT:.0f} s"
            ) from e
        except psycopg.Error as e:
            raise StoreError(f"store {self.where}: {self._clean(e)}") from e

    @contextmanager
    def _tx(
        self, ws: str | None = None, clears_failure: bool = False
    ) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction: committed on success, rolled back on any exception. With a
        workspace, writers of that workspace wait for each other, as SQLite's writers do. A
        failed write is remembered for `problem` until a write that `clears_failure` (an apply)
        succeeds: a run's record or a health record is small, and may fit where an apply does
        not."""
        with self._conn() as conn:
            try:
                with conn.transaction():
                    if ws is not None:
                        conn.execute(
                            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                            (WRITE_LOCK_NAMESPACE, ws),
                        )
                    yield conn
            except psycopg.Error as e:
                self._write_failure = f"store {self.where}: the last write failed: {self._clean(e)}"
                self._failure_was_connection = connection_lost(e)
                raise
        if clears_failure:
            self._write_failure = None

    # -- sync state ------------------------------------------------------------------------

    def state(self, ws: str) -> SyncState:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT status, last_applied_revision, last_seen_revision, last_run_id,"
                " failed_revision, drift, source_key, pinned_revision, suspended"
                " FROM workspaces WHERE id = %s",
                (ws,),
            ).fetchone()
        return state_from_row(ws, row)

    def save_state(self, state: SyncState) -> None:
        with self._tx(state.workspace) as db:
            upsert_state(db, state)

    def set_suspended(self, ws: str, suspended: bool) -> None:
        with self._tx(ws) as db:
            db.execute(
                "INSERT INTO workspaces (id, suspended, updated_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET suspended = excluded.suspended,"
                " updated_at = excluded.updated_at",
                (ws, suspended, time.time()),
            )

    # -- health ----------------------------------------------------------------------------

    def health(self, ws: str) -> HealthRecord | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT health, since, error, failures, source_failing FROM health"
                " WHERE workspace = %s",
                (ws,),
            ).fetchone()
        return health_from_row(ws, row)

    def save_health(self, record: HealthRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO health (workspace, health, since, error, failures, source_failing)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (workspace) DO UPDATE SET"
                " health = excluded.health, since = excluded.since, error = excluded.error,"
                " failures = excluded.failures, source_failing = excluded.source_failing",
                health_params(record),
            )

    # -- live steps ------------------------------------------------------------------------

    def live_steps(self, ws: str, names: Collection[str] | None = None) -> dict[str, LiveStep]:
        sql = (
            "SELECT id, name, content, version, content_hash, updated_at, origin FROM steps"
            " WHERE workspace = %s AND NOT deleted"
        )
        with self._conn() as conn:
            if names is None:
                rows = conn.execute(sql + " ORDER BY name", (ws,)).fetchall()
            else:
                rows = conn.execute(sql + " AND name = ANY(%s)", (ws, list(names))).fetchall()
        return {r[1]: live_step_from_row(r) for r in rows}

    def live_count(self, ws: str) -> int:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM steps WHERE workspace = %s AND NOT deleted", (ws,)
            ).fetchone()
        return int(row[0]) if row else 0

    def drifted_names(self, ws: str) -> set[str]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT name FROM steps WHERE workspace = %s AND origin = 'outside'", (ws,)
            ).fetchall()
        return {r[0] for r in rows}

    def put_outside(self, ws: str, name: str, content: StepContent) -> LiveStep:
        """An edit made outside git (as the workspace UI makes): kept until the next apply."""
        now = time.time()
        with self._tx(ws) as db:
            old = db.execute(
                "SELECT id, version FROM steps WHERE workspace = %s AND name = %s", (ws, name)
            ).fetchone()
            step_id, version = (old[0], old[1] + 1) if old else (uuid.uuid4().hex, 1)
            db.execute(
                UPSERT_STEP,
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
        with self._tx(ws) as db:
            cur = db.execute(
                "UPDATE steps SET deleted = TRUE, origin = 'outside', updated_at = %s,"
                " version = version + 1 WHERE workspace = %s AND name = %s AND NOT deleted",
                (time.time(), ws, name),
            )
            if cur.rowcount:
                mark_out_of_sync(db, ws)
            return cur.rowcount > 0

    # -- git's files as of the last applied commit -----------------------------------------

    def index_files(self, ws: str, paths: Collection[str] | None = None) -> dict[str, Step]:
        sql = "SELECT path, name, blob, content FROM git_files WHERE workspace = %s"
        with self._conn() as conn:
            if paths is None:
                rows = conn.execute(sql, (ws,)).fetchall()
            else:
                rows = conn.execute(sql + " AND path = ANY(%s)", (ws, list(paths))).fetchall()
        return {r[0]: index_step_from_row(r) for r in rows}

    def index_by_name(self, ws: str, names: Collection[str]) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = {}
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT path, name, blob, content FROM git_files"
                " WHERE workspace = %s AND name = ANY(%s)",
                (ws, list(names)),
            ).fetchall()
        for r in rows:
            out.setdefault(r[1], []).append(index_step_from_row(r))
        return out

    def index_count(self, ws: str) -> int:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM git_files WHERE workspace = %s", (ws,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- applying and recording ------------------------------------------------------------

    # -- writers' leases (see syncd.store.leases) ------------------------------------------

    def take_lease(
        self, ws: str, holder: str, ttl: float = LEASE_TTL, force: bool = False
    ) -> Lease | None:
        with self._tx() as db:
            # The lease row is locked while its holder applies: a take waits a moment, then
            # counts the lease as held (a holder frozen inside its apply is ended by the
            # server's idle-in-transaction timeout, see postgres_connect).
            db.execute(f"SET LOCAL lock_timeout = '{TAKE_LOCK_WAIT}'")
            try:
                with db.transaction():
                    return leases.take(db, _LEASES, ws, holder, ttl, force)
            except psycopg.errors.LockNotAvailable:
                return None

    def renew_leases(self, held: Collection[Lease], ttl: float = LEASE_TTL) -> list[Lease]:
        with self._tx() as db:
            return leases.renew(db, _LEASES, held, ttl)

    def lease_holder(self, ws: str) -> str | None:
        with self._conn() as db:
            return leases.holder(db, _LEASES, ws)

    def release_lease(self, lease: Lease) -> None:
        with self._tx() as db:
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
        plan was read from (checked under the workspace's write lock, so no writer slips in
        between). Only the steps of the base change; a step edited outside git that the plan
        did not cover keeps its mark, and the workspace stays OutOfSync for it. Returns the
        state saved."""
        ws, now = state.workspace, time.time()
        with self._tx(ws, clears_failure=True) as db:
            leases.check_write(db, _LEASES, lease, run.id, ws)
            check_base(db, ws, base)
            upserts = plan.creates + plan.updates
            old: dict[str, tuple[str, int]] = {}
            if upserts:
                for r in db.execute(
                    "SELECT name, id, version FROM steps WHERE workspace = %s AND name = ANY(%s)",
                    (ws, [c.name for c in upserts]),
                ):
                    old[r[0]] = (r[1], r[2])
            rows = []
            # Each content is serialized once: for the row, its hash and the git index.
            texts: dict[StepContent, str] = {}
            for change in upserts:
                assert change.after is not None
                step_id, version = old.get(change.name, (uuid.uuid4().hex, 0))
                text = texts[change.after] = change.after.canonical_json()
                digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                rows.append((ws, change.name, step_id, text, digest, version + 1, now, "git"))
            with db.cursor() as cur:
                if rows:
                    cur.executemany(UPSERT_STEP, rows)
                if plan.deletes:
                    cur.execute(
                        "DELETE FROM steps WHERE workspace = %s AND name = ANY(%s)",
                        (ws, [c.name for c in plan.deletes]),
                    )
            # The steps the plan covered are now as git has them: tombstones go, marks clear.
            covered = list(base.versions)
            if covered:
                db.execute(
                    "DELETE FROM steps WHERE workspace = %s AND deleted AND name = ANY(%s)",
                    (ws, covered),
                )
                db.execute(
                    "UPDATE steps SET origin = 'git' WHERE workspace = %s"
                    " AND origin = 'outside' AND name = ANY(%s)",
                    (ws, covered),
                )
            update_index(db, ws, index, texts)
            insert_run(db, run)
            row = db.execute(
                "SELECT count(*) FROM steps WHERE workspace = %s AND origin = 'outside'", (ws,)
            ).fetchone()
            left = int(row[0]) if row else 0
            if left:  # edited outside git while this sync ran: not synced yet
                state = replace(state, status=Status.OUT_OF_SYNC, drift=left)
            upsert_state(db, state)
        return state

    def record_run(self, run: Run, state: SyncState, lease: Lease | None = None) -> None:
        with self._tx(state.workspace) as db:
            leases.check_write(db, _LEASES, lease, run.id, state.workspace)
            insert_run(db, run)
            upsert_state(db, state)

    def runs(self, ws: str, limit: int = 50) -> list[Run]:
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE workspace = %s"
                " ORDER BY started_at DESC, seq DESC LIMIT %s",
                (ws, limit),
            ).fetchall()
        return [run_from_row(r) for r in rows]

    def last_success_at(self, ws: str) -> float | None:
        """When the workspace's last succeeded run finished; None before the first."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT MAX(finished_at) FROM runs WHERE workspace = %s AND result = %s",
                (ws, RunResult.SUCCEEDED.value),
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def runs_finished_since(self, since: float, until: float, limit: int = 10_000) -> list[Run]:
        """Runs of every workspace that finished in (since, until], oldest first."""
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE finished_at > %s AND finished_at <= %s"
                " ORDER BY finished_at, seq LIMIT %s",
                (since, until, limit),
            ).fetchall()
        return [run_from_row(r) for r in rows]

    def run(self, run_id: str) -> Run | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,)
            ).fetchone()
        return run_from_row(row) if row else None

    def get_meta(self, key: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- webhook deliveries ----------------------------------------------------------------

    @contextmanager
    def _hooks_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A dedupe connection, quickly or not at all (StoreError): the caller falls back."""
        if time.monotonic() < self._hooks_down_until:
            raise StoreError(f"store {self.where}: the database did not answer just now")
        try:
            with self._hooks_pool.connection(timeout=HOOKS_WAIT) as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as e:
            self._hooks_down_until = time.monotonic() + HOOKS_BACKOFF
            raise StoreError(f"store {self.where}: {self._clean(e)}") from e

    def remember_delivery(
        self, provider: str, delivery: str, now: float, ttl: float = DELIVERY_TTL
    ) -> bool:
        """Record a delivery; False when it was already taken within `ttl` (one statement)."""
        with self._hooks_connection() as conn:
            if now - self._pruned_at >= DELIVERY_PRUNE_EVERY:
                self._pruned_at = now
                conn.execute("DELETE FROM deliveries WHERE seen_at <= %s", (now - ttl,))
            cur = conn.execute(
                "INSERT INTO deliveries (provider, id, seen_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (provider, id) DO UPDATE SET seen_at = excluded.seen_at"
                " WHERE deliveries.seen_at <= %s",
                (provider, delivery, now, now - ttl),
            )
            return cur.rowcount > 0

    def forget_delivery(self, provider: str, delivery: str) -> None:
        with self._hooks_connection() as conn:
            conn.execute(
                "DELETE FROM deliveries WHERE provider = %s AND id = %s", (provider, delivery)
            )
