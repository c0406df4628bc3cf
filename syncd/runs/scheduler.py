"""Triggers become runs: coalescing per workspace, bounded parallelism, retries of runs.

Webhooks, polls, manual requests and outside edits all *request* a sync. A workspace has at
most one run in flight and, for ordinary requests, one queued: any number of requests while a
run is in flight collapse into the one queued run (the merge rule, `syncd.runs.merge`). This
loop retries runs (`syncd.core.retry.RUN`): a transient failure is retried with capped,
jittered backoff; a permanent one waits for a new commit.

Where requests wait is the scheduler's queue (`syncd.runs.queue`), chosen once here: in this
process's memory (`LocalQueue`), or, with a shared coordinator (replicas on PostgreSQL), in the
database (`SharedQueue`): a request is a row, committed before it is answered, and a replica
runs a workspace's requests only while it holds the workspace. Polling per remote and the
startup comparison are in `syncd.runs.polling` (with replicas, a remote is polled on its turn).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from syncd.config import Config, WorkspaceConfig
from syncd.core import retry
from syncd.core.model import Mode, RunResult, Status, Trigger, automation_suspended
from syncd.ops.logs import fields
from syncd.runs.gate_timers import GateTimers
from syncd.runs.local_queue import LocalQueue
from syncd.runs.polling import Polling, should_sync
from syncd.runs.queue import RunQueue
from syncd.runs.replicas import Coordinator, LocalCoordinator
from syncd.runs.requests import Request, ShuttingDown, Ticket
from syncd.runs.shared_queue import SharedQueue
from syncd.store import Store
from syncd.store.offloop import OffLoop
from syncd.sync import after_apply
from syncd.sync.engine import Engine, Outcome
from syncd.sync.health import HealthKeeper

# Still importable from here, where callers have always found them.
__all__ = ["Scheduler", "Ticket", "should_sync"]

log = logging.getLogger("syncd.scheduler")


@dataclass
class Backoff:
    """A workspace's transient failures in a row, and the timer of its next retry."""

    failures: int = 0
    timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        config: Callable[[], Config],
        max_parallel: int = 4,
        drift_debounce: float = 2.0,
        rng: Callable[[], float] = random.random,
        health: HealthKeeper | None = None,
        coordinator: Coordinator | None = None,
    ) -> None:
        self.engine = engine
        self.coordinator: Coordinator = coordinator or LocalCoordinator(holds=self.busy)
        self.max_parallel = max_parallel
        self.health = health
        self.store = store
        self.config = config
        self.drift_debounce = drift_debounce
        self.rng = rng
        self._parallel = asyncio.Semaphore(max_parallel)
        self._backoffs: dict[str, Backoff] = {}
        # Held workspaces (a closed window, a promotion's soak) are synced when their gate opens.
        self.gate_timers = GateTimers(engine.clock, self._gate_opened)
        self._wakes: set[asyncio.Task[None]] = set()
        self.accepting = False
        # Store calls made for the event loop (a request recorded in the database).
        self.offloop = OffLoop()
        # Where requests wait, chosen once: the database when the coordinator shares the
        # work between replicas, this process's memory otherwise.
        self.queue: RunQueue
        if self.coordinator.shared:
            self.queue = SharedQueue(
                self, self.coordinator, store, config, self.offloop, max_parallel
            )
        else:
            self.queue = LocalQueue(self)
        self._polling = Polling(self, engine, config, health, self.coordinator, max_parallel)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, startup_sync: bool = True) -> None:
        self.accepting = True
        await self.queue.start()
        self.reconfigure()
        if startup_sync:
            self._polling.start_comparison()

    def reconfigure(self) -> None:
        """Align pollers with the current config; runs in flight finish untouched."""
        self._polling.reconfigure()
        if not self.accepting:
            return
        known = {ws.id for ws in self.config().workspaces}
        self.queue.forget(known)
        running = set(self.busy())
        for ws_id, backoff in list(self._backoffs.items()):
            if ws_id not in known and ws_id not in running:
                backoff.cancel()
                del self._backoffs[ws_id]
        # A held workspace is decided again under the new config (its windows may be gone).
        self.gate_timers.forget(known)
        for ws_id in list(self.engine.gate.held):
            if ws_id in known:
                self.request_quietly(ws_id, Trigger.POLL)
            else:
                self.engine.gate.held.pop(ws_id, None)

    async def stop(self, deadline: float = 8.0) -> bool:
        """Stop taking runs and wait for those in flight; True when all finished in time."""
        # 1. stop accepting: new requests raise ShuttingDown, timers and pollers end
        self.accepting = False
        self._polling.stop()
        # 2. the queue drops what is queued but not started (its waiters hear why), or, shared,
        # leaves it in the database for the other replicas
        running = self.queue.stop()
        for backoff in self._backoffs.values():
            backoff.cancel()
        self.gate_timers.stop()
        # 3. wait for the runs in flight: each finishes or rolls back in its transaction
        if not running:
            await self.coordinator.stop()
            return True
        _done, pending = await asyncio.wait(running, timeout=deadline)
        # Shared: closing this replica's session frees the workspaces it held.
        await self.coordinator.stop()
        return not pending

    # -- requests ----------------------------------------------------------------------------

    async def request(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None = None,
        dry_run: bool = False,
        head: str | None = None,
        actor: str | None = None,
    ) -> Ticket:
        """Queue a sync; with replicas, recorded in the database before this returns (off
        the event loop, with a deadline: QueueFull when the database does not answer).
        `actor`: who asked (a token's name, `local:<user>`), recorded on the run."""
        self.admit(ws_id)
        return await self.queue.submit(ws_id, trigger, revision, dry_run, head, actor=actor)

    def admit(self, ws_id: str) -> None:
        """ShuttingDown while stopping, NotFound for a workspace the config does not name."""
        if not self.accepting:
            raise ShuttingDown("syncd is stopping and takes no new runs")
        self.config().workspace(ws_id)

    def request_quietly(self, ws_id: str, trigger: Trigger, head: str | None = None) -> None:
        """A request no one waits for (a timer, a poll): dropping it is logged, not raised.
        With replicas it is recorded in the background: a lost one is asked again by the
        next poll or timer."""
        self.queue.submit_quietly(ws_id, trigger, head)

    async def note_outside_edit(self, ws_id: str) -> None:
        """An edit outside git: reconcile after a quiet moment (debounced, like self-heal).
        With replicas, a request row due after the quiet moment: any replica heals it."""
        await self.queue.submit_after_quiet(ws_id, Trigger.DRIFT, self.drift_debounce)

    def busy(self) -> list[str]:
        return self.queue.busy()

    # -- running -----------------------------------------------------------------------------

    async def run_one(self, ws_id: str, req: Request) -> Outcome:
        ws = self.config().workspace(ws_id)
        async with self._parallel:
            if not self.accepting:
                # Queued behind the parallelism bound when the stop came: it never starts.
                raise ShuttingDown("syncd is stopping; the run did not start")
            log.info(
                "sync start",
                extra=fields(workspace=ws_id, trigger=str(req.trigger), run=req.run_id),
            )
            outcome = await asyncio.to_thread(self._sync_and_check, ws, req)
        run = outcome.run
        # A failed sync is news for whoever watches the log: a warning, not an info line.
        failed = run.result is RunResult.FAILED
        log.log(
            logging.WARNING if failed else logging.INFO,
            "sync failed" if failed else "sync end",
            extra=fields(
                workspace=ws_id,
                run=run.id,
                trigger=str(run.trigger),
                result=str(run.result),
                revision=run.revision[:12] if run.revision else None,
                created=run.created,
                updated=run.updated,
                deleted=run.deleted,
                error=run.error,
            ),
        )
        return outcome

    def _sync_and_check(self, ws: WorkspaceConfig, req: Request) -> Outcome:
        """The run, then (on the same worker thread, out of the run's lease) the checks after
        an automatic workspace's apply, and a rollback when one fails (`after_apply`)."""
        engine = self.engine
        # What a failed check goes back to: applied before this run (read before it, so no
        # pruning of old runs can take it away).
        before = engine.store.state(ws.id).last_applied_revision if ws.checks else None
        outcome = engine.sync(
            ws,
            req.trigger,
            req.revision,
            req.dry_run,
            None,
            req.run_id,
            req.head,
            req.take_over,
            req.actor,
        )
        if not after_apply.should_check(ws, outcome, req.revision):
            return outcome
        return after_apply.check_applied(engine, ws, outcome, before, self.health)

    def after_run(self, ws_id: str, req: Request, outcome: Outcome) -> None:
        """Schedule a retry after a transient failure; forget failures after a success. A run
        held back by its gate is synced again when the gate opens; an apply may open the gate
        of the workspaces promoted after this one."""
        if not outcome.run.dry_run and not outcome.fenced:
            self._follow_gate(ws_id, outcome)
        if outcome.run.result is not RunResult.FAILED:
            self._backoff(ws_id).failures = 0
            return
        if outcome.state.failed_revision is not None:
            return  # permanent: it waits for a new commit
        self._retry_later(ws_id, req)

    def after_crash(self, ws_id: str, req: Request) -> None:
        self._retry_later(ws_id, req)

    def _backoff(self, ws_id: str) -> Backoff:
        """The workspace's backoff, made on first use."""
        return self._backoffs.setdefault(ws_id, Backoff())

    def _retry_later(self, ws_id: str, req: Request) -> None:
        if req.dry_run or req.revision:
            return  # a one-off request: nothing to retry
        backoff = self._backoff(ws_id)
        backoff.failures += 1
        delay = retry.RUN.delay(backoff.failures, self.rng)
        backoff.cancel()
        loop = asyncio.get_running_loop()
        trigger = Trigger.POLL if req.trigger is Trigger.STARTUP else req.trigger
        if trigger is Trigger.MANUAL:
            trigger = Trigger.POLL  # a retry is not a person asking again
        backoff.timer = loop.call_later(delay, self.request_quietly, ws_id, trigger)
        log.info(
            "retry scheduled",
            extra=fields(workspace=ws_id, delay_seconds=round(delay, 1), failures=backoff.failures),
        )

    # -- held workspaces ------------------------------------------------------------------------

    def _follow_gate(self, ws_id: str, outcome: Outcome) -> None:
        block = self.engine.gate.held.get(ws_id)
        if block is not None and block.until is not None:
            self.gate_timers.arm(ws_id, block.until)
        else:
            self.gate_timers.cancel(ws_id)
        if outcome.run.result is RunResult.SUCCEEDED:
            # Looked up, not searched: a cold start of 10,000 runs searched 10,000 each.
            after = list(self.config().followers(ws_id))
            if after:
                task = asyncio.get_running_loop().create_task(self._wake_behind(after))
                self._wakes.add(task)
                task.add_done_callback(self._wakes.discard)

    async def _wake_behind(self, ws_ids: list[str]) -> None:
        """Workspaces promoted after one that just applied: those behind their branch (in the
        store, which replicas share) are asked again; their gate decides."""
        for ws_id in ws_ids:
            try:
                state = await asyncio.to_thread(self.store.state, ws_id)
            except Exception:
                log.exception("promotion check failed", extra=fields(workspace=ws_id))
                continue
            if state.status is Status.OUT_OF_SYNC and not automation_suspended(
                Mode.AUTOMATIC, state
            ):
                self.request_quietly(ws_id, Trigger.POLL)

    def _gate_opened(self, ws_id: str) -> None:
        if self.accepting:
            log.info("gate open, syncing", extra=fields(workspace=ws_id))
            self.request_quietly(ws_id, Trigger.POLL)
