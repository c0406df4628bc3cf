"""What the running daemon holds: the current config and the parts built from it.

Built in one place (`build_runtime`); the API, the scheduler and the lifecycle share it.
A reload swaps `config` whole, so a request sees either the old config or the new one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from syncd.config import Config
from syncd.metrics import Metrics
from syncd.scheduler import Scheduler
from syncd.urls import normalize_repo_url
from syncd.webhooks import Target
from syncd.wiring import Core, build_core


class DeliveryLog:
    """Delivery ids seen lately, so a redelivered webhook starts nothing new. Bounded."""

    def __init__(self, capacity: int = 10_000, ttl: float = 24 * 3600) -> None:
        self.capacity, self.ttl = capacity, ttl
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def seen(self, provider: str, delivery: str | None, now: float | None = None) -> bool:
        if not delivery:
            return False
        now = time.time() if now is None else now
        at = self._seen.get((provider, delivery))
        return at is not None and now - at < self.ttl

    def add(self, provider: str, delivery: str | None, now: float | None = None) -> None:
        if not delivery:
            return
        self._seen[(provider, delivery)] = time.time() if now is None else now
        self._seen.move_to_end((provider, delivery))
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


@dataclass
class Runtime:
    core: Core
    metrics: Metrics
    scheduler: Scheduler
    deliveries: DeliveryLog = field(default_factory=DeliveryLog)
    webhook_last_seen: dict[str, float] = field(default_factory=dict)  # by provider
    secret_last_seen: dict[tuple[str, int], float] = field(default_factory=dict)
    ready: bool = False
    stopping: bool = False
    started_at: float = field(default_factory=time.time)
    _targets: tuple[Config, list[Target]] | None = None

    @property
    def config(self) -> Config:
        return self.core.config

    def targets(self) -> list[Target]:
        """What each workspace follows, worked out once per config, not once per webhook."""
        config = self.config
        if self._targets is None or self._targets[0] is not config:
            targets = [
                Target(ws.id, normalize_repo_url(ws.source.url), ws.source.branch, ws.source.path)
                for ws in config.workspaces
            ]
            self._targets = (config, targets)
        return self._targets[1]

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
    return Runtime(core=core, metrics=metrics, scheduler=scheduler)
