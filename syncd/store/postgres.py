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
import json
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from syncd.model import (
    Health,
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
    Trigger,
)
from syncd.store.postgres_schema import MIGRATIONS, VERSION_TABLE
from syncd.store.protocol import (
    DELIVERY_PRUNE_EVERY,
    DELIVERY_TTL,
    ApplyBase,
    ApplyConflict,
    IndexUpdate,
    StoreError,
)

# Advisory lock keys: one (bigint) for migrations, one namespace (int4) for per-workspace writes.
# Any value does, as long as it is syncd's own; these spell "syncd".
MIGRATION_LOCK = 0x73796E6364
WRITE_LOCK_NAMESPACE = 0x73796E63
POOL_WAIT = 30.0  # seconds a call waits for a free connection (all busy, or reconnecting)
PROBE_WAIT = 2.0  # seconds `problem` waits: /readyz must answer quickly


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
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=min(2, pool_size),
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="syncd-store",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout * 2)
        except PoolTimeout as e:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL store {self.where}: timed out") from e
        # Webhook deliveries have a small pool of their own with asynchronous commit: the
        # intake answers from the event loop, and a fsync per webhook would cost milliseconds
        # for a record whose loss (a server crash within a fraction of a second) means one
        # redundant, coalesced run at worst. The daemon's own crash loses nothing.
        self._hooks_pool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=2,
            kwargs={"autocommit": True},
            configure=_asynchronous_commit,
            open=False,
            name="syncd-deliveries",
        )
        self._hooks_pool.open(wait=False)
        self._pruned_at = 0.0
        # Why the last write failed, until a write succeeds: /readyz.
        self._write_failure: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._hooks_pool.close()
        self._pool.close()

    def schema_version(self) -> int:
        with self._conn() as conn:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def _clean(self, error: BaseException) -> str:
        """The server's or libpq's message on one line, without the password."""
        text = " ".join(str(error).split())
        if self._password:
            text = text.replace(self._password, "***")
        return text or type(error).__name__

    def _migrate(self) -> int:
        """Bring the schema up to date; return the version found. Under an advisory lock, so
        that replicas or a `syncd migrate` started at the same time migrate once."""
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as e:
            raise StoreError(
                f"cannot connect to PostgreSQL store {self.where}: {self._clean(e)}"
            ) from e
        try:
            with conn:
                conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(VERSION_TABLE)
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                found = int(row[0]) if row else 0
                if found > len(MIGRATIONS):
                    raise StoreError(
                        f"store {self.where} has schema version {found}; this syncd knows up "
                        f"to {len(MIGRATIONS)}: upgrade syncd"
                    )
                for number, script in enumerate(MIGRATIONS[found:], start=found + 1):
                    # Transactional DDL: a migration that fails leaves the previous version.
                    with conn.transaction():
                        conn.execute(script.encode("utf-8"))
                        conn.execute(
                            "INSERT INTO schema_version (one, version) VALUES (TRUE, %s)"
                            " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                            (number,),
                        )
                # The session lock would also go with the connection; say so explicitly.
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        except psycopg.Error as e:
            raise StoreError(
                f"cannot migrate PostgreSQL store {self.where}: {self._clean(e)}"
            ) from e
        return found

    def problem(self) -> str | None:
        """Why the store cannot take writes now, or None: the database does not answer, or
        the last write failed and none has succeeded since. One round trip; for /readyz."""
        try:
            with self._pool.connection(timeout=PROBE_WAIT) as conn:
                conn.execute("SELECT 1")
        except (psycopg.Error, PoolTimeout) as e:
            return f"store {self.where}: the database does not answer: {self._clean(e)}"
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
        if row is None:
            return SyncState(workspace=ws)
        return SyncState(
            ws, Status(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8])
        )

    def save_state(self, state: SyncState) -> None:
        with self._tx(state.workspace) as db:
            _save_state(db, state)

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
        if row is None:
            return None
        return HealthRecord(
            ws,
            Health(row[0]),
            None if row[1] is None else float(row[1]),
            row[2] if isinstance(row[2], str) else None,
            int(row[3]),
            bool(row[4]),
        )

    def save_health(self, record: HealthRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO health (workspace, health, since, error, failures, source_failing)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (workspace) DO UPDATE SET"
                " health = excluded.health, since = excluded.since, error = excluded.error,"
                " failures = excluded.failures, source_failing = excluded.source_failing",
                (
                    record.workspace,
                    record.health.value,
                    record.since,
                    record.error,
                    record.failures,
                    record.source_failing,
                ),
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
        return {r[1]: _live_step(r) for r in rows}

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
                _UPSERT_STEP,
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
            _mark_out_of_sync(db, ws)
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
                _mark_out_of_sync(db, ws)
            return cur.rowcount > 0

    # -- git's files as of the last applied commit -----------------------------------------

    def index_files(self, ws: str, paths: Collection[str] | None = None) -> dict[str, Step]:
        sql = "SELECT path, name, blob, content FROM git_files WHERE workspace = %s"
        with self._conn() as conn:
            if paths is None:
                rows = conn.execute(sql, (ws,)).fetchall()
            else:
                rows = conn.execute(sql + " AND path = ANY(%s)", (ws, list(paths))).fetchall()
        return {r[0]: _index_step(r) for r in rows}

    def index_by_name(self, ws: str, names: Collection[str]) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = {}
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT path, name, blob, content FROM git_files"
                " WHERE workspace = %s AND name = ANY(%s)",
                (ws, list(names)),
            ).fetchall()
        for r in rows:
            out.setdefault(r[1], []).append(_index_step(r))
        return out

    def index_count(self, ws: str) -> int:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM git_files WHERE workspace = %s", (ws,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- applying and recording ------------------------------------------------------------

    def apply(
        self, plan: Plan, index: IndexUpdate, run: Run, state: SyncState, base: ApplyBase
    ) -> SyncState:
        """Apply a plan, the new git index, the run and the state: all or nothing.

        Optimistic: ApplyConflict, writing nothing, unless the store still holds the base the
        plan was read from (checked under the workspace's write lock, so no writer slips in
        between). Only the steps of the base change; a step edited outside git that the plan
        did not cover keeps its mark, and the workspace stays OutOfSync for it. Returns the
        state saved."""
        ws, now = state.workspace, time.time()
        with self._tx(ws, clears_failure=True) as db:
            _check_base(db, ws, base)
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
                    cur.executemany(_UPSERT_STEP, rows)
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
            _update_index(db, ws, index, texts)
            _insert_run(db, run)
            row = db.execute(
                "SELECT count(*) FROM steps WHERE workspace = %s AND origin = 'outside'", (ws,)
            ).fetchone()
            left = int(row[0]) if row else 0
            if left:  # edited outside git while this sync ran: not synced yet
                state = replace(state, status=Status.OUT_OF_SYNC, drift=left)
            _save_state(db, state)
        return state

    def record_run(self, run: Run, state: SyncState) -> None:
        with self._tx(state.workspace) as db:
            _insert_run(db, run)
            _save_state(db, state)

    def runs(self, ws: str, limit: int = 50) -> list[Run]:
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE workspace = %s"
                " ORDER BY started_at DESC, seq DESC LIMIT %s",
                (ws, limit),
            ).fetchall()
        return [_run(r) for r in rows]

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
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE finished_at > %s AND finished_at <= %s"
                " ORDER BY finished_at, seq LIMIT %s",
                (since, until, limit),
            ).fetchall()
        return [_run(r) for r in rows]

    def run(self, run_id: str) -> Run | None:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,)
            ).fetchone()
        return _run(row) if row else None

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

    def remember_delivery(
        self, provider: str, delivery: str, now: float, ttl: float = DELIVERY_TTL
    ) -> bool:
        """Record a delivery; False when it was already taken within `ttl` (one statement)."""
        with self._hooks_pool.connection() as conn:
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
        with self._hooks_pool.connection() as conn:
            conn.execute(
                "DELETE FROM deliveries WHERE provider = %s AND id = %s", (provider, delivery)
            )


