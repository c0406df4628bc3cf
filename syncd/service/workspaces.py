"""Reading and steering workspaces: views, diff, runs, steps, edits, syncs, export, health.

Blocking (the store and git are synchronous): the API calls these through a worker thread;
only `request_sync` and `note_edit` touch the scheduler and must run on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncd.config import Config, WorkspaceConfig
from syncd.core.audit_model import AuditEntry
from syncd.core.errors import NotFound, SyncdError, is_local_failure
from syncd.core.model import (
    Health,
    LiveStep,
    Run,
    RunResult,
    Status,
    StepContent,
    SyncState,
    Trigger,
    automation_suspended,
)
from syncd.core.times import rfc3339_or_none
from syncd.git import GitSource
from syncd.git.signatures import Unverified
from syncd.ops.logs import fields
from syncd.report.reporter import ReportFailure
from syncd.runs.scheduler import Scheduler, Ticket
from syncd.service.paging import Ordered
from syncd.service.views import workspace_view
from syncd.store import Store
from syncd.sync.engine import Engine, Outcome, Progress, Reading
from syncd.sync.export import ExportRequest, ExportResult, export_workspace
from syncd.sync.health import HealthKeeper, told_knowing
from syncd.sync.previewing import Preview

log = logging.getLogger("syncd.workspaces")

# Runs looked back through for the one that applied the applied revision (its `signed_by`),
# when the last run is another one (a failed or planned run since).
SIGNER_LOOKBACK = 50


class WebhookActivity(Protocol):
    """What the webhook intake has seen, for health: by provider, and by (provider, secret)."""

    @property
    def webhook_last_seen(self) -> Mapping[str, float]: ...

    @property
    def secret_last_seen(self) -> Mapping[tuple[str, int], float]: ...


@dataclass
class NoActivity:
    """The activity of a process that takes no webhooks (the CLI)."""

    webhook_last_seen: dict[str, float] = field(default_factory=dict)
    secret_last_seen: dict[tuple[str, int], float] = field(default_factory=dict)


class ReportFailures(Protocol):
    """The last failed report to the git host of each workspace (the daemon's reporter)."""

    def last_failure(self, ws_id: str) -> ReportFailure | None: ...


class NoReports:
    """The reports of a process that sends none (the CLI)."""

    def last_failure(self, ws_id: str) -> ReportFailure | None:
        return None


class Workspaces:
    def __init__(
        self,
        config: Callable[[], Config],
        store: Store,
        git: GitSource,
        engine: Engine,
        scheduler: Scheduler | None = None,
        activity: WebhookActivity | None = None,
        health: HealthKeeper | None = None,
    ) -> None:
        self._config = config
        self.store = store
        self.git = git
        self.engine = engine
        self.keeper = health or HealthKeeper(store)
        self.scheduler = scheduler
        self.activity: WebhookActivity = activity or NoActivity()
        self.reports: ReportFailures = NoReports()
        self.ordered = Ordered()  # the workspaces by id, for pages of the list

    @property
    def config(self) -> Config:
        return self._config()

    # -- finding -------------------------------------------------------------------------------

    def get(self, ws_id: str) -> WorkspaceConfig:
        """A workspace by its id (the API's key)."""
        return self.config.workspace(ws_id)

    def find(self, key: str) -> WorkspaceConfig:
        """A workspace by id or name (what a person types), naming the known ones if absent."""
        config = self.config
        for ws in config.workspaces:
            if key in (ws.id, ws.name):
                return ws
        known = ", ".join(f"{w.id} ({w.name})" for w in config.workspaces) or "none"
        raise NotFound(f"no workspace {key!r} in {config.path}; known: {known}")

    def tagged(self, tag: str | None) -> list[WorkspaceConfig]:
        return [ws for ws in self.config.workspaces if tag is None or tag in ws.tags]

    # -- reading -------------------------------------------------------------------------------

    def state(self, ws: WorkspaceConfig) -> tuple[SyncState, Run | None]:
        """A workspace's state and its last run: what every view starts from."""
        state = self.store.state(ws.id)
        last = self.store.run(state.last_run_id) if state.last_run_id else None
        return state, last

    def view(self, ws: WorkspaceConfig) -> dict[str, Any]:
        return self.views([ws])[0]

    def signed_by(self, ws: WorkspaceConfig, state: SyncState, last: Run | None) -> str | None:
        """Whose verified signature the applied revision carries: the `signed_by` of the run
        that applied it (None when no `verify` checked it)."""
        applied = state.last_applied_revision
        if applied is None:
            return None
        if last is not None and _applied(last, applied):
            return last.signed_by
        if ws.verify is None:
            return None  # a workspace that verifies nothing need not look further back
        for run in self.store.runs(ws.id, SIGNER_LOOKBACK):
            if _applied(run, applied):
                return run.signed_by
        return None

    def views(self, workspaces: list[WorkspaceConfig]) -> list[dict[str, Any]]:
        """Each workspace's view, from states, last runs and health records read in batches
        (a few statements for a page of the list, or for all of 10,000)."""
        ids = [ws.id for ws in workspaces]
        states, records = self.store.states(ids), self.store.healths(ids)
        runs = self.store.runs_by_id([s.last_run_id for s in states.values() if s.last_run_id])
        out = []
        for ws in workspaces:
            state = states[ws.id]
            last = runs.get(state.last_run_id) if state.last_run_id else None
            health = told_knowing(ws, state, records.get(ws.id), last)
            blocked = self.engine.gate.view(ws, state)  # a closed window or promotion, now
            signed_by = self.signed_by(ws, state, last)
            out.append(workspace_view(ws, state, last, health, signed_by, blocked))
        return out

    def overview(self, ws: WorkspaceConfig) -> dict[str, Any]:
        """The view plus how many steps are changed outside git: a row of the console."""
        return self.overviews([ws])[0]

    def overviews(self, workspaces: list[WorkspaceConfig]) -> list[dict[str, Any]]:
        return [
            {**view, "changed_outside": len(self.store.drifted_names(ws.id))}
            for ws, view in zip(workspaces, self.views(workspaces), strict=True)
        ]

    def applied_revisions(self, ws: WorkspaceConfig, limit: int = 200) -> list[Run]:
        """Each revision a run applied, newest first, once: what a rollback can pin."""
        seen: set[str] = set()
        found: list[Run] = []
        for run in self.store.runs(ws.id, limit):
            applied = run.result is RunResult.SUCCEEDED and not run.dry_run
            if applied and run.revision and run.revision not in seen:
                seen.add(run.revision)
                found.append(run)
        return found

    def badge(self, ws_id: str) -> tuple[str, str]:
        """A workspace's sync status and health, for its badge; a workspace without
        `badge: true` is not found, so a badge tells nothing of unlisted workspaces."""
        for ws in self.config.workspaces:
            if ws.id == ws_id and ws.badge:
                state, last = self.state(ws)
                return str(state.status), str(self.keeper.current(ws, state, last).health)
        raise NotFound(f"no badge for workspace {ws_id[:100]!r}")

    def preview(self, ws: WorkspaceConfig) -> Reading:
        """The plan now (a workspace's diff against its branch head), recording nothing."""
        return self.engine.preview(ws)

    def preview_revision(self, ws: WorkspaceConfig, revision: str) -> Preview:
        """What a commit (the branch's, or a pull request head syncd fetched) would do to the
        workspace now: its plan, or why it would not apply. Records nothing."""
        return self.engine.preview_commit(ws, revision)

    def runs(self, ws: WorkspaceConfig, limit: int = 50) -> list[Run]:
        return self.store.runs(ws.id, limit)

    def run(self, run_id: str) -> Run:
        found = self.store.run(run_id)
        if found is None or found.workspace not in {w.id for w in self.config.workspaces}:
            raise NotFound(f"no run {run_id[:100]!r}")
        return found

    def steps(self, ws: WorkspaceConfig) -> list[LiveStep]:
        return list(self.store.live_steps(ws.id).values())

    def step(self, ws: WorkspaceConfig, name: str) -> LiveStep:
        live = self.store.live_steps(ws.id, [name])
        if name not in live:
            raise NotFound(f"no step {name!r} in workspace {ws.id}")
        return live[name]

    def status_line(self) -> str:
        """One line for systemd's status: how many workspaces, out of sync, by health (read
        for all workspaces at once: it is sent before READY and every few seconds after)."""
        workspaces = self.config.workspaces
        ids = [ws.id for ws in workspaces]
        states, records = self.store.states(ids), self.store.healths(ids)
        out = degraded = suspended = 0
        for ws in workspaces:
            state = states[ws.id]
            out += state.status is Status.OUT_OF_SYNC
            health = self.keeper.told(ws, state, records.get(ws.id)).health
            degraded += health is Health.DEGRADED
            suspended += health is Health.SUSPENDED
        return (
            f"{len(workspaces)} workspaces, {out} OutOfSync, {degraded} Degraded, "
            f"{suspended} Suspended"
        )

    def health(self, ws: WorkspaceConfig) -> dict[str, Any]:
        state, last = self.state(ws)
        live = self.store.live_steps(ws.id)
        hooks = self.config.webhooks
        seen = self.activity
        provider_seen = {p: rfc3339_or_none(seen.webhook_last_seen.get(p)) for p in hooks}
        # Each configured secret, named by where it comes from (never its value), and whether a
        # delivery ever used it: an unused one after a rotation can be removed.
        unused = [
            f"{provider}: {secret.source}"
            for provider, hook in hooks.items()
            for index, secret in enumerate(hook.secrets + hook.signing_secrets)
            if (provider, index) not in seen.secret_last_seen
        ]
        record = self.keeper.current(ws, state, last)
        failure = self.reports.last_failure(ws.id)
        local = record.health is Health.DEGRADED and is_local_failure(record.error)
        return {
            "workspace": ws.id,
            "health": record.to_dict(),
            "suspended": automation_suspended(ws.mode, state),
            "pinned_revision": state.pinned_revision,
            # A local failure (this host's state directory or disk) says nothing of the source.
            "source_reachable": None if last is None or local else not record.source_failing,
            "local_failure": local,
            "last_error": last.error if last and last.error else None,
            "webhook_last_seen": provider_seen,
            "webhooks_unused": unused,
            "invalid_steps": sorted(n for n, s in live.items() if not s.content.valid),
            "disabled_steps": sorted(n for n, s in live.items() if not s.content.enabled),
            "changed_outside_git": sorted(self.store.drifted_names(ws.id)),
            # The last report to the git host that failed (a status, a pull request's plan),
            # until one succeeds; reports never change the workspace's health.
            "report_error": failure.to_dict() if failure else None,
        }

    # -- steering ------------------------------------------------------------------------------

    async def request_sync(
        self,
        ws: WorkspaceConfig,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        actor: str | None = None,
    ) -> Ticket:
        """Queue a sync on the daemon's scheduler (on the event loop); `actor` is who asked."""
        if self.scheduler is None:
            raise RuntimeError("request_sync needs the daemon's scheduler")
        return await self.scheduler.request(
            ws.id, trigger, revision=revision, dry_run=dry_run, actor=actor
        )

    def check_revision(self, ws: WorkspaceConfig, revision: str) -> str:
        """The full sha of a pinned revision, fetched; RevisionNotOnBranch when it is not on
        the workspace's branch, and with `verify` Unverified when its signature is not trusted
        (refused before anything is queued)."""
        commit = self.engine.resolve(ws, revision)
        self.engine.verify(ws, commit)
        return commit

    def check_head(self, ws: WorkspaceConfig) -> None:
        """A manual sync to the branch head of a `verify` workspace: Unverified when the head
        is not trusted now (refused before anything is queued). A remote that cannot be read
        is left to the run, which records it as any run does."""
        if ws.verify is None:
            return
        try:
            commit = self.engine.resolve(ws)
        except SyncdError:
            return
        try:
            self.engine.verify(ws, commit)
        except Unverified:
            raise
        except SyncdError:
            return

    def recheck_signatures(self) -> list[str]:
        """After a config reload: each `verify` workspace's applied commit checked again
        against its key files as they are now. One no longer trusted turns Degraded, with the
        reason; it is not rolled back by itself. Returns the ids of those."""
        distrusted = []
        for ws in self.config.workspaces:
            if ws.verify is None:
                continue
            try:
                applied = self.store.state(ws.id).last_applied_revision
                if applied is None:
                    continue
                try:
                    self.engine.verify(ws, applied)
                except Unverified as e:
                    why = f"{e} (applied commit {applied[:12]}, at reload)"
                    self.keeper.distrusted(ws.id, why)
                    distrusted.append(ws.id)
            except SyncdError as e:  # the mirror lacks it (a new state dir), or the store
                # failed: the reload goes on, and the next run checks its commit anyway
                log.warning(
                    "applied commit not checked", extra=fields(workspace=ws.id, error=str(e))
                )
        return distrusted

    def sync_now(
        self,
        ws: WorkspaceConfig,
        revision: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        actor: str | None = None,
        trigger: Trigger = Trigger.MANUAL,
    ) -> Outcome:
        """Sync in this process, without a daemon (the CLI's `sync`)."""
        return self.engine.sync(
            ws, trigger, revision=revision, dry_run=dry_run, progress=progress, actor=actor
        )

    def suspend(self, ws: WorkspaceConfig, audit: AuditEntry | None = None) -> dict[str, Any]:
        """Suspend automation (blocking): polls, webhooks and self-heal apply nothing by
        themselves until `resume`; a manual sync still applies. Kept across restarts. `audit`:
        the action's entry, stored in the same transaction. The workspace's view after."""
        self.mark_suspended(ws, audit)
        return self.suspended_view(ws)

    def mark_suspended(self, ws: WorkspaceConfig, audit: AuditEntry | None = None) -> None:
        """`suspend`'s one write (with its entry), apart from what follows it."""
        self.store.set_suspended(ws.id, True, audit)

    def suspended_view(self, ws: WorkspaceConfig) -> dict[str, Any]:
        """After `suspend`: health told, and the workspace as it now is."""
        self.keeper.suspension_changed(ws.id, True)
        return self.view(ws)

    def resume(self, ws: WorkspaceConfig) -> None:
        """Resume automation (blocking; then `request_sync` or `sync_now` to the branch head:
        a pin ends only when a sync to the head applies)."""
        self.store.set_suspended(ws.id, False)
        state = self.store.state(ws.id)
        self.keeper.suspension_changed(ws.id, automation_suspended(ws.mode, state))

    def put_step(
        self, ws: WorkspaceConfig, name: str, content: StepContent, audit: AuditEntry | None = None
    ) -> LiveStep:
        """An edit outside git: the workspace turns OutOfSync (blocking; then `note_edit`)."""
        return self.store.put_outside(ws.id, name, content, audit)

    def delete_step(self, ws: WorkspaceConfig, name: str, audit: AuditEntry | None = None) -> None:
        if not self.store.delete_outside(ws.id, name, audit):
            raise NotFound(f"no step {name!r} in workspace {ws.id}")

    async def note_edit(self, ws: WorkspaceConfig) -> None:
        """Tell the scheduler of an outside edit, so automatic mode heals it (on the loop)."""
        if self.scheduler is not None:
            await self.scheduler.note_outside_edit(ws.id)

    def export(self, ws: WorkspaceConfig, order: ExportRequest) -> ExportResult:
        return export_workspace(self.git, self.store, self.config, ws, order)


def _applied(run: Run, revision: str) -> bool:
    return run.result is RunResult.SUCCEEDED and not run.dry_run and run.revision == revision
