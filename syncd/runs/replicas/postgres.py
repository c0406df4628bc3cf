"""Replicas on one PostgreSQL database: requests in a table, workspaces held by advisory locks.

Nothing here is syncd's own coordination protocol; each guarantee is PostgreSQL's:
- A request answered 202 is a row of `sync_requests`, committed before the answer. Submitters
  of one workspace serialize on a transaction-level advisory lock, so coalescing (one run in
  flight, one queued per kind: the merge rule, `syncd.runs.merge`) holds whichever replica
  took each request (`syncd.runs.replicas.pg_requests`).
- A replica runs a workspace's requests only while it holds the workspace's session-level
  advisory lock on its own "lock" connection, or while the replica that holds that lock has
  stopped its heartbeat (frozen: its session lives on, and so does its lock). The lock goes
  with the session: a replica killed (SIGKILL) frees its workspaces at once, one cut off from
  the database when the server's TCP keepalive gives up (about ten seconds, set per session
  below). Its claimed row stays; the next holder runs it again unless its run was already
  recorded. Who may *write* a workspace is decided apart from this, by the store's leases
  and their fences (`syncd.store.leases`): holding here only says who serves the requests.
- A remote is polled by the replica that moves its `polls` row's due time, one per cycle.
- NOTIFY on `syncd_requests` wakes the other replicas for a new request, on `syncd_done` tells
  them a run finished (for a caller waiting on a run another replica served).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import psycopg

from syncd.core import retry
from syncd.core.model import Trigger
from syncd.ops.logs import fields
from syncd.runs.merge import MAX_QUEUED_PER_WORKSPACE
from syncd.runs.replicas.coordinator import Claimed, ReplicaInfo, Submitted, new_replica_id
from syncd.runs.replicas.pg_requests import NOW, RequestWriter, no_jitter
from syncd.store import StoreError

log = logging.getLogger("syncd.replicas")

# Advisory lock namespace (int4), apart from the store's write lock and the submitters'
# (`pg_requests`); it spells "syRW".
HOLD_NAMESPACE = 0x73795257
HEARTBEAT_EVERY = 2.0  # seconds between a replica's heartbeats (and lock connection checks)
ALIVE_WITHIN = 3 * HEARTBEAT_EVERY  # a replica not seen for this long is shown as gone
FORGET_AFTER = 3600.0  # gone replicas' rows are pruned after this long
# Server-side, per session: how soon the server notices a replica cut off and frees its locks.
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 3",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 9000",
)


class PostgresCoordinator:
    shared = True

    def __init__(
        self, conninfo: str, where: str, clean: Callable[[BaseException], str] = str
    ) -> None:
        self.replica_id = new_replica_id()
        self.where = where
        self._conninfo = conninfo
        self._clean = clean
        self.started_at = time.time()
        self._held: set[str] = set()
        # Held without the session lock, from a replica that stopped its heartbeat.
        self._unlocked: set[str] = set()
        self._lock_conn: psycopg.AsyncConnection[Any] | None = None
        self._lock_mutex = asyncio.Lock()
        self._requests = RequestWriter(conninfo, where, clean)
        self._tasks: list[asyncio.Task[None]] = []
        self._lost: str | None = None
        # Replicas alive at the last heartbeat (this one counts itself until it knows).
        self._alive = 1
        self._wake: Callable[[], None] = lambda: None
        self._finished: Callable[[str], None] = lambda run_id: None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, wake: Callable[[], None], finished: Callable[[str], None]) -> None:
        self._wake, self._finished = wake, finished
        with contextlib.suppress(StoreError):  # the heartbeat reconnects
            await self._beat()
        self._tasks = [
            asyncio.create_task(self._listen(), name="replica listen"),
            asyncio.create_task(self._heartbeat(), name="replica heartbeat"),
        ]
        log.info("replica started", extra=fields(replica=self.replica_id, store=self.where))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(StoreError):
            await self._query(
                f"UPDATE replicas SET last_seen = {NOW} - %s WHERE id = %s",
                (ALIVE_WITHIN + 1, self.replica_id),
            )
        async with self._lock_mutex:
            if self._lock_conn is not None:
                # Unlock before closing: the server ends a closed session's backend (and so frees
                # its locks) a moment after the close returns, and the other replicas should find
                # the workspaces free as soon as this one says it has stopped.
                with contextlib.suppress(Exception):
                    await self._lock_conn.execute("SELECT pg_advisory_unlock_all()")
                self._held.clear()
                with contextlib.suppress(Exception):
                    await self._lock_conn.close()
                self._lock_conn = None
        self._requests.close()

    def problem(self) -> str | None:
        return self._lost

    def held(self) -> list[str]:
        return sorted(self._held)

    def alive(self) -> int:
        return self._alive

    # -- requests ----------------------------------------------------------------------------

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
        """Record a request, or join the one of the same kind waiting: committed on return
        (`syncd.runs.replicas.pg_requests`)."""
        return self._requests.submit(
            ws, trigger, revision, dry_run, head, run_id, delay, max_waiting, actor
        )

    async def pending(self) -> list[str]:
        rows = await self._query(
            "SELECT workspace FROM sync_requests WHERE not_before <= "
            + NOW
            + " GROUP BY workspace ORDER BY min(id) LIMIT 1000"
        )
        return [str(r[0]) for r in rows]

    async def acquire(self, ws: str) -> bool:
        """Hold the workspace: by its session lock, or, when a frozen replica keeps that
        lock (its session alive, its heartbeat stopped), by the heartbeats alone. A frozen
        holder's writes then fail on the workspace's lease (see syncd.store.leases), and it
        stops serving the workspace when it wakes."""
        rows = await self._query(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (HOLD_NAMESPACE, ws)
        )
        if rows and rows[0][0]:
            self._held.add(ws)
            return True
        # The replicas that say they hold it, or have claimed one of its requests (a holder
        # frozen right after its claim has not said so in a heartbeat yet): all gone?
        rows = await self._query(
            "SELECT bool_or(last_seen > " + NOW + " - %s), bool_or(true) FROM replicas"
            " WHERE id <> %s AND (holds::jsonb ? %s OR id IN (SELECT claimed_by FROM"
            " sync_requests WHERE workspace = %s AND claimed_by IS NOT NULL))",
            (ALIVE_WITHIN, self.replica_id, ws, ws),
        )
        if rows and rows[0][1] and not rows[0][0]:
            log.warning(
                "workspace taken from a replica that stopped its heartbeat",
                extra=fields(workspace=ws, replica=self.replica_id),
            )
            self._held.add(ws)
            self._unlocked.add(ws)
            return True
        return False

    async def release(self, ws: str) -> None:
        self._held.discard(ws)
        if ws in self._unlocked:  # held without the session lock: nothing to unlock
            self._unlocked.discard(ws)
            return
        with contextlib.suppress(StoreError):  # a lost session has freed it already
            await self._query("SELECT pg_advisory_unlock(%s, hashtext(%s))", (HOLD_NAMESPACE, ws))

    async def claim(self, ws: str) -> Claimed | None:
        # Holding the workspace proves whoever claimed a row before has gone: take it over.
        rows = await self._query(
            "WITH next AS (SELECT id, claimed_by FROM sync_requests WHERE workspace = %s"
            f" AND not_before <= {NOW} ORDER BY id LIMIT 1 FOR UPDATE)"
            f" UPDATE sync_requests r SET claimed_by = %s, claimed_at = {NOW} FROM next"
            " WHERE r.id = next.id RETURNING r.id, r.trigger, r.revision, r.dry_run, r.head,"
            " r.run_id, next.claimed_by, r.actor",
            (ws, self.replica_id),
        )
        if not rows:
            return None
        r = rows[0]
        # Claimed before by another replica (one of this replica's own, claimed again after
        # its run ended unrecorded, is no takeover: its lease went with that run).
        taken_over = r[6] is not None and r[6] != self.replica_id
        return Claimed(
            int(r[0]), ws, Trigger(r[1]), r[2], bool(r[3]), r[4], str(r[5]), taken_over, r[7]
        )

    async def finish(self, claimed: Claimed) -> None:
        await self._query(
            "WITH gone AS (DELETE FROM sync_requests WHERE id = %s RETURNING run_id)"
            " SELECT pg_notify('syncd_done', %s)",
            (claimed.id, claimed.run_id),
        )

    async def poll_turn(self, remote: str, interval: float) -> bool:
        # Due a little before the interval, so that the replica that polled last keeps its
        # turn despite jitter, and another takes it over one cycle after it stops.
        rows = await self._query(
            "INSERT INTO polls AS p (remote, due_at, polled_by, polled_at)"
            f" VALUES (%s, {NOW} + %s, %s, {NOW}) ON CONFLICT (remote) DO UPDATE SET"
            " due_at = excluded.due_at, polled_by = excluded.polled_by,"
            f" polled_at = excluded.polled_at WHERE p.due_at <= {NOW} RETURNING remote",
            (remote, interval * 0.8, self.replica_id),
        )
        return bool(rows)

    # -- replicas ----------------------------------------------------------------------------

    async def replicas(self) -> list[ReplicaInfo]:
        rows = await self._query(
            f"SELECT id, host, pid, started_at, last_seen, holds, {NOW} FROM replicas"
            " ORDER BY started_at, id"
        )
        out = []
        for r in rows:
            holds = tuple(json.loads(r[5]))
            this = r[0] == self.replica_id
            if this:
                holds = tuple(self.held())
            alive = float(r[6]) - float(r[4]) <= ALIVE_WITHIN
            out.append(
                ReplicaInfo(
                    str(r[0]), str(r[1]), int(r[2]), float(r[3]), float(r[4]), alive, holds, this
                )
            )
        return out

    async def _beat(self) -> None:
        """Say this replica lives, then count the replicas that do (this one included)."""
        await self._query(
            "INSERT INTO replicas (id, host, pid, started_at, last_seen, holds)"
            f" VALUES (%s, %s, %s, %s, {NOW}, %s) ON CONFLICT (id) DO UPDATE SET"
            " last_seen = excluded.last_seen, holds = excluded.holds",
            (
                self.replica_id,
                socket.gethostname(),
                os.getpid(),
                self.started_at,
                json.dumps(self.held()),
            ),
        )
        rows = await self._query(
            f"SELECT count(*) FROM replicas WHERE last_seen > {NOW} - %s", (ALIVE_WITHIN,)
        )
        self._alive = int(rows[0][0]) if rows else 1

    async def _heartbeat(self) -> None:
        pruned = 0.0
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                await self._beat()
                if time.monotonic() - pruned > 60:
                    pruned = time.monotonic()
                    await self._query(
                        f"DELETE FROM replicas WHERE last_seen < {NOW} - %s", (FORGET_AFTER,)
                    )
            except StoreError as e:
                # Its own heartbeat is not fresh either: it knows of no replica alive.
                self._alive = 0
                log.warning(
                    "replica heartbeat failed", extra=fields(replica=self.replica_id, error=str(e))
                )

    async def _listen(self) -> None:
        """Wake the scheduler on NOTIFY; reconnect while the database is away."""
        failures = 0  # in a row; the policy is flat today, its delay counts them regardless
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.Error as e:
                log.debug("listen connect failed", extra=fields(error=self._clean(e)))
                failures += 1
                await asyncio.sleep(retry.REPLICA_RECONNECT.delay(failures, no_jitter))
                continue
            try:
                async with conn:
                    for statement in SESSION_SETTINGS:
                        await conn.execute(statement)
                    await conn.execute("LISTEN syncd_requests")
                    await conn.execute("LISTEN syncd_done")
                    failures = 0
                    self._wake()  # requests made while this replica was not listening
                    async for note in conn.notifies():
                        if note.channel == "syncd_done":
                            self._finished(note.payload)
                        else:
                            self._wake()
            except psycopg.Error as e:
                log.warning("listen connection lost", extra=fields(error=self._clean(e)))
                failures += 1
                await asyncio.sleep(retry.REPLICA_RECONNECT.delay(failures, no_jitter))

    # -- the lock connection -----------------------------------------------------------------

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on this replica's session (the one holding its workspaces)."""
        async with self._lock_mutex:
            conn = await self._lock_connection()
            try:
                cur = await conn.execute(sql.encode("utf-8"), params)
                return list(await cur.fetchall()) if cur.description else []
            except psycopg.Error as e:
                if conn.broken or conn.closed:
                    self._lose(conn, e)
                raise StoreError(f"store {self.where}: {self._clean(e)}") from e

    async def _lock_connection(self) -> psycopg.AsyncConnection[Any]:
        if self._lock_conn is not None and not self._lock_conn.closed:
            return self._lock_conn
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            for statement in SESSION_SETTINGS:
                await conn.execute(statement)
        except psycopg.Error as e:
            self._lost = f"replica {self.replica_id}: no database connection: {self._clean(e)}"
            raise StoreError(f"store {self.where}: {self._clean(e)}") from e
        self._lock_conn = conn
        if self._lost is not None:
            log.info("replica reconnected", extra=fields(replica=self.replica_id))
        self._lost = None
        # A new session holds nothing: take back what runs here still, where no one else has.
        for ws in sorted(self._held - self._unlocked):
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (HOLD_NAMESPACE, ws)
            )
            row = await cur.fetchone()
            if not (row and row[0]):
                log.warning("workspace taken over while disconnected", extra=fields(workspace=ws))
        return conn

    def _lose(self, conn: psycopg.AsyncConnection[Any], error: BaseException) -> None:
        self._lost = f"replica {self.replica_id}: database connection lost: {self._clean(error)}"
        log.warning(
            "replica lost its database connection",
            extra=fields(replica=self.replica_id, error=self._clean(error)),
        )
        if self._lock_conn is conn:
            self._lock_conn = None