def _asynchronous_commit(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET synchronous_commit TO off")


def describe(url: str) -> str:
    """host:port/database of a PostgreSQL URL, for messages: no user, no password, no query."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return "(unreadable URL)"
    return f"{parts.hostname or 'localhost'}:{port}/{parts.path.lstrip('/') or '?'}"


_UPSERT_STEP = (
    "INSERT INTO steps (workspace, name, id, content, content_hash, version, updated_at, origin,"
    " deleted) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, FALSE)"
    " ON CONFLICT (workspace, name) DO UPDATE SET id = excluded.id, content = excluded.content,"
    " content_hash = excluded.content_hash, version = excluded.version,"
    " updated_at = excluded.updated_at, origin = excluded.origin, deleted = FALSE"
)

_RUN_COLUMNS = (
    "id, workspace, trigger, revision, result, created, updated, deleted, started_at,"
    " finished_at, error, dry_run"
)


def _insert_run(db: psycopg.Connection[Any], run: Run) -> None:
    # A run recorded again moves to the end of its instant, as SQLite's INSERT OR REPLACE does.
    db.execute(
        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (id) DO UPDATE SET seq = DEFAULT, workspace = excluded.workspace,"
        " trigger = excluded.trigger, revision = excluded.revision, result = excluded.result,"
        " created = excluded.created, updated = excluded.updated, deleted = excluded.deleted,"
        " started_at = excluded.started_at, finished_at = excluded.finished_at,"
        " error = excluded.error, dry_run = excluded.dry_run",
        (
            run.id,
            run.workspace,
            run.trigger.value,
            run.revision,
            run.result.value,
            run.created,
            run.updated,
            run.deleted,
            run.started_at,
            run.finished_at,
            run.error,
            bool(run.dry_run),
        ),
    )


def _run(r: Sequence[Any]) -> Run:
    return Run(
        id=str(r[0]),
        workspace=str(r[1]),
        trigger=Trigger(r[2]),
        revision=r[3] if isinstance(r[3], str) else None,
        result=RunResult(r[4]),
        created=int(r[5]),
        updated=int(r[6]),
        deleted=int(r[7]),
        started_at=float(r[8]),
        finished_at=None if r[9] is None else float(r[9]),
        error=r[10] if isinstance(r[10], str) else None,
        dry_run=bool(r[11]),
    )


def _save_state(db: psycopg.Connection[Any], s: SyncState) -> None:
    db.execute(
        "INSERT INTO workspaces (id, status, last_applied_revision, last_seen_revision,"
        " last_run_id, failed_revision, drift, source_key, pinned_revision, updated_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
        " last_applied_revision = excluded.last_applied_revision,"
        " last_seen_revision = excluded.last_seen_revision, last_run_id = excluded.last_run_id,"
        " failed_revision = excluded.failed_revision, drift = excluded.drift,"
        " source_key = excluded.source_key, pinned_revision = excluded.pinned_revision,"
        " updated_at = excluded.updated_at",
        (
            s.workspace,
            s.status.value,
            s.last_applied_revision,
            s.last_seen_revision,
            s.last_run_id,
            s.failed_revision,
            s.drift,
            s.source_key,
            s.pinned_revision,
            time.time(),
        ),
    )


def _check_base(db: psycopg.Connection[Any], ws: str, base: ApplyBase) -> None:
    row = db.execute("SELECT last_applied_revision FROM workspaces WHERE id = %s", (ws,)).fetchone()
    applied = row[0] if row else None
    if applied != base.revision:
        raise ApplyConflict(
            f"workspace {ws}: applied revision moved from {_short(base.revision)} to"
            f" {_short(applied)} since the plan was read"
        )
    names = list(base.versions)
    now: dict[str, int] = {}
    if names:
        for r in db.execute(
            "SELECT name, version FROM steps WHERE workspace = %s AND NOT deleted"
            " AND name = ANY(%s)",
            (ws, names),
        ):
            now[r[0]] = int(r[1])
    moved = sorted(n for n in names if now.get(n) != base.versions[n])
    if moved:
        shown = ", ".join(repr(n) for n in moved[:5]) + (" ..." if len(moved) > 5 else "")
        raise ApplyConflict(f"workspace {ws}: steps changed since the plan was read: {shown}")


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "none"


def _mark_out_of_sync(db: psycopg.Connection[Any], ws: str) -> None:
    db.execute(
        "INSERT INTO workspaces (id, status, drift, updated_at) VALUES (%s, 'OutOfSync', 1, %s)"
        " ON CONFLICT (id) DO UPDATE SET status = 'OutOfSync', drift = workspaces.drift + 1,"
        " updated_at = excluded.updated_at",
        (ws, time.time()),
    )


def _update_index(
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
                [
                    (ws, s.path, s.name, s.blob, texts.get(s.content) or s.content.canonical_json())
                    for s in index.upserts
                ],
            )


def _live_step(r: Sequence[Any]) -> LiveStep:
    content = StepContent.from_dict(json.loads(str(r[2])))
    return LiveStep(
        id=str(r[0]),
        name=str(r[1]),
        content=content,
        version=int(r[3]),
        content_hash=str(r[4]),
        updated_at=float(r[5]),
        origin=Origin(r[6]),
    )


def _index_step(r: Sequence[Any]) -> Step:
    content = StepContent.from_dict(json.loads(str(r[3])))
    return Step(name=str(r[1]), content=content, path=str(r[0]), blob=str(r[2]))
