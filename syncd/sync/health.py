"""Workspace health beside sync status: Healthy, Degraded or Suspended, since when, and why.

A workspace is Degraded when its source cannot be read (auth, TLS, DNS, 5xx, timeout) or its
last run failed; Suspended when automation applies nothing by itself (a person suspended it, or
a sync pinned an automatic workspace to a revision); Healthy otherwise. Degraded wins over
Suspended: a failure is what someone must act on.

The `after_*` functions are pure: they fold one observation into a workspace's record.
`HealthKeeper` keeps the records in the store (so `since` and the failure count survive a
restart) and tells metrics. A source that stops answering is recorded as a failed run once,
when it starts failing (the scheduler asks `source_failed`), so that it reaches the e-mail
digest; later failed reads only count. When it answers again the scheduler requests a sync,
whose run ends the failure (and writes the digest's recovery note).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

from syncd.config import WorkspaceConfig
from syncd.core.errors import is_local_failure
from syncd.core.model import (
    Health,
    HealthRecord,
    Plan,
    Run,
    RunResult,
    SyncState,
    automation_suspended,
)
from syncd.ops.logs import fields
from syncd.store import Store

log = logging.getLogger("syncd.health")


def _settle(
    previous: HealthRecord,
    health: Health,
    now: float,
    error: str | None,
    failures: int,
    source_failing: bool,
) -> HealthRecord:
    """The new record: `since` moves only when the health changes."""
    since = previous.since if health is previous.health and previous.since else now
    return HealthRecord(previous.workspace, health, since, error, failures, source_failing)


def after_run(previous: HealthRecord, run: Run, suspended: bool, now: float) -> HealthRecord:
    """A run finished. A failed one degrades; any other ends the failure streak."""
    if run.result is RunResult.FAILED:
        # A transient failure (no commit to blame) is the source's: network, auth, 5xx; unless
        # this host failed (a read-only or full state directory), which is no news of the source.
        source_failing = run.revision is None and not is_local_failure(run.error)
        return _settle(
            previous, Health.DEGRADED, now, run.error, previous.failures + 1, source_failing
        )
    health = Health.SUSPENDED if suspended else Health.HEALTHY
    return _settle(previous, health, now, None, 0, False)


def after_source_failure(previous: HealthRecord, error: str, now: float) -> HealthRecord:
    """A read of the source failed again (the first failure is a recorded run, `after_run`)."""
    return _settle(previous, Health.DEGRADED, now, error, previous.failures + 1, True)


def after_distrust(previous: HealthRecord, error: str, now: float) -> HealthRecord:
    """The applied commit is no longer trusted (a key was taken out of a `verify` key file and
    the config reloaded): Degraded, though nothing ran. It is not rolled back by itself; the
    next run that applies a trusted commit ends it."""
    return _settle(previous, Health.DEGRADED, now, error, previous.failures + 1, False)


def after_suspension(previous: HealthRecord, suspended: bool, now: float) -> HealthRecord:
    """Automation was suspended or resumed: a Degraded workspace stays Degraded."""
    if previous.health is Health.DEGRADED:
        return previous
    health = Health.SUSPENDED if suspended else Health.HEALTHY
    return _settle(
        previous, health, now, previous.error, previous.failures, previous.source_failing
    )


def derived(ws: WorkspaceConfig, state: SyncState, last: Run | None) -> HealthRecord:
    """The health of a workspace never assessed (a store from before health was kept)."""
    record = HealthRecord(ws.id)
    if last is not None and last.result is RunResult.FAILED:
        return replace(
            record, health=Health.DEGRADED, since=last.finished_at, error=last.error, failures=1
        )
    if automation_suspended(ws.mode, state):
        return replace(record, health=Health.SUSPENDED)
    return record


def told(
    ws: WorkspaceConfig,
    state: SyncState,
    record: HealthRecord | None,
    last_run: Callable[[], Run | None],
) -> HealthRecord:
    """The health a workspace has now, from its stored record (read one by one or in a batch):
    the record's, unless a reload changed the mode since it was written; a workspace never
    assessed is derived from its last run, which only then is read (`last_run`)."""
    if record is None:
        return derived(ws, state, last_run())
    if record.health is not Health.DEGRADED:
        wanted = Health.SUSPENDED if automation_suspended(ws.mode, state) else Health.HEALTHY
        if wanted is not record.health:
            return replace(record, health=wanted)
    return record


def told_knowing(
    ws: WorkspaceConfig, state: SyncState, record: HealthRecord | None, last: Run | None
) -> HealthRecord:
    """`told`, with the workspace's last run already read."""
    return told(ws, state, record, lambda: last)


