"""Pruning the run history and the audit, one small batch per call: the rule once, for both SQL
stores, whose SQL differs in its parameter mark, in what orders runs recorded at the same
instant (SQLite's rowid, PostgreSQL's seq) and in PostgreSQL skipping rows another pruner holds.

A batch is one short write transaction deleting at most `limit` rows, oldest first, through
indexes (`runs_workspace`, `audit_at`; `runs_result` finds the runs that always stay without
reading every run of a workspace that has failed for long): the caller (syncd.service.prune)
pauses between batches, so a sync's write waits at most one batch, never a whole pruning.

Which runs go: those older than the workspace's `keep_runs`-th newest run, and those that
started before `older_than`; never the newest succeeded run, the newest applied one (succeeded,
not a dry run: the applied revision's `signed_by` and the rollback list read it), nor the run
the workspace's state names as its last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.core.model import RunResult
from syncd.store.leases import Connection

# A tiebreak below any rowid or seq (both start at 1): "started before older_than" as a
# boundary of the same (started_at, tiebreak) shape as "older than the keep_runs-th run".
_BEFORE_ANY = -1


@dataclass(frozen=True, slots=True)
class HistorySql:
    """The statements, for one store's parameter mark and tiebreak column."""

    last_run: str  # (ws): last_run_id of the workspace's state
    newest_succeeded: str  # (ws, result): id of the newest succeeded run
    newest_applied: str  # (ws, result): id of the newest succeeded run that was no dry run
    nth_newest: str  # (ws, offset): started_at, tiebreak of the run `offset` places back
    delete_runs: str  # (ws, started, started, tiebreak, keep x3, limit): rowcount
    delete_audit: str  # (at before, limit): rowcount


def history_sql(mark: str, tiebreak: str, postgres: bool = False) -> HistorySql:
    """`tiebreak`: the column that orders runs started at the same instant as recorded.
    PostgreSQL's batch is a list of ids looked up by the primary key (`IN (subquery)` would be
    planned as a scan of the whole table), skipping rows another pruner (a replica) holds
    rather than waiting on its batch."""
    m = mark
    newest = f"FROM runs WHERE workspace = {m} AND result = {m}"
    order = f"ORDER BY started_at DESC, {tiebreak} DESC LIMIT 1"
    key = "id" if postgres else "rowid"
    skip_locked = " FOR UPDATE SKIP LOCKED" if postgres else ""

    def batch(table: str, subquery: str) -> str:
        where = f"{key} = ANY(ARRAY({subquery}))" if postgres else f"{key} IN ({subquery})"
        return f"DELETE FROM {table} WHERE {where}"

    return HistorySql(
        last_run=f"SELECT last_run_id FROM workspaces WHERE id = {m}",
        newest_succeeded=f"SELECT id {newest} {order}",
        newest_applied=f"SELECT id {newest} AND NOT dry_run {order}",
        nth_newest=(
            f"SELECT started_at, {tiebreak} FROM runs WHERE workspace = {m}"
            f" ORDER BY started_at DESC, {tiebreak} DESC LIMIT 1 OFFSET {m}"
        ),
        # A range on (workspace, started_at) of the workspace's index, oldest first.
        delete_runs=batch(
            "runs",
            f"SELECT {key} FROM runs WHERE workspace = {m}"
            f" AND started_at <= {m} AND (started_at < {m} OR {tiebreak} < {m})"
            f" AND id NOT IN ({m}, {m}, {m}) ORDER BY started_at, {tiebreak}"
            f" LIMIT {m}{skip_locked}",
        ),
        delete_audit=batch(
            "audit", f"SELECT id FROM audit WHERE at < {m} ORDER BY at LIMIT {m}{skip_locked}"
        ),
    )


def _one(db: Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    row = db.execute(sql, params).fetchone()
    return None if row is None else tuple(row)


def kept_runs(db: Connection, sql: HistorySql, ws: str) -> tuple[str, str, str]:
    """The ids no pruning deletes ('' where there is none): the state's last run, the newest
    succeeded run and the newest applied run."""
    found: list[str] = []
    for statement, params in (
        (sql.last_run, (ws,)),
        (sql.newest_succeeded, (ws, RunResult.SUCCEEDED.value)),
        (sql.newest_applied, (ws, RunResult.SUCCEEDED.value)),
    ):
        row = _one(db, statement, params)
        found.append(str(row[0]) if row is not None and row[0] is not None else "")
    return found[0], found[1], found[2]


def prune_runs(
    db: Connection,
    sql: HistorySql,
    ws: str,
    keep_runs: int | None,
    older_than: float | None,
    limit: int,
) -> int:
    """One batch: delete at most `limit` of the workspace's runs that the rule lets go, oldest
    first; return how many went (fewer than `limit`: none are left to go)."""
    if limit < 1 or (keep_runs is None and older_than is None):
        return 0
    if keep_runs is not None and keep_runs < 1:
        raise ValueError(f"keep_runs must be at least 1, got {keep_runs}")
    # The boundary: runs strictly before it in (started_at, tiebreak) order go.
    boundary: tuple[float, int] | None = None
    if older_than is not None:
        boundary = (older_than, _BEFORE_ANY)
    if keep_runs is not None:
        row = _one(db, sql.nth_newest, (ws, keep_runs - 1))
        if row is not None:
            cut = (float(row[0]), int(row[1]))
            boundary = cut if boundary is None else max(boundary, cut)
    if boundary is None:
        return 0
    keep = kept_runs(db, sql, ws)
    started, tiebreak = boundary
    params = (ws, started, started, tiebreak, *keep, limit)
    return int(db.execute(sql.delete_runs, params).rowcount)


def prune_audit(db: Connection, sql: HistorySql, older_than: float, limit: int) -> int:
    """One batch: delete at most `limit` audit entries from before `older_than`, oldest
    first; return how many went."""
    if limit < 1:
        return 0
    return int(db.execute(sql.delete_audit, (older_than, limit)).rowcount)
