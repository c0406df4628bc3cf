"""Every Prometheus metric syncd exports, declared once, on an injected registry.

Label values come from small fixed sets (workspace ids come from the config), so a stranger
cannot grow the number of series. A workspace has about six series of its own
(`workspace_series`); histograms have no workspace label unless the config asks
(`metrics.per_workspace_histograms`), as Argo CD keeps the application off its histograms.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from syncd import __version__
from syncd.config import WorkspaceConfig
from syncd.config.types import MetricsConfig
from syncd.core.audit_model import ACTIONS as AUDIT_ACTIONS
from syncd.core.model import Health, Plan, Run, RunResult, SyncState, Trigger

# Why a commit was not verified: the label's values are the verifier's own reasons; anything
# else is counted as "malformed" so that the label stays a small fixed set.
from syncd.git.signatures import REASONS as VERIFY_REASONS
from syncd.ops.workspace_series import WorkspaceSeries

GIT_OPS = ("ls_remote", "fetch", "push")
WEBHOOK_RESULTS = (
    "accepted",
    "ping",
    "ignored",
    "unmatched",
    "duplicate",
    "unauthorized",
    "malformed",
    "too_large",
    "overloaded",
    "unavailable",
)
# What holds an automatic workspace back (`syncd.sync.gate.REASONS`).
BLOCK_REASONS = ("window", "promotion")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEP_ACTIONS = ("create", "update", "delete")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `_created` series: they double every counter's series and no alert uses them.
        # The switch is the library's own and process-wide; syncd never wants them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # A workspace's own series, about six (see workspace_series): at 10,000 workspaces the
        # scrape stays a few MB.
        self.workspaces = WorkspaceSeries()  # rendered beside the registry (`render`)
        self.sync_duration = Histogram(
            "syncd_sync_duration_seconds",
            "Duration of sync runs, by trigger and result (all workspaces).",
            ["trigger", "result"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        # Opt-in (`metrics.per_workspace_histograms`): 15 series a workspace (`configure`).
        self.workspace_duration: Histogram | None = None
        self.steps_changed = Counter(
            "syncd_steps_changed",
            "Steps created, updated, deleted (all workspaces).",
            ["action"],
            registry=r,
        )
        self.verify_failures = Counter(
            "syncd_verify_failures",
            "Commits refused by `verify` (a run, a manual sync or rollback, a reload's check of "
            "the applied commit), by reason.",
            ["workspace", "reason"],
            registry=r,
        )
        self.git_ops = Counter(
            "syncd_git_operations", "Git network operations.", ["op", "result"], registry=r
        )
        self.git_duration = Histogram(
            "syncd_git_operation_duration_seconds",
            "Duration of git network operations.",
            ["op"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "syncd_webhook_requests",
            "Webhook requests, by outcome.",
            ["provider", "result"],
            registry=r,
        )
        self._webhook_children: dict[tuple[str, str], Counter] = {}
        self.reports = Counter(
            "syncd_reports",
            "Reports to git hosts (commit statuses, pull request plans and comments), by the"
            " `providers` entry, kind and result (ok, retry, error, dropped).",
            ["provider", "kind", "result"],
            registry=r,
        )
        self.config_reloads = Counter(
            "syncd_config_reloads", "Config reloads, by result.", ["result"], registry=r
        )
        self.notifications = Counter(
            "syncd_notifications_sent",
            "Digest messages, by result and channel (email, target).",
            ["result", "channel"],
            registry=r,
        )
        # Replicas: one series each on this replica's own /metrics; a scrape of every replica
        # tells them apart by the `replica` label (host-pid-random, new at each start).
        self.replica_info = Gauge(
            "syncd_replica_info", "This replica's id (1).", ["replica"], registry=r
        )
        self.replica_held = Gauge(
            "syncd_replica_workspaces_held",
            "Workspaces this replica holds (runs or is about to run).",
            registry=r,
        )
        # Replicas alive as the shared store sees them (heartbeat fresh), the same on every
        # replica's /metrics; alerts take the max over replicas (SyncdReplicasBelow). Made only
        # where replicas share a store (set_replica with `alive`): a single process exports no
        # such series, so the shipped SyncdReplicasBelow stays quiet on it without an edit.
        self.replicas_alive: Gauge | None = None
        # Intake processes (server.intake_workers): how many run, and how often one exited
        # without being asked to (each is started again; the log says why it went).
        self.intake_processes = Gauge(
            "syncd_intake_processes", "Intake processes running beside the daemon.", registry=r
        )
        self.intake_exits = Counter(
            "syncd_intake_process_exits",
            "Intake processes that exited without being asked to.",
            registry=r,
        )
        self.audit_entries = Counter(
            "syncd_audit_entries",
            "Audit entries written to the store, by action.",
            ["action"],
            registry=r,
        )
        self.audit_failures = Counter(
            "syncd_audit_write_failures",
            "Audit entries the store did not take (the action went on; its log line stays).",
            registry=r,
        )
        self.checks = Counter(
            "syncd_checks",
            "Checks after an apply (`checks:`), by result (ok, failed: after all retries).",
            ["workspace", "check", "result"],
            registry=r,
        )
        self.runs_pruned_total = Counter(
            "syncd_runs_pruned",
            "Runs deleted from the store by history pruning (`history:`), all workspaces.",
            registry=r,
        )
        build = Gauge("syncd_build_info", "syncd's version.", ["version"], registry=r)
        build.labels(__version__).set(1)
        for op in GIT_OPS:
            self.git_duration.labels(op)
            for result in ("ok", "error"):
                self.git_ops.labels(op, result)
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
            for channel in ("email", "target"):
                self.notifications.labels(result, channel)
        for action in AUDIT_ACTIONS:
            self.audit_entries.labels(action)
        for trigger in Trigger:
            for result in RunResult:
                self.sync_duration.labels(trigger.value, result.value)
        for action in STEP_ACTIONS:
            self.steps_changed.labels(action)
        # Per workspace, as they come: (workspace, check, result) and (workspace, reason).
        self._check_labels: set[tuple[str, str, str]] = set()
        self._checks_lock = threading.Lock()

    def render(self) -> bytes:
        """The whole /metrics text: the registry's metrics, then the workspaces' series."""
        return generate_latest(self.registry) + self.workspaces.render()

    def configure(self, config: MetricsConfig) -> None:
        """`metrics:` from the config, at start and at each reload."""
        wanted = config.per_workspace_histograms
        if wanted and self.workspace_duration is None:
            self.workspace_duration = Histogram(
                "syncd_workspace_sync_duration_seconds",
                "Duration of a workspace's sync runs (opt-in: metrics.per_workspace_histograms).",
                ["workspace"],
                buckets=DURATION_BUCKETS,
                registry=self.registry,
            )
            for ws_id in self.workspaces.known():
                self.workspace_duration.labels(ws_id)
        elif not wanted and self.workspace_duration is not None:
            self.registry.unregister(self.workspace_duration)
            self.workspace_duration = None

    def set_replica(
        self,
        replica_id: str,
        held: Callable[[], int] | None = None,
        alive: Callable[[], int] | None = None,
    ) -> None:
        self.replica_info.labels(replica_id).set(1)
        if held is not None:
            self.replica_held.set_function(held)
        if alive is not None and self.replicas_alive is None:
            self.replicas_alive = Gauge(
                "syncd_replicas_alive",
                "Replicas whose heartbeat is fresh in the shared store.",
                registry=self.registry,
            )
            self.replicas_alive.set_function(alive)

    # -- workspaces ------------------------------------------------------------------------

    def add_workspace(self, ws_id: str) -> None:
        """The workspace's series, its run counters at 0 so that `increase()` sees the first
        failure (a series born at 1 shows no increase); idempotent."""
        self.workspaces.add(ws_id)
        per_workspace = self.workspace_duration  # once: a reload may drop it meanwhile
        if per_workspace is not None:
            per_workspace.labels(ws_id)

    def restore(self, ws_id: str, state: SyncState, last_success: float | None) -> None:
        """The workspace's series from what the store knows: at start and after a reload, so
        gauges do not wait for the next run (and an alert on them does not go blind). A row a
        run has set since it was added keeps what the run said (`WorkspaceSeries.restore`)."""
        self.add_workspace(ws_id)
        self.workspaces.restore(ws_id, state.status, state.drift, last_success)

    # -- observers -------------------------------------------------------------------------

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None:
        self.workspaces.count_run(ws.id, str(run.result))
        self.sync_duration.labels(str(run.trigger), str(run.result)).observe(seconds)
        per_workspace = self.workspace_duration  # once: a reload may drop it meanwhile
        if per_workspace is not None and not self.workspaces.gone(ws.id):
            per_workspace.labels(ws.id).observe(seconds)
        if run.result is RunResult.SUCCEEDED:
            # Only applied changes count: a planned run's counts are what it would change.
            self.steps_changed.labels("create").inc(run.created)
            self.steps_changed.labels("update").inc(run.updated)
            self.steps_changed.labels("delete").inc(run.deleted)
            self.workspaces.set_last_success(ws.id, run.finished_at or 0)
        self.set_state(ws.id, state)

    def set_state(self, ws_id: str, state: SyncState) -> None:
        self.workspaces.set_state(ws_id, state.status, state.drift)

    def set_health(self, ws_id: str, health: Health) -> None:
        self.workspaces.set_health(ws_id, health)

    def workspace_blocked(self, ws_id: str, reason: str | None) -> None:
        """A run's gate decision (`syncd.sync.gate.BlockObserver`): None when nothing holds."""
        self.workspaces.set_blocked(ws_id, reason if reason in BLOCK_REASONS else None)

    def verify_failed(self, ws_id: str, reason: str) -> None:
        if self.workspaces.gone(ws_id):
            return  # removed by a reload while its run was in flight
        self.verify_failures.labels(
            ws_id, reason if reason in VERIFY_REASONS else "malformed"
        ).inc()

    def git_operation(self, op: str, result: str, seconds: float) -> None:
        # local_error: this host's state directory failed the operation, not the remote.
        if op not in GIT_OPS or result not in ("ok", "error", "local_error"):
            return
        self.git_ops.labels(op, result).inc()
        self.git_duration.labels(op).observe(seconds)

    def webhook(self, provider: str, result: str, count: int = 1) -> None:
        # The labelled child, looked up once: labels() takes a lock and builds a key each call.
        child = self._webhook_children.get((provider, result))
        if child is None:
            child = self._webhook_children[(provider, result)] = self.webhooks.labels(
                provider, result
            )
        child.inc(count)

    def audit_written(self, action: str) -> None:
        # Actions come from syncd's code, a small fixed set: an unknown one is "other".
        self.audit_entries.labels(action if action in AUDIT_ACTIONS else "other").inc()

    def audit_write_failed(self) -> None:
        self.audit_failures.inc()

    def check_finished(self, ws_id: str, check: str, result: str) -> None:
        """A check after an apply (`syncd.sync.after_apply.CheckObserver`)."""
        with self._checks_lock:
            if self.workspaces.gone(ws_id):
                return  # removed by a reload while its run was in flight
            self._check_labels.add((ws_id, check, result))
            self.checks.labels(ws_id, check, result).inc()

    def runs_pruned(self, count: int) -> None:
        self.runs_pruned_total.inc(count)

    def report(self, provider: str, kind: str, result: str) -> None:
        self.reports.labels(provider, kind, result).inc()

    def forget_workspace(self, ws_id: str) -> None:
        """A workspace removed from the config takes its series with it."""
        self.workspaces.forget(ws_id)
        per_workspace = self.workspace_duration
        if per_workspace is not None:
            _remove(per_workspace, ws_id)
        for reason in VERIFY_REASONS:
            _remove(self.verify_failures, ws_id, reason)
        with self._checks_lock:
            gone = {labels for labels in self._check_labels if labels[0] == ws_id}
            self._check_labels -= gone
        for labels in gone:
            _remove(self.checks, *labels)


def _remove(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
