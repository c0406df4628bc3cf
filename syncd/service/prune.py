"""History pruning: the daemon's background task that keeps each workspace's run history (and
the audit) within its `history` config, off the syncs' path.

Every `every` seconds (the first time `first_delay` after the start, away from the startup's
rush) one pass walks the workspaces that set `history` and deletes what their rule lets go, in
batches of `batch` rows: each batch is one short store transaction (syncd.store.history), then a
pause, so that a sync's write (a run record, an apply) waits for one batch at most, never for a
whole pass. A pass that is stopped (the daemon stops) ends after its current batch; what it left
goes at the next pass. On PostgreSQL every replica prunes; their batches skip each other's rows.

The audit has no config of its own: its entries are kept as long as the longest `keep_days`
of any workspace, so an entry about a run outlives neither that run's retention nor any
workspace's; when a workspace keeps its runs with no age limit (no `keep_days`), or no
workspace is configured, the audit is kept whole. Runs of workspaces no longer in the config
are left as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from syncd.config import Config, WorkspaceConfig
from syncd.ops.logs import fields
from syncd.store import Store

log = logging.getLogger("syncd.prune")

DAY = 86_400.0
EVERY = 300.0  # seconds between passes
FIRST_DELAY = 60.0  # seconds from the start to the first pass
BATCH = 500  # rows per transaction
PAUSE = 0.02  # seconds between two batches: a waiting sync's write takes the store meanwhile
# A pass's batches, at most (5,000,000 rows): the next pass goes on where this one stopped.
MAX_BATCHES = 10_000


@dataclass
class Pass:
    """What one pass deleted, and how long each of its batches held the store."""

    runs: int = 0
    audit: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    stopped: bool = False  # ended early: the daemon stops, or MAX_BATCHES

    @property
    def longest_batch(self) -> float:
        return max(self.batch_seconds, default=0.0)


def audit_cutoff(workspaces: Sequence[WorkspaceConfig], now: float) -> float | None:
    """Audit entries from before this time may go (None: keep the audit whole): the longest
    `keep_days` of any workspace, none when one of them has no age limit."""
    days = [ws.history.keep_days for ws in workspaces]
    if not days or any(d is None for d in days):
        return None
    return now - max(d for d in days if d is not None) * DAY


class Pruner:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        counted: Callable[[int], None] | None = None,
        *,
        every: float = EVERY,
        first_delay: float = FIRST_DELAY,
        batch: int = BATCH,
        pause: float = PAUSE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Told how many runs each pass deleted (Metrics.runs_pruned).
        self.store, self.config, self.counted = store, config, counted
        self.every, self.first_delay = every, first_delay
        self.batch, self.pause, self.clock = batch, pause, clock
        self.last: Pass | None = None  # the last pass's figures

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every `every` seconds until `stop` is set."""
        delay = self.first_delay
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                break
            except TimeoutError:
                pass
            try:
                await self.prune(stop)
            except Exception as e:  # a store error: the next pass tries again
                log.error("history pruning failed", extra=fields(error=str(e)))
            delay = self.every

    async def prune(self, stop: asyncio.Event | None = None) -> Pass:
        """One pass over every workspace's history, then the audit."""
        done = Pass()
        config = self.config()
        now = self.clock()
        for ws in config.workspaces:
            keep_runs, keep_days = ws.history.keep_runs, ws.history.keep_days
            if keep_runs is None and keep_days is None:
                continue
            older_than = None if keep_days is None else now - keep_days * DAY
            prune = partial(self.store.prune_runs, ws.id, keep_runs, older_than, self.batch)
            done.runs += await self._batches(done, stop, prune)
            if done.stopped:
                break
        cutoff = audit_cutoff(config.workspaces, now)
        if cutoff is not None and not done.stopped:
            prune = partial(self.store.prune_audit, cutoff, self.batch)
            done.audit = await self._batches(done, stop, prune)
        if self.counted is not None and done.runs:
            self.counted(done.runs)
        if done.runs or done.audit:
            log.info(
                "history pruned",
                extra=fields(
                    runs=done.runs,
                    audit=done.audit,
                    batches=len(done.batch_seconds),
                    longest_batch_ms=round(done.longest_batch * 1000, 1),
                ),
            )
        self.last = done
        return done

    async def _batches(
        self, done: Pass, stop: asyncio.Event | None, batch: Callable[[], int]
    ) -> int:
        """Batches until one comes back short; how many rows went."""
        deleted = 0
        while len(done.batch_seconds) < MAX_BATCHES:
            started = time.perf_counter()
            count = await asyncio.to_thread(batch)
            done.batch_seconds.append(time.perf_counter() - started)
            deleted += count
            if count < self.batch:
                return deleted
            if stop is not None and stop.is_set():
                break
            await asyncio.sleep(self.pause)
        done.stopped = True
        return deleted
