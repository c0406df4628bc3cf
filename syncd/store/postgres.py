"""The PostgreSQL store: the same protocol and semantics as `SqliteStore`, for teams that run
PostgreSQL already and want the store off the daemon's host.

Its logic is `SqlStore`'s (syncd.store.base), in PostgreSQL's SQL (syncd.store.postgres_rows);
here is how it holds its connections. psycopg 3 with a pool of connections in autocommit mode:
a read is one round trip with no BEGIN/COMMIT around it, and a write is an explicit
transaction. Writes to one workspace are serialized by a transaction-level advisory lock, as
SQLite's single writer serializes them, so an apply and an edit made outside git never
interleave. The schema is migrated at open under a session advisory lock, one migration per
transaction. Messages name the host and the database, never the password.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import PoolTimeout

from syncd.store import leases
from syncd.store.base import SqlStore
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
from syncd.store.postgres_rows import POSTGRES, check_base
from syncd.store.postgres_schema import MIGRATIONS
from syncd.store.protocol import ApplyBase, Lease, StoreError

TAKE_LOCK_WAIT = "2s"
SNAPSHOT_FETCH = 1000  # rows a backup's cursor fetches at a time

Connection = psycopg.Connection[Any]


class PostgresStore(SqlStore[Connection]):
    dialect = POSTGRES
    kind = "postgresql"

    def __init__(
        self,
        url: str,
        password: str | None = None,
        *,
        pool_size: int = 8,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__()
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
        # Until when webhooks skip the store after it failed: while the database is away each
        # would otherwise wait on the event loop for a connection.
        self._hooks_down_until = 0.0
        # A failure because the connection was lost ends when the database answers again.
        self._failure_was_connection = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._hooks_pool.close()
        self._pool.close()

    def schema_version(self) -> int:
        with self._reading() as conn:
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

    # -- connections -----------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
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
    def _tx(self, ws: str | None = None, clears_failure: bool = False) -> Iterator[Connection]:
        """One write transaction (see SqlStore._tx); with a workspace, under that workspace's
        advisory lock, as SQLite's writers wait for each other."""
        with self._reading() as conn:
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

    def _lease_tx(self) -> AbstractContextManager[Connection]:
        return self._tx()

    @contextmanager
    def snapshot(self) -> Iterator[Callable[[str], Iterator[Sequence[Any]]]]:
        """One REPEATABLE READ, READ ONLY transaction (see SqlStore.snapshot): every statement
        sees the store as of its first, and no writer waits on it. Each statement reads through
        a server-side cursor, SNAPSHOT_FETCH rows at a time."""
        names = itertools.count(1)
        with self._reading() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

            def rows(sql: str) -> Iterator[Sequence[Any]]:
                with conn.cursor(name=f"syncd_snapshot_{next(names)}") as cur:
                    cur.itersize = SNAPSHOT_FETCH
                    cur.execute(sql)
                    yield from cur

            yield rows

    @contextmanager
    def _hooks(self) -> Iterator[Connection]:
        """A dedupe connection, quickly or not at all (StoreError): the caller falls back."""
        if time.monotonic() < self._hooks_down_until:
            raise StoreError(f"store {self.where}: the database did not answer just now")
        try:
            with self._hooks_pool.connection(timeout=HOOKS_WAIT) as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as e:
            self._hooks_down_until = time.monotonic() + HOOKS_BACKOFF
            raise StoreError(f"store {self.where}: {self._clean(e)}") from e

    # -- what differs from SqlStore --------------------------------------------------------

    def _take(self, db: Connection, ws: str, holder: str, ttl: float, force: bool) -> Lease | None:
        # The lease row is locked while its holder applies: a take waits a moment, then counts
        # the lease as held (a holder frozen inside its apply is ended by the server's
        # idle-in-transaction timeout, see postgres_connect).
        db.execute(f"SET LOCAL lock_timeout = '{TAKE_LOCK_WAIT}'")
        try:
            with db.transaction():
                return leases.take(db, self.dialect.leases, ws, holder, ttl, force)
        except psycopg.errors.LockNotAvailable:
            return None

    def _check_base(self, db: Connection, ws: str, base: ApplyBase) -> None:
        # Through this module's name, looked up at each apply: a test stops an apply here,
        # inside its transaction, as a writer frozen mid-apply (test_lease_takeovers_pg).
        check_base(db, ws, base)
