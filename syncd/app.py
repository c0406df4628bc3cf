"""The one place that wires syncd: build the parts from a config, and nowhere else.

`build_core` makes what every process needs (store, git source, engine, and the workspace use
cases over them): the CLI runs syncs with it in-process. `build` adds what the daemon needs
around it (metrics, scheduler, webhook intake, e-mail digests). No module keeps state of its
own; everything a running syncd holds hangs off the objects made here.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from syncd.config import Config
from syncd.core.model import Health
from syncd.git import GitObserver, GitSource
from syncd.http.throttle import Throttle
from syncd.notify.digester import Digester
from syncd.ops.logs import fields
from syncd.ops.metrics import Metrics
from syncd.report.hosts import build_host
from syncd.report.reporter import HostSet, Reporter
from syncd.report.runs import RunReports
from syncd.runs.replicas import Coordinator
from syncd.runs.scheduler import Scheduler
from syncd.service.actions import Actions, Inline, QueuedRuns, RunsHere
from syncd.service.deliveries import DeliveryLog
from syncd.service.intake import Intake
from syncd.service.prune import Pruner
from syncd.service.pull_plans import PullPlans
from syncd.service.remote_reads import RemoteReads
from syncd.service.workspaces import Workspaces
from syncd.store import Store, open_store
from syncd.store.offloop import OffLoop
from syncd.sync.engine import Engine, Observers, Progress, SyncObserver
from syncd.sync.health import HealthKeeper
from syncd.sync.resolving import remote_for
from syncd.sync.verifying import Verifier

# The daemon's logger: config warnings are said where reloads are.
log = logging.getLogger("syncd.serve")


@dataclass
class Core:
    """The parts of one syncd process. A reload swaps `config` whole, so a request sees
    either the old config or the new one."""

    config: Config
    store: Store
    git: GitSource
    engine: Engine
    health: HealthKeeper
    workspaces: Workspaces = field(init=False)

    def __post_init__(self) -> None:
        self.workspaces = Workspaces(
            lambda: self.config, self.store, self.git, self.engine, health=self.health
        )

    def close(self) -> None:
        self.store.close()


def build_core(
    config: Config,
    sync_observer: SyncObserver | None = None,
    git_observer: GitObserver | None = None,
    health_observer: Callable[[str, Health], None] | None = None,
    verify_observer: Callable[[str, str], None] | None = None,
) -> Core:
    # Syncs in parallel, API reads and the webhook intake each take a connection at most.
    store = open_store(config.store, pool_size=config.server.max_parallel_syncs + 4)
    git = GitSource(config.state_dir, timeout=config.git.timeout, observer=git_observer)
    # Every run, in the daemon or the CLI, tells the workspace's health first.
    health = HealthKeeper(store, on_change=health_observer)
    observers = (health,) if sync_observer is None else (health, sync_observer)
    engine = Engine(
        store, git, observer=Observers(observers), verifier=Verifier(on_failure=verify_observer)
    )
    return Core(config, store, git, engine, health)


def local_actions(core: Core, progress: Progress | None = None) -> Actions:
    """The actions of the local CLI: store calls made in place, syncs run in this process."""
    return Actions(core.workspaces, Inline(), RunsHere(core.workspaces, progress))


def coordinator_for(config: Config, store: Store) -> Coordinator | None:
    """Replicas share the work through a PostgreSQL store; with SQLite, one process does it
    all (None: the scheduler's in-process coordinator)."""
    if not config.store.is_postgres:
        return None
    # Imported here: a SQLite deployment never loads the PostgreSQL driver.
    from syncd.runs.replicas.postgres import PostgresCoordinator
    from syncd.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresCoordinator(store.conninfo, store.where, store.clean)


@dataclass
class Parts:
    """A running daemon's parts: the core, and the loops and intake around it."""

    core: Core
    metrics: Metrics
    scheduler: Scheduler
    digests: Digester
    pruner: Pruner  # history pruning (`history:`), off the syncs' path
    intake: Intake  # webhooks: dedupe, targets per config, last seen
    remote_reads: RemoteReads  # diffs: their own few threads, refused past the bound
    reporter: Reporter  # commit statuses and pull request comments, off the syncs' path
    pulls: PullPlans  # pull requests' plans, from their webhooks
    ready: bool = False
    stopping: bool = False
    # Set at the first stop signal, before uvicorn drains connections (and so before
    # `stopping`): long-lived answers, the console's event streams, end so as not to hold it up.
    closing: bool = False
    started_at: float = field(default_factory=time.time)
    # The store reads and writes of API and console requests: threads of their own, each call
    # with a deadline (a frozen store is a 503, and leaves the default threads to git).
    store_calls: OffLoop = field(default_factory=lambda: OffLoop(threads=8, timeout=30.0))
    # Signs the console's sessions unless the config names a key (console.session_key_*).
    session_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # Wrong API tokens and failed console sign-ins, per client address (429 past the limit).
    guesses: Throttle = field(default_factory=Throttle)
    # What the API and the console change, each action whole and audited.
    actions: Actions = field(init=False)

    def __post_init__(self) -> None:
        self.actions = Actions(
            self.core.workspaces,
            self.store_calls,
            QueuedRuns(self.workspaces),
            observer=self.metrics,
        )

    @property
    def config(self) -> Config:
        return self.core.config

    @property
    def workspaces(self) -> Workspaces:
        return self.core.workspaces

    def swap_config(self, config: Config) -> None:
        log_warnings(config)
        old = {ws.id for ws in self.core.config.workspaces}
        self.core.config = config
        for gone in old - {ws.id for ws in config.workspaces}:
            self.metrics.forget_workspace(gone)
        self.metrics.configure(config.metrics)
        self.scheduler.reconfigure()

    async def reloaded(self, path: str, error: str | None = None) -> None:
        """A config reload's outcome (`error`: why it was refused, the running config kept):
        counted, logged and audited."""
        self.metrics.config_reloads.labels("error" if error else "ok").inc()
        if error:
            log.error("config reload refused", extra=fields(file=path, error=error))
        else:
            log.info("config reloaded", extra=fields(workspaces=len(self.config.workspaces)))
        await self.actions.audit.config_reload("error" if error else "ok", error)

    def close(self) -> None:
        self.remote_reads.close()
        self.scheduler.offloop.close()
        self.store_calls.close()
        self.core.close()


def log_warnings(config: Config) -> None:
    """What the config allows but is likely a mistake, at every load (see Checker.warn)."""
    for warning in config.warnings:
        log.warning("config warning", extra=fields(warning=warning))


def build(config: Config, registry: CollectorRegistry | None = None) -> Parts:
    log_warnings(config)
    metrics = Metrics(registry)
    metrics.configure(config.metrics)
    # Reports to git hosts read the config through the core (made below), so a reload's
    # `providers` and `report` reach them at once.
    reporter = Reporter(HostSet(build_host), metrics, lambda: core.config.providers)
    run_reports = RunReports(reporter, lambda: core.config)
    core = build_core(
        config,
        sync_observer=Observers((metrics, run_reports)),
        git_observer=metrics.git_operation,
        health_observer=metrics.set_health,
        verify_observer=metrics.verify_failed,
    )
    # The scheduler and the digests read the config through the core, so a reload reaches
    # them at once.
    scheduler = Scheduler(
        core.engine,
        core.store,
        lambda: core.config,
        max_parallel=config.server.max_parallel_syncs,
        drift_debounce=config.server.self_heal_delay,
        health=core.health,
        coordinator=coordinator_for(config, core.store),
    )
    coordinator = scheduler.coordinator
    metrics.set_replica(
        coordinator.replica_id,
        lambda: len(scheduler.busy()),
        coordinator.alive if coordinator.shared else None,  # replicas only: see Metrics
    )
    digests = Digester(core.store, lambda: core.config, metrics)
    pruner = Pruner(core.store, lambda: core.config, metrics.runs_pruned)
    # Delivery ids are kept in the store, so that a redelivery after a restart starts nothing.
    intake = Intake(
        lambda: core.config,
        scheduler,
        metrics,
        DeliveryLog(core.store, offloop=scheduler.offloop),
    )
    remote_reads = RemoteReads(config.server.max_remote_reads)
    pulls = PullPlans(
        lambda: core.config,
        core.engine,
        lambda ws, ref: core.git.fetch_ref(remote_for(ws), ref),
        reporter,
        lambda: core.store,
    )
    intake.pulls = pulls
    parts = Parts(
        core=core,
        metrics=metrics,
        scheduler=scheduler,
        digests=digests,
        pruner=pruner,
        intake=intake,
        remote_reads=remote_reads,
        reporter=reporter,
        pulls=pulls,
    )
    core.workspaces.scheduler = scheduler
    core.workspaces.activity = intake
    core.workspaces.reports = reporter
    return parts