def told_by(
    store: Store, ws: WorkspaceConfig, state: SyncState, record: HealthRecord | None
) -> HealthRecord:
    """`told`, with the last run read from `store` when it is needed."""
    last_id = state.last_run_id
    return told(ws, state, record, lambda: store.run(last_id) if last_id else None)


class HealthKeeper:
    """Keeps every workspace's health record in the store; a `SyncObserver` of the engine."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str, Health], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_change = on_change
        # Runs finish on worker threads and polls on the event loop: one update at a time.
        self._lock = threading.Lock()

    def current(self, ws: WorkspaceConfig, state: SyncState, last: Run | None) -> HealthRecord:
        return told_knowing(ws, state, self.store.health(ws.id), last)

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None:
        if run.dry_run:
            return  # a rehearsal says nothing of the workspace
        suspended = automation_suspended(ws.mode, state)
        self._update(ws.id, lambda old: after_run(old, run, suspended, self.clock()))

    def source_failed(self, ws_id: str, error: str) -> bool:
        """A read of the source failed. True when it is the first of a streak: the caller then
        records it as a failed run (whose end, `run_finished`, degrades the workspace)."""
        with self._lock:
            old = self.store.health(ws_id)
            if old is None or not old.source_failing:
                return True
            self._save(after_source_failure(old, error, self.clock()), old)
            return False

    def failing_sources(self, ids: Collection[str]) -> set[str]:
        """Those of `ids` whose source is failing (`source_failing`, read in one batch)."""
        return {ws for ws, record in self.store.healths(ids).items() if record.source_failing}

    def distrusted(self, ws_id: str, error: str) -> HealthRecord:
        """The workspace's applied commit failed its signature check again."""
        return self._update(ws_id, lambda old: after_distrust(old, error, self.clock()))

    def suspension_changed(self, ws_id: str, suspended: bool) -> HealthRecord:
        return self._update(ws_id, lambda old: after_suspension(old, suspended, self.clock()))

    def publish(
        self, workspaces: Sequence[WorkspaceConfig], states: Mapping[str, SyncState]
    ) -> None:
        """Tell metrics the health as stored (at start and after a reload), the records read
        for all `workspaces` at once."""
        if self.on_change is None:
            return
        # Under the lock `_update` takes: a run's health change waits, and so comes after
        # (a reload's publish never sets a workspace's health back to what it read before).
        with self._lock:
            records = self.store.healths([ws.id for ws in workspaces])
            for ws in workspaces:
                self.on_change(ws.id, self.told(ws, states[ws.id], records.get(ws.id)).health)

    def told(
        self, ws: WorkspaceConfig, state: SyncState, record: HealthRecord | None
    ) -> HealthRecord:
        """`told` with the last run read from this keeper's store, when it is needed."""
        return told_by(self.store, ws, state, record)

    def _update(self, ws_id: str, change: Callable[[HealthRecord], HealthRecord]) -> HealthRecord:
        with self._lock:
            old = self.store.health(ws_id) or HealthRecord(ws_id)
            new = change(old)
            self._save(new, old)
            return new

    def _save(self, new: HealthRecord, old: HealthRecord) -> None:
        if new != old:
            self.store.save_health(new)
        if new.health is not old.health:
            log.log(
                logging.WARNING if new.health is Health.DEGRADED else logging.INFO,
                "health changed",
                extra=fields(
                    workspace=new.workspace,
                    health=str(new.health),
                    was=str(old.health),
                    failures=new.failures,
                    error=new.error,
                ),
            )
        if self.on_change is not None:
            self.on_change(new.workspace, new.health)
