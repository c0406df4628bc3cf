"""The store's seam: what the engine, the scheduler and the API need of any store.

The embedded default is `SqliteStore`; a PostgreSQL store fills the same protocol. A plan is
applied in one transaction together with its run record: a crash at any moment leaves either
the old state or the new one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.core.errors import SyncdError
from syncd.core.model import (
    CheckOutcome,
    HealthRecord,
    LiveStep,
    Plan,
    Run,
    Step,
    StepContent,
    SyncState,
)

# How long a webhook delivery id is remembered: providers redeliver within hours, not days.
DELIVERY_TTL = 24 * 3600.0
# Expired deliveries are pruned at most this often, so that the common insert stays one statement.
DELIVERY_PRUNE_EVERY = 3600.0


class StoreError(SyncdError):
    """The store cannot be opened, read or written (locked past the busy timeout, disk full,
    file gone), or is from a newer syncd. The message names the store's path. Transient for
    a sync: the scheduler's loop retries the run."""


class ApplyConflict(StoreError):
    """The workspace moved on since the plan was read (another process applied, or a step
    of the plan was edited outside git): nothing was written; resolve, read and plan again."""


class Fenced(StoreError):
    """This writer no longer holds the workspace (its lease expired or was taken over by
    another writer, or another writer already recorded this run): nothing was written, and
    this writer must not try again with what it has."""


# How long a writer's hold on a workspace lasts unless renewed; writers renew every third of it.
LEASE_TTL = 15.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A writer's hold on a workspace. `fence` rises at every take (a fencing token): a write
    commits only while the store's lease row still carries this holder and this fence and has
    not expired, so a writer that was cut off, frozen or overtaken cannot commit late."""

    workspace: str
    holder: str
    fence: int


@dataclass(frozen=True, slots=True)
class ApplyBase:
    """What a plan was read from: the applied revision, and the live version of each step the
    plan covers (None: no live step by that name). An apply writes only when the store still
    holds exactly this, and changes only these steps."""

    revision: str | None
    versions: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexUpdate:
    """How the record of git's files (as of the last applied commit) changes with an apply."""

    replace_all: bool = False
    upserts: tuple[Step, ...] = ()
    removes: tuple[str, ...] = ()  # file paths


class Store(Protocol):
    """`remember_delivery` records a webhook delivery id and says whether it is new (False for
    one seen within `ttl`); `forget_delivery` undoes it for a delivery that was refused, so that
    its redelivery is taken."""

    def close(self) -> None: ...
    def state(self, ws: str) -> SyncState: ...
    def save_state(self, state: SyncState) -> None: ...
    # `suspended` is written by this alone: saving a state leaves it as it is. These three
    # changes a person makes take their audit entry (`audit`) into the same transaction.
    def set_suspended(self, ws: str, suspended: bool, audit: AuditEntry | None = None) -> None: ...
    def health(self, ws: str) -> HealthRecord | None: ...
    # The batch reads of many workspaces (a page of the list, the start, the status line):
    # `states` has every id asked (the default state for one never saved), `healths` and
    # `last_successes` only those with a record or a success, `runs_by_id` the runs recorded;
    # each reads in a bounded number of statements, never one per workspace.
    def states(self, ids: Collection[str]) -> dict[str, SyncState]: ...
    def healths(self, ids: Collection[str]) -> dict[str, HealthRecord]: ...
    def last_successes(self, ids: Collection[str]) -> dict[str, float]: ...
    def runs_by_id(self, run_ids: Collection[str]) -> dict[str, Run]: ...
    def save_health(self, record: HealthRecord) -> None: ...
    def live_steps(self, ws: str, names: Collection[str] | None = None) -> dict[str, LiveStep]: ...
    def live_count(self, ws: str) -> int: ...
    def drifted_names(self, ws: str) -> set[str]: ...
    def put_outside(
        self, ws: str, name: str, content: StepContent, audit: AuditEntry | None = None
    ) -> LiveStep: ...
    # False (and no entry stored) when there was no such step.
    def delete_outside(self, ws: str, name: str, audit: AuditEntry | None = None) -> bool: ...
    def index_files(self, ws: str, paths: Collection[str] | None = None) -> dict[str, Step]: ...
    def index_by_name(self, ws: str, names: Collection[str]) -> dict[str, list[Step]]: ...
    def index_count(self, ws: str) -> int: ...
    # A writer's hold on a workspace (see Lease): None when another holder's lease is live,
    # unless `force` (the caller has proof that holder is gone). `renew_leases` returns the
    # leases that were lost.
    def take_lease(
        self, ws: str, holder: str, ttl: float = LEASE_TTL, force: bool = False
    ) -> Lease | None: ...
    def renew_leases(self, leases: Collection[Lease], ttl: float = LEASE_TTL) -> list[Lease]: ...
    def release_lease(self, lease: Lease) -> None: ...
    # Who holds the workspace's lease now (released or expired: None).
    def lease_holder(self, ws: str) -> str | None: ...
    # With a lease, Fenced (writing nothing) unless the lease still holds; a run id is
    # recorded once (Fenced for a second record of it).
    def apply(
        self,
        plan: Plan,
        index: IndexUpdate,
        run: Run,
        state: SyncState,
        base: ApplyBase,
        lease: Lease | None = None,
    ) -> SyncState: ...
    def record_run(self, run: Run, state: SyncState, lease: Lease | None = None) -> None: ...
    # A recorded run found failed after it ended (a check after its apply): result, error and
    # finished_at change; the state's failed_revision becomes its revision.
    def fail_run(self, ws: str, run_id: str, error: str, finished_at: float) -> None: ...
    # The checks run after a recorded run's apply (they end after the run is recorded).
    def set_run_checks(self, ws: str, run_id: str, checks: tuple[CheckOutcome, ...]) -> None: ...
    def runs(self, ws: str, limit: int = 50) -> list[Run]: ...
    def run(self, run_id: str) -> Run | None: ...
    def last_success_at(self, ws: str) -> float | None: ...
    def runs_finished_since(self, since: float, until: float, limit: int = 10_000) -> list[Run]: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    # Why the store cannot take writes now (its file is gone, the last write failed), or None.
    def problem(self) -> str | None: ...
    def remember_delivery(
        self, provider: str, delivery: str, now: float, ttl: float = DELIVERY_TTL
    ) -> bool: ...
    def forget_delivery(self, provider: str, delivery: str) -> None: ...
    # The audit: an entry appended (its id is the store's), and entries newest first.
    def record_audit(self, entry: AuditEntry) -> None: ...
    def audit_entries(self, query: AuditQuery) -> list[AuditEntry]: ...
    # History pruning, one short transaction per call deleting at most `limit` rows, oldest
    # first; each returns how many went (fewer than `limit`: nothing left to go). A run goes
    # when it is older than the workspace's `keep_runs`-th newest or started before
    # `older_than` (None: that rule is off), unless it is the newest succeeded run, the newest
    # applied one or the state's last run (see syncd.store.history).
    def prune_runs(
        self, ws: str, keep_runs: int | None, older_than: float | None, limit: int
    ) -> int: ...
    def prune_audit(self, older_than: float, limit: int) -> int: ...
