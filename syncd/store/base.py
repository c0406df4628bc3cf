"""The SQL stores' shared half: every `Store` method, written once over a dialect's statements
(`syncd.store.dialect`) and the ways into the database that each store provides (a connection
to read with, a write transaction, a lease's transaction, the webhook deliveries' connection).

`SqliteStore` and `PostgresStore` differ only in those and in their SQL. A plan is applied in
one transaction together with its run record: a crash at any moment leaves either the old state
or the new one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic

from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.core.model import (
    CheckOutcome,
    HealthRecord,
    LiveStep,
    Plan,
    Run,
    RunResult,
    Step,
    StepContent,
    SyncState,
)
from syncd.store import audit, history, leases, writes
from syncd.store.dialect import C, Dialect, Statements
from syncd.store.protocol import (
    DELIVERY_PRUNE_EVERY,
    DELIVERY_TTL,
    LEASE_TTL,
    ApplyBase,
    IndexUpdate,
    Lease,
)
from syncd.store.rows import (
    checks_text,
    health_from_row,
    health_params,
    index_step_from_row,
    live_step_from_row,
    run_from_row,
    state_from_row,
)


class SqlStore(ABC, Generic[C]):
    """`Store` over a SQL database; a subclass says how to reach it (see the abstract methods)
    and in which dialect."""

    dialect: Dialect[C]
    kind: str  # sqlite | postgresql: what a backup says it was made from

    def __init__(self) -> None:
        # Why the last write failed (disk full, I/O error), until a write that clears it
        # succeeds: /readyz (see `problem`).
        self._write_failure: str | None = None
        # When expired webhook deliveries were last pruned.
        self._pruned_at = 0.0

    @property
    def sql(self) -> Statements:
        return self.dialect.sql

    # -- what each store provides ----------------------------------------------------------

    @abstractmethod
    def _reading(self) -> AbstractContextManager[C]:
        """A connection to read with, each statement on its own; the driver's errors become
        StoreError naming the store."""

    @abstractmethod
    def _tx(self, ws: str | None = None, clears_failure: bool = False) -> AbstractContextManager[C]:
        """One write transaction: committed on success, rolled back on any exception. With a
        workspace, writers of that workspace wait for each other. A failed write is remembered
        for `problem` until a write that `clears_failure` (an apply) succeeds: a run's record or
        a health record is small, and may fit where an apply does not."""

    @abstractmethod
    def _lease_tx(self) -> AbstractContextManager[C]:
        """The write transaction of a lease's take, renewal or release."""

    @abstractmethod
    def _hooks(self) -> AbstractContextManager[C]:
        """The webhook deliveries' connection: apart from the syncs' (the intake must never wait
        on a long apply), with a cheaper commit (a lost dedupe record costs one redundant run)."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[Callable[[str], Iterator[Sequence[Any]]]]:
        """One consistent read of the whole store, for a backup (syncd.store.backup): a
        function that streams a query's rows (a few at a time, never all at once), every query
        seeing the store as of one instant while writers go on."""

    @abstractmethod
    def schema_version(self) -> int: ...

    def restoring(self) -> AbstractContextManager[C]:
        """The one write transaction a backup is restored in."""
        return self._tx()

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def problem(self) -> str | None:
        """Why the store cannot take writes now, or None."""

    # -- many workspaces at once (a page of the list, the start, the status line) ------------
    # A few statements per thousand ids (SQLite binds them in chunks, PostgreSQL one array),
    # never one per workspace.

    def states(self, ids: Collection[str]) -> dict[str, SyncState]:
        """Each workspace's state as `state` reads it (the default for one never saved)."""
        found = {ws: SyncState(ws) for ws in ids}
        with self._reading() as db:
            for row in self.dialect.select_in(db, self.sql.states_in, (), list(found)):
                found[row[0]] = state_from_row(row[0], row[1:])
        return found

    def healths(self, ids: Collection[str]) -> dict[str, HealthRecord]:
        """The health records of those of `ids` that have one, as `health` reads them."""
        found: dict[str, HealthRecord] = {}
        with self._reading() as db:
            for row in self.dialect.select_in(db, self.sql.healths_in, (), list(set(ids))):
                record = health_from_row(row[0], row[1:])
                if record is not None:
                    found[row[0]] = record
        return found

    def runs_by_id(self, run_ids: Collection[str]) -> dict[str, Run]:
        """The runs of those of `run_ids` that are recorded, by id."""
        with self._reading() as db:
            rows = self.dialect.select_in(db, self.sql.runs_in, (), list(set(run_ids)))
            return {run.id: run for run in map(run_from_row, rows)}

    def last_successes(self, ids: Collection[str]) -> dict[str, float]:
        """`last_success_at` of those of `ids` that ever succeeded."""
        succeeded = (RunResult.SUCCEEDED.value,)
        with self._reading() as db:
            rows = self.dialect.select_in(db, self.sql.last_success_in, succeeded, list(set(ids)))
            return {row[0]: float(row[1]) for row in rows if row[1] is not None}

    # -- sync state ------------------------------------------------------------------------

    def state(self, ws: str) -> SyncState:
        with self._reading() as db:
            row = db.execute(self.sql.state, (ws,)).fetchone()
        return state_from_row(ws, row)

    def save_state(self, state: SyncState) -> None:
        with self._tx(state.workspace) as db:
            writes.upsert_state(self.dialect, db, state)

    def set_suspended(self, ws: str, suspended: bool, audit: AuditEntry | None = None) -> None:
        with self._tx(ws) as db:
            db.execute(self.sql.set_suspended, (ws, suspended, time.time()))
            self._audited(db, audit)

    # -- health ----------------------------------------------------------------------------

    def health(self, ws: str) -> HealthRecord | None:
        with self._reading() as db:
            row = db.execute(self.sql.health, (ws,)).fetchone()
        return health_from_row(ws, row)

    def save_health(self, record: HealthRecord) -> None:
        with self._tx() as db:
            db.execute(self.sql.save_health, health_params(record))

    # -- live steps ------------------------------------------------------------------------

    def live_steps(self, ws: str, names: Collection[str] | None = None) -> dict[str, LiveStep]:
        with self._reading() as db:
            if names is None:
                rows = db.execute(self.sql.live_steps, (ws,)).fetchall()
            else:
                rows = self.dialect.select_in(db, self.sql.live_steps_in, (ws,), list(names))
            return {r[1]: live_step_from_row(r) for r in rows}

    def live_count(self, ws: str) -> int:
        with self._reading() as db:
            row = db.execute(self.sql.live_count, (ws,)).fetchone()
        return int(row[0])

    def drifted_names(self, ws: str) -> set[str]:
        # Tombstones count: a step deleted outside git has drifted too.
        with self._reading() as db:
            rows = db.execute(self.sql.drifted_names, (ws,)).fetchall()
        return {str(r[0]) for r in rows}

    def put_outside(
        self, ws: str, name: str, content: StepContent, audit: AuditEntry | None = None
    ) -> LiveStep:
        """An edit made outside git (as the workspace UI makes): kept until the next apply."""
        with self._tx(ws) as db:
            step = writes.put_outside(self.dialect, db, ws, name, content, time.time())
            self._audited(db, audit)
            return step

    def delete_outside(self, ws: str, name: str, audit: AuditEntry | None = None) -> bool:
        with self._tx(ws) as db:
            deleted = writes.delete_outside(self.dialect, db, ws, name, time.time())
            if deleted:
                self._audited(db, audit)
            return deleted

    # -- git's files as of the last applied commit -----------------------------------------

    def index_files(self, ws: str, paths: Collection[str] | None = None) -> dict[str, Step]:
        with self._reading() as db:
            if paths is None:
                rows = db.execute(self.sql.index_files, (ws,)).fetchall()
            else:
                rows = self.dialect.select_in(db, self.sql.index_files_in, (ws,), list(paths))
            return {r[0]: index_step_from_row(r) for r in rows}

    def index_by_name(self, ws: str, names: Collection[str]) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = {}
        with self._reading() as db:
            for r in self.dialect.select_in(db, self.sql.index_by_name_in, (ws,), list(names)):
                out.setdefault(r[1], []).append(index_step_from_row(r))
        return out

    def index_count(self, ws: str) -> int:
        with self._reading() as db:
            row = db.execute(self.sql.index_count, (ws,)).fetchone()
        return int(row[0])

    # -- writers' leases (see syncd.store.leases) ------------------------------------------

    def take_lease(
        self, ws: str, holder: str, ttl: float = LEASE_TTL, force: bool = False
    ) -> Lease | None:
        with self._lease_tx() as db:
            return self._take(db, ws, holder, ttl, force)

    def _take(self, db: C, ws: str, holder: str, ttl: float, force: bool) -> Lease | None:
        return leases.take(db, self.dialect.leases, ws, holder, ttl, force)

    def renew_leases(self, held: Collection[Lease], ttl: float = LEASE_TTL) -> list[Lease]:
        with self._lease_tx() as db:
            return leases.renew(db, self.dialect.leases, held, ttl)

    def lease_holder(self, ws: str) -> str | None:
        with self._reading() as db:
            return leases.holder(db, self.dialect.leases, ws)

    def release_lease(self, lease: Lease) -> None:
        with self._lease_tx() as db:
            leases.release(db, self.dialect.leases, lease)

    # -- applying and recording ------------------------------------------------------------

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

        Fenced, writing nothing, unless the lease (when given) still holds and the run is new.
        Optimistic: ApplyConflict, writing nothing, unless the store still holds the base the
        plan was read from (checked in the write transaction, so no writer slips in between).
        Only the steps of the base change; a step edited outside git that the plan did not
        cover keeps its mark, and the workspace stays OutOfSync for it. Returns the state
        saved."""
        ws, now = state.workspace, time.time()
        with self._tx(ws, clears_failure=True) as db:
            leases.check_write(db, self.dialect.leases, lease, run.id, ws)
            self._check_base(db, ws, base)
            return writes.write_plan(self.dialect, db, plan, index, run, state, base, now)

    def _check_base(self, db: C, ws: str, base: ApplyBase) -> None:
        writes.check_base(self.dialect, db, ws, base)

    def record_run(self, run: Run, state: SyncState, lease: Lease | None = None) -> None:
        with self._tx(state.workspace) as db:
            leases.check_write(db, self.dialect.leases, lease, run.id, state.workspace)
            writes.insert_run(self.dialect, db, run)
            writes.upsert_state(self.dialect, db, state)

    def fail_run(self, ws: str, run_id: str, error: str, finished_at: float) -> None:
        """A recorded run found failed after it ended (a check after its apply): its result,
        error and end change, and its revision becomes the workspace's failed one."""
        with self._tx(ws) as db:
            params = (RunResult.FAILED.value, error, finished_at, run_id, ws)
            db.execute(self.sql.fail_run, params)
            db.execute(self.sql.fail_state, (run_id, time.time(), ws))

    def set_run_checks(self, ws: str, run_id: str, checks: tuple[CheckOutcome, ...]) -> None:
        with self._tx() as db:
            db.execute(self.sql.set_run_checks, (checks_text(checks), run_id, ws))

    def runs(self, ws: str, limit: int = 50) -> list[Run]:
        with self._reading() as db:
            rows = db.execute(self.sql.runs, (ws, limit)).fetchall()
        return [run_from_row(r) for r in rows]

    def run(self, run_id: str) -> Run | None:
        with self._reading() as db:
            row = db.execute(self.sql.run, (run_id,)).fetchone()
        return run_from_row(row) if row else None

    def last_success_at(self, ws: str) -> float | None:
        """When the workspace's last succeeded run finished; None before the first."""
        with self._reading() as db:
            row = db.execute(self.sql.last_success_at, (ws, RunResult.SUCCEEDED.value)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def runs_finished_since(self, since: float, until: float, limit: int = 10_000) -> list[Run]:
        """Runs of every workspace that finished in (since, until], oldest first."""
        with self._reading() as db:
            rows = db.execute(self.sql.runs_finished, (since, until, limit)).fetchall()
        return [run_from_row(r) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._reading() as db:
            row = db.execute(self.sql.get_meta, (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(self.sql.set_meta, (key, value))

    # -- the audit (see syncd.store.audit) ----------------------------------------------------

    def record_audit(self, entry: AuditEntry) -> None:
        with self._tx() as db:
            audit.record(db, self.dialect.audit, entry)

    def _audited(self, db: Any, entry: AuditEntry | None) -> None:
        """A change's audit entry, in the change's transaction: both are stored, or neither."""
        if entry is not None:
            audit.record(db, self.dialect.audit, entry)

    def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        with self._reading() as db:
            return audit.entries(db, self.dialect.audit, query)

    # -- history pruning (see syncd.store.history) -----------------------------------------

    def prune_runs(
        self, ws: str, keep_runs: int | None, older_than: float | None, limit: int
    ) -> int:
        # Not under the workspace's write lock: deleting old runs never conflicts with a
        # sync's writes, which only add the newest.
        with self._tx() as db:
            return history.prune_runs(db, self.dialect.history, ws, keep_runs, older_than, limit)

    def prune_audit(self, older_than: float, limit: int) -> int:
        with self._tx() as db:
            return history.prune_audit(db, self.dialect.history, older_than, limit)

    # -- webhook deliveries ----------------------------------------------------------------

    def remember_delivery(
        self, provider: str, delivery: str, now: float, ttl: float = DELIVERY_TTL
    ) -> bool:
        """Record a delivery; False when it was already taken within `ttl` (one statement)."""
        with self._hooks() as db:
            if now - self._pruned_at >= DELIVERY_PRUNE_EVERY:
                db.execute(self.sql.prune_deliveries, (now - ttl,))
                self._pruned_at = now
            cur = db.execute(self.sql.remember_delivery, (provider, delivery, now, now - ttl))
            return int(cur.rowcount) > 0

    def forget_delivery(self, provider: str, delivery: str) -> None:
        with self._hooks() as db:
            db.execute(self.sql.forget_delivery, (provider, delivery))
