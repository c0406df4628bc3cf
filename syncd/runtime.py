"""What the running daemon holds: the current config and the parts built from it.

Built in one place (`build_runtime`); the API, the scheduler and the lifecycle share it.
A reload swaps `config` whole, so a request sees either the old config or the new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from syncd.config import Config
from syncd.metrics import Metrics
from syncd.scheduler import Scheduler
from syncd.service.intake import Intake
from syncd.wiring import Core, build_core


@dataclass
class Runtime:
    core: Core
    metrics: Metrics
    scheduler: Scheduler
    intake: Intake  # webhooks: dedupe, targets per config, last seen
    ready: bool = False
    stopping: bool = False
    started_at: float = field(default_factory=time.time)

    @property
    def config(self) -> Config:
        return self.core.config

    def swap_config(self, config: Config) -> None:
        old = {ws.id for ws in self.core.config.workspaces}
        self.core.config = config
        for gone in old - {ws.id for ws in config.workspaces}:
            self.metrics.forget_workspace(gone)
        self.scheduler.reconfigure()


def build_runtime(config: Config, registry: CollectorRegistry | None = None) -> Runtime:
    metrics = Metrics(registry)
    core = build_core(config, sync_observer=metrics, git_observer=metrics.git_operation)
    # The scheduler reads the config through the core, so a reload reaches it at once.
    scheduler = Scheduler(
        core.engine,
        core.store,
        lambda: core.config,
        max_parallel=config.server.max_parallel_syncs,
        drift_debounce=config.server.self_heal_delay,
    )
    intake = Intake(lambda: core.config, scheduler, metrics)
    return Runtime(core=core, metrics=metrics, scheduler=scheduler, intake=intake)
