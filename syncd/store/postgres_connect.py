"""Connecting `PostgresStore` to its database: the pools, the messages (which name the host and
the database, never the password) and running the migrations at open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from syncd.store.postgres_schema import VERSION_TABLE
from syncd.store.protocol import StoreError

# Advisory lock keys: one (bigint) for migrations, one namespace (int4) for per-workspace writes.
# Any value does, as long as it is syncd's own; these spell "syncd".
MIGRATION_LOCK = 0x73796E6364
WRITE_LOCK_NAMESPACE = 0x73796E63
POOL_WAIT = 30.0  # seconds a call waits for a free connection (all busy, or reconnecting)
PROBE_WAIT = 2.0  # seconds `problem` waits: /readyz must answer quickly
HOOKS_WAIT = 1.0  # seconds a webhook waits for a dedupe connection: it is answered on the loop
HOOKS_BACKOFF = 2.0  # after a failure, webhooks skip the store (memory dedupe) this long


def describe(url: str) -> str:
    """host:port/database of a PostgreSQL URL, for messages: no user, no password, no query."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return "(unreadable URL)"
    return f"{parts.hostname or 'localhost'}:{port}/{parts.path.lstrip('/') or '?'}"


def clean_error(error: BaseException, password: str | None) -> str:
    """The server's or libpq's message on one line, without the password."""
    text = " ".join(str(error).split())
    if password:
        text = text.replace(password, "***")
    return text or type(error).__name__


def migrate(
    conninfo: str, where: str, migrations: Sequence[str], clean: Callable[[BaseException], str]
) -> int:
    """Bring the schema up to date; return the version found. Under an advisory lock, so
    that replicas or a `syncd migrate` started at the same time migrate once. Connects
    directly, not through a pool: the pool retries in the background and would only say
    "timed out"; this gives the server's reason (refused, no such database, bad password)."""
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL store {where}: {clean(e)}") from e
    try:
        with conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(VERSION_TABLE)
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            found = int(row[0]) if row else 0
            if found > len(migrations):
                raise StoreError(
                    f"store {where} has schema version {found}; this syncd knows up "
                    f"to {len(migrations)}: upgrade syncd"
                )
            for number, script in enumerate(migrations[found:], start=found + 1):
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
        raise StoreError(f"cannot migrate PostgreSQL store {where}: {clean(e)}") from e
    return found


def open_pool(
    conninfo: str, where: str, pool_size: int, connect_timeout: float
) -> ConnectionPool[psycopg.Connection[Any]]:
    """The store's pool of autocommit connections, open and filled to its minimum."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        conninfo,
        min_size=min(2, pool_size),
        max_size=pool_size,
        kwargs={"autocommit": True},
        configure=_bounded_sessions,
        open=False,
        name="syncd-store",
    )
    try:
        pool.open(wait=True, timeout=connect_timeout * 2)
    except PoolTimeout as e:
        pool.close()
        raise StoreError(f"cannot connect to PostgreSQL store {where}: timed out") from e
    return pool


# A writer frozen (SIGSTOP) or cut off inside a transaction must not hold its locks (the lease
# row an apply locks, the workspace's write lock) for ever: the server ends a session idle in
# a transaction past this, or one whose client stopped answering its keepalives. Above any
# pause an apply makes between two statements, below what a takeover may wait.
IDLE_IN_TRANSACTION = "20s"
SESSION_BOUNDS = (
    f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'",
    "SET tcp_keepalives_idle = 3",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
)


def _bounded_sessions(conn: psycopg.Connection[Any]) -> None:
    for statement in SESSION_BOUNDS:
        conn.execute(statement)


def open_hooks_pool(conninfo: str) -> ConnectionPool[psycopg.Connection[Any]]:
    """Webhook deliveries' small pool, with asynchronous commit: the intake answers from the
    event loop, and a fsync per webhook would cost milliseconds for a record whose loss (a
    server crash within a fraction of a second) means one redundant, coalesced run at worst.
    The daemon's own crash loses nothing. Opens in the background."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=2,
        kwargs={"autocommit": True},
        configure=_asynchronous_commit,
        open=False,
        name="syncd-deliveries",
    )
    pool.open(wait=False)
    return pool


def _asynchronous_commit(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET synchronous_commit TO off")


def connection_lost(error: BaseException) -> bool:
    """Whether a write failed because the connection to the database failed (the server is
    away, restarting, or was cut off), not because the database refused it (a full disk, a
    constraint): SQLSTATE class 08 (connection exception) or 57P (shutdown), or none at all
    (libpq's own connection errors carry no SQLSTATE)."""
    if not isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = getattr(error, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))
