"""Recording sync requests in PostgreSQL: the `sync_requests` rows a replica writes when it is
asked for a sync, on a connection of its own.

A request answered 202 is a row, committed before the answer. Submitters of one workspace
serialize on a transaction-level advisory lock; under it the waiting rows are read, the merge
rule (`syncd.runs.merge.merge`, the one statement of it) places the new request, and its
answer is written back: the joined row's trigger, head and due time, or a new row.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from syncd.core import retry
from syncd.core.model import Trigger
from syncd.runs.merge import FULL, MAX_QUEUED_PER_WORKSPACE, Join, Terms, merge
from syncd.runs.replicas.coordinator import Submitted
from syncd.store import StoreError

# Advisory lock namespace (int4), apart from the store's write lock and the holders'; "syRQ".
SUBMIT_NAMESPACE = 0x73795251
SUBMIT_TIMEOUT_MS = 2000  # a request's insert: refused (503, retry) past this, not queued
SUBMIT_CONNECT_TIMEOUT = 2  # seconds: a request is answered on the event loop
NOW = "extract(epoch from clock_timestamp())"  # the database's clock: one clock for all hosts


def no_jitter() -> float:
    """The `rng` for `retry.REPLICA_RECONNECT`: its delay taken whole."""
    return 1.0


class RequestWriter:
    """One replica's writes of requests: a blocking connection of its own, called on the
    event loop's store threads; while the database is away it fails fast."""

    def __init__(self, conninfo: str, where: str, clean: Callable[[BaseException], str]) -> None:
        self.where = where
        self._conninfo = conninfo
        self._clean = clean
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.Lock()
        self._down_until = 0.0

    def submit(
        self,
        ws: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        run_id: str,
        delay: float = 0.0,
        max_waiting: int = MAX_QUEUED_PER_WORKSPACE,
        actor: str | None = None,
    ) -> Submitted | None:
        """Record a request, or join the one of the same kind waiting: committed on return.

        Called on the event loop: while the database is away it fails fast (StoreError, a 503
        for the caller) instead of holding every other request up."""
        with self._mutex:
            if time.monotonic() < self._down_until:
                raise StoreError(f"store {self.where}: the database did not answer just now")
            try:
                conn = self._connection()
                with conn.transaction():
                    new = Terms(trigger, revision, dry_run, head, actor)
                    return write_request(conn, ws, new, run_id, delay, max_waiting)
            except psycopg.Error as e:
                self._drop_connection()
                # Refused at once for a moment: the caller hears 503 and tries again later.
                pause = retry.REPLICA_RECONNECT.delay(1, no_jitter)
                self._down_until = time.monotonic() + pause
                raise StoreError(f"store {self.where}: {self._clean(e)}") from e

    def close(self) -> None:
        with self._mutex:
            self._drop_connection()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=SUBMIT_CONNECT_TIMEOUT
            )
            conn.execute(f"SET statement_timeout = {SUBMIT_TIMEOUT_MS}")
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


def write_request(
    conn: psycopg.Connection[Any],
    ws: str,
    new: Terms,
    run_id: str,
    delay: float,
    max_waiting: int,
) -> Submitted | None:
    """Place a request among the workspace's waiting rows by the merge rule, in the caller's
    transaction; None when the workspace has `max_waiting` waiting (`FULL`)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (SUBMIT_NAMESPACE, ws))
    # The waiting (unclaimed) requests, oldest first: a claimed one is in flight. Locked until
    # this transaction ends: a replica's claim of one of them waits for the join and takes the
    # row as joined, where it could otherwise claim it between this read and the UPDATE below
    # and run it without the join (a manual request joined to a webhook's run that only plans).
    rows = conn.execute(
        "SELECT id, run_id, trigger, revision, dry_run, head, actor FROM sync_requests"
        " WHERE workspace = %s AND claimed_by IS NULL ORDER BY id FOR UPDATE",
        (ws,),
    ).fetchall()
    waiting = [Terms(Trigger(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows]
    placed = merge(waiting, new, max_waiting)
    if placed == FULL:
        return None
    if isinstance(placed, Join):
        row = rows[placed.index]
        # Due at the earlier of the two times (the merge rule).
        conn.execute(
            "UPDATE sync_requests SET trigger = %s, head = %s, actor = %s,"
            f" not_before = LEAST(not_before, {NOW} + %s) WHERE id = %s",
            (placed.terms.trigger.value, placed.terms.head, placed.terms.actor, delay, row[0]),
        )
        return Submitted(str(row[1]), True)
    conn.execute(
        "INSERT INTO sync_requests (workspace, trigger, revision, dry_run, head, run_id,"
        f" actor, requested_at, not_before) VALUES (%s, %s, %s, %s, %s, %s, %s, {NOW},"
        f" {NOW} + %s)",
        (ws, new.trigger.value, new.revision, new.dry_run, new.head, run_id, new.actor, delay),
    )
    conn.execute("SELECT pg_notify('syncd_requests', %s)", (ws,))
    return Submitted(run_id, False)
