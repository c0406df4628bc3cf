"""Writers' leases on workspaces, and the fence check every write of a sync makes: the rule once,
for both stores, whose SQL differs only in its parameter mark and its clock.

A writer (the daemon's engine, a replica's, the CLI's in local mode) takes a workspace's lease
before it resolves the commit to sync to, renews it while it works, and releases it at the end.
Every take raises the workspace's fence by one. An apply or a run record commits only while the
lease row still names that holder and that fence: a writer whose lease was taken over (after
it expired: the writer froze or was cut off from the database; or by force, from a writer
known to be gone) or released cannot commit anything late, whatever it planned. Expiry itself
is no reason to refuse a write: a lease nobody took since still says no other writer wrote
(a take would have raised the fence), and one slow renewal (a long apply elsewhere holding the
renewer up) must not fail a run that nobody overtook. The row stays after a release, so the
fence never goes back.

Times are the database's clock (one clock for every replica's host); SQLite's is the host's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from syncd.store.protocol import Fenced, Lease


@dataclass(frozen=True, slots=True)
class LeaseSql:
    """The statements, for one store's parameter mark and clock expression."""

    take: str  # (ws, holder, ttl, force): RETURNING fence, or no row when held by another
    renew: str  # (ttl, ws, holder, fence): rowcount 0 when lost
    release: str  # (ws, holder, fence)
    check: str  # (ws,): holder, fence (the lease row, locked where the store can)
    run_exists: str  # (run id,)
    holder: str  # (ws,): the holder of a lease not released and not expired


def lease_sql(mark: str, now: str, lock_row: str = "") -> LeaseSql:
    m = mark
    return LeaseSql(
        take=(
            "INSERT INTO leases AS l (workspace, holder, fence, expires_at)"
            f" VALUES ({m}, {m}, 1, {now} + {m}) ON CONFLICT (workspace) DO UPDATE SET"
            " holder = excluded.holder, fence = l.fence + 1, expires_at = excluded.expires_at"
            f" WHERE {m} OR l.holder = '' OR l.holder = excluded.holder"
            f" OR l.expires_at <= {now} RETURNING fence"
        ),
        renew=(
            f"UPDATE leases SET expires_at = {now} + {m}"
            f" WHERE workspace = {m} AND holder = {m} AND fence = {m}"
        ),
        release=(
            "UPDATE leases SET holder = '', expires_at = 0"
            f" WHERE workspace = {m} AND holder = {m} AND fence = {m}"
        ),
        check=f"SELECT holder, fence FROM leases WHERE workspace = {m}{lock_row}",
        run_exists=f"SELECT 1 FROM runs WHERE id = {m}",
        holder=(
            f"SELECT holder FROM leases WHERE workspace = {m} AND holder <> ''"
            f" AND expires_at > {now}"
        ),
    )


def take_params(ws: str, holder: str, ttl: float, force: bool) -> tuple[Any, ...]:
    if not holder:
        raise ValueError("a lease needs a holder")
    return (ws, holder, ttl, force)


def check_lease(lease: Lease, row: Sequence[Any] | None) -> None:
    """Fenced unless the lease row (holder, fence) is still `lease`'s."""
    if row is None or (str(row[0]), int(row[1])) != (lease.holder, lease.fence):
        now = f"held by {row[0]} (fence {row[1]})" if row and row[0] else "released"
        raise Fenced(
            f"workspace {lease.workspace}: this writer ({lease.holder}, fence {lease.fence})"
            f" no longer holds it; it is {now}: nothing was written"
        )


def check_new_run(run_id: str, ws: str, exists: bool) -> None:
    """Fenced when the run was recorded already: by another writer that took it over."""
    if exists:
        raise Fenced(
            f"workspace {ws}: run {run_id} was recorded by another writer: nothing was written"
        )


class _Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...


class Connection(Protocol):
    """What these functions need of a connection: sqlite3's and psycopg's both fit."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...


def take(
    db: Connection, sql: LeaseSql, ws: str, holder: str, ttl: float, force: bool
) -> Lease | None:
    row = db.execute(sql.take, take_params(ws, holder, ttl, force)).fetchone()
    return None if row is None else Lease(ws, holder, int(row[0]))


def renew(db: Connection, sql: LeaseSql, leases: Collection[Lease], ttl: float) -> list[Lease]:
    lost = []
    for lease in leases:
        cur: _Cursor = db.execute(sql.renew, (ttl, lease.workspace, lease.holder, lease.fence))
        if cur.rowcount == 0:
            lost.append(lease)
    return lost


def holder(db: Connection, sql: LeaseSql, ws: str) -> str | None:
    row = db.execute(sql.holder, (ws,)).fetchone()
    return None if row is None else str(row[0])


def release(db: Connection, sql: LeaseSql, lease: Lease) -> None:
    db.execute(sql.release, (lease.workspace, lease.holder, lease.fence))


def check_write(db: Connection, sql: LeaseSql, lease: Lease | None, run_id: str, ws: str) -> None:
    """Inside a write transaction, before anything is written: Fenced unless `lease` (when
    given) still holds, and unless the run is new."""
    if lease is not None:
        check_lease(lease, db.execute(sql.check, (lease.workspace,)).fetchone())
    check_new_run(run_id, ws, db.execute(sql.run_exists, (run_id,)).fetchone() is not None)
