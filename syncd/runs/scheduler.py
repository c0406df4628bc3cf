"""Triggers become runs: coalescing per workspace, bounded parallelism, retries of runs.

Webhooks, polls, manual requests and outside edits all *request* a sync. A workspace has at
most one run in flight and, for ordinary requests, one queued: any number of requests while a
run is in flight collapse into the one queued run. This loop retries runs (`syncd.retry.RUN`):
a transient failure is retried with capped, jittered backoff; a permanent one waits for a new
commit.

Polling per remote and the startup comparison are in `syncd.polling`. With a shared
coordinator (replicas on PostgreSQL) the queues live in the database instead
(`syncd.shared_runs`): a request is a row, committed before it is answered; a replica runs a
workspace's requests only while it holds the workspace, and polls a remote only on its turn
(`syncd.replicas`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from syncd.config import Config
from syncd.core import retry
from syncd.core.errors import NotFound
from syncd.core.model import RunResult, Trigger
from syncd.ops.logs import fields
from syncd.runs.polling import Polling, should_sync
from syncd.runs.replicas import Coordinator, LocalCoordinator
from syncd.runs.requests import (
    MAX_QUEUED_PER_WORKSPACE,
    QueueFull,
    Request,
    ShuttingDown,
    Slot,
    Ticket,
)
from syncd.runs.shared import SharedRuns
from syncd.store import Store
from syncd.store.offloop import OffLoop
from syncd.sync.engine import Engine, Outcome
from syncd.sync.health import HealthKeeper

# Still importable from here, where callers have always found them.
__all__ = [
    "MAX_QUEUED_PER_WORKSPACE",
    "QueueFull",
    "Scheduler",
    "ShuttingDown",
    "Ticket",
    "should_sync",
]

log = logging.getLogger("syncd.scheduler")


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        config: Callable[[], Config],
        max_parallel: int = 4,
        max_queued: int = 1024,
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
        self.max_queued = max_queued
        self.drift_debounce = drift_debounce
        self.rng = rng
        self._parallel = asyncio.Semaphore(max_parallel)
        self._slots: dict[str, Slot] = {}
        self.accepting = False
        self._polling = Polling(self, max_parallel)
        self._shared = SharedRuns(self)
        # Store calls made for the event loop (a request recorded in the database).
        self.offloop = OffLoop()
        self._quiet: set[asyncio.Task[None]] = set()
        # The event that wakes the claim loop (a NOTIFY, a request recorded here).
        self._wake = self._shared.wake

    @property
    def shared(self) -> bool:
        return self.coordinator.shared

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, startup_sync: bool = True) -> None:
        self.accepting = True
        if self.shared:
            await self._shared.start()
        self.reconfigure()
        if startup_sync:
            self._polling.start_comparison()

    def reconfigure(self) -> None:
        """Align pollers with the current config; runs in flight finish untouched."""
        self._polling.reconfigure()
        if not self.accepting:
            return
        known = {ws.id for ws in self.config().workspaces}
        for ws_id, slot in list(self._slots.items()):
            if ws_id not in known and slot.task is None:
                self._cancel_timers(slot)
                del self._slots[ws_id]

    async def stop(self, deadline: float = 8.0) -> bool:
        """Stop taking runs and wait for those in flight; True when all finished in time."""
        # 1. stop accepting: new requests raise ShuttingDown, timers and pollers end
        self.accepting = False
        self._polling.stop()
        self._shared.stop_claiming()
        for slot in self._slots.values():
            self._cancel_timers(slot)
            # 2. drop what is queued but not started; its waiters hear why
            while len(slot.queue) > (1 if slot.task else 0):
                req = slot.queue.pop()
                for w in req.waiters:
                    if not w.done():
                        w.set_exception(ShuttingDown("syncd is stopping; the run did not start"))
        # 3. wait for the runs in flight: each finishes or rolls back in its transaction
        running = [s.task for s in self._slots.values() if s.task is not None]
        running += list(self._shared.held.values())
        if not running:
            await self.coordinator.stop()
            return True
        _done, pending = await asyncio.wait(running, timeout=deadline)
        # Shared mode: what was queued stays in the database for the other replicas; closing
        # this replica's session frees the workspaces it held.
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
    ) -> Ticket:
        """Queue a sync; with replicas, recorded in the database before this returns (off
        the event loop, with a deadline: QueueFull when the database does not answer)."""
        self._admit(ws_id)
        if self.shared:
            return await self._shared.submit(ws_id, trigger, revision, dry_run, head)
        return self._request_here(ws_id, trigger, revision, dry_run, head)

    def _admit(self, ws_id: str) -> None:
        """ShuttingDown while stopping, NotFound for a workspace the config does not name."""
        if not self.accepting:
            raise ShuttingDown("syncd is stopping and takes no new runs")
        self.config().workspace(ws_id)

    def _request_here(
        self, ws_id: str, trigger: Trigger, revision: str | None, dry_run: bool, head: str | None
    ) -> Ticket:
        """Queue a sync in this process's memory (one process, no replicas)."""
        slot = self.slot(ws_id)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        new = Request(trigger, revision, dry_run, head)
        # The entry at the head of the queue is the run in flight: never merge into it.
        waiting = list(slot.queue)[1:] if slot.task else list(slot.queue)
        for req in reversed(waiting):
            if req.absorbs(new):
                if trigger is Trigger.MANUAL:
                    req.trigger = Trigger.MANUAL  # a manual request applies, even if merged
                req.head = None if req.head != head else head
                req.waiters.append(future)
                return Ticket(ws_id, req.run_id, True, future)
        if len(waiting) >= MAX_QUEUED_PER_WORKSPACE or self.queued() >= self.max_queued:
            raise QueueFull(f"too many sync requests are waiting (workspace {ws_id})")
        new.waiters.append(future)
        slot.queue.append(new)
        if slot.task is None:
            slot.task = asyncio.create_task(self._work(ws_id, slot), name=f"sync {ws_id}")
        return Ticket(ws_id, new.run_id, False, future)

    async def note_outside_edit(self, ws_id: str) -> None:
        """An edit outside git: reconcile after a quiet moment (debounced, like self-heal)."""
        if self.shared:
            # A request row due after the quiet moment: any replica heals it, even if this one
            # is gone by then.
            try:
                await self._shared.submit(
                    ws_id, Trigger.DRIFT, None, False, None, delay=self.drift_debounce
                )
            except (QueueFull, ShuttingDown, NotFound) as e:
                log.info(
                    "request dropped", extra=fields(workspace=ws_id, trigger="drift", reason=str(e))
                )
            return
        slot = self.slot(ws_id)
        if slot.drift_timer is not None:
            slot.drift_timer.cancel()
        loop = asyncio.get_running_loop()
        slot.drift_timer = loop.call_later(
            self.drift_debounce, self.request_quietly, ws_id, Trigger.DRIFT
        )

    def queued(self) -> int:
        return sum(len(s.queue) for s in self._slots.values())

    def busy(self) -> list[str]:
        if self.shared:
            return sorted(self._shared.held)
        return [ws_id for ws_id, s in self._slots.items() if s.task is not None]

    def slot(self, ws_id: str) -> Slot:
        """The workspace's slot, made on first use."""
        return self._slots.setdefault(ws_id, Slot())

    # -- running -----------------------------------------------------------------------------

    async def _work(self, ws_id: str, slot: Slot) -> None:
        try:
            while slot.queue:
                req = slot.queue[0]
                try:
                    outcome = await self.run_one(ws_id, req)
                except Exception as e:  # a waiter must always hear how its run ended
                    slot.queue.popleft()
                    for w in req.waiters:
                        if not w.done():
                            w.set_exception(e)
                    if not isinstance(e, ShuttingDown):
                        log.exception("sync crashed", extra=fields(workspace=ws_id, run=req.run_id))
                        # Nothing was recorded (a locked store, say), so nothing else will
                        # ask again: retried as a transient failure is.
                        self._retry_later(ws_id, slot, req)
                    continue
                slot.queue.popleft()
                for w in req.waiters:
                    if not w.done():
                        w.set_result(outcome)
                self.after_run(ws_id, slot, req, outcome)
        finally:
            slot.task = None

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
            outcome = await asyncio.to_thread(
                self.engine.sync,
                ws,
                req.trigger,
                req.revision,
                req.dry_run,
                None,
                req.run_id,
                req.head,
                req.take_over,
            )
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

    def after_run(self, ws_id: str, slot: Slot, req: Request, outcome: Outcome) -> None:
        """Schedule a retry after a transient failure; forget failures after a success."""
        if outcome.run.result is not RunResult.FAILED:
            slot.failures = 0
            return
        if outcome.state.failed_revision is not None:
            return  # permanent: it waits for a new commit
        self._retry_later(ws_id, slot, req)

    def _retry_later(self, ws_id: str, slot: Slot, req: Request) -> None:
        if req.dry_run or req.revision:
            return  # a one-off request: nothing to retry
        slot.failures += 1
        delay = retry.RUN.delay(slot.failures, self.rng)
        if slot.retry is not None:
            slot.retry.cancel()
        loop = asyncio.get_running_loop()
        trigger = Trigger.POLL if req.trigger is Trigger.STARTUP else req.trigger
        if trigger is Trigger.MANUAL:
            trigger = Trigger.POLL  # a retry is not a person asking again
        slot.retry = loop.call_later(delay, self.request_quietly, ws_id, trigger)
        log.info(
            "retry scheduled",
            extra=fields(workspace=ws_id, delay_seconds=round(delay, 1), failures=slot.failures),
        )

    def request_quietly(self, ws_id: str, trigger: Trigger, head: str | None = None) -> None:
        """A request no one waits for (a timer, a poll): dropping it is logged, not raised.
        With replicas it is recorded in the background: a lost one is asked again by the
        next poll or timer."""
        if self.shared:
            task = asyncio.get_running_loop().create_task(
                self._request_logged(ws_id, trigger, head)
            )
            self._quiet.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._quiet.discard)
            return
        try:
            self._admit(ws_id)
            self._request_here(ws_id, trigger, None, False, head)
        except (QueueFull, ShuttingDown, NotFound) as e:
            self._dropped(ws_id, trigger, e)

    async def _request_logged(self, ws_id: str, trigger: Trigger, head: str | None) -> None:
        try:
            await self.request(ws_id, trigger, head=head)
        except (QueueFull, ShuttingDown, NotFound) as e:
            self._dropped(ws_id, trigger, e)

    @staticmethod
    def _dropped(ws_id: str, trigger: Trigger, e: Exception) -> None:
        log.info(
            "request dropped", extra=fields(workspace=ws_id, trigger=str(trigger), reason=str(e))
        )

    @staticmethod
    def _cancel_timers(slot: Slot) -> None:
        for timer in (slot.retry, slot.drift_timer):
            if timer is not None:
                timer.cancel()
        slot.retry = slot.drift_timer = None
