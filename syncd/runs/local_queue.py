"""The in-process queue: one process (SQLite) keeps its sync requests in memory.

A workspace has a lane: its requests, oldest first, whose head is the run in flight, and the
task that works through them. A new request joins a waiting one by the merge rule
(`syncd.runs.merge`); the lane's worker runs them one at a time through the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from syncd.core.errors import NotFound
from syncd.core.model import Trigger
from syncd.ops.logs import fields
from syncd.runs.merge import FULL, Join, Terms, merge
from syncd.runs.queue import Runner, dropped
from syncd.runs.requests import QueueFull, Request, ShuttingDown, Ticket
from syncd.sync.engine import Outcome

# The scheduler's logger: these lines were always the scheduler's, and log filters name it.
log = logging.getLogger("syncd.scheduler")


@dataclass
class Lane:
    """A workspace's requests (the head is the run in flight while `task` runs), its worker,
    and the timer of a request waiting for a quiet moment."""

    queue: deque[Request] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    quiet_timer: asyncio.TimerHandle | None = None

    def waiting(self) -> list[Request]:
        """The requests not started: the head is in flight while the worker runs."""
        return list(self.queue)[1:] if self.task else list(self.queue)


class LocalQueue:
    """Requests in this process's memory, bounded per workspace (`merge`'s `FULL`).

    Lanes are made only for configured workspaces (`Runner.admit`), so the whole is bounded by
    the config, as the shared queue's is. There is no cap over all workspaces: with one, a cold
    start of more workspaces than the cap dropped the startup syncs of the rest, and a webhook
    (or a poll) that concerns thousands of workspaces dropped most of them."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._lanes: dict[str, Lane] = {}

    async def start(self) -> None:
        return None

    async def submit(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        *,
        actor: str | None = None,
    ) -> Ticket:
        return self._put(ws_id, trigger, revision, dry_run, head, actor)

    def submit_quietly(self, ws_id: str, trigger: Trigger, head: str | None) -> None:
        try:
            self.runner.admit(ws_id)
            self._put(ws_id, trigger, None, False, head)
        except (QueueFull, ShuttingDown, NotFound) as e:
            dropped(ws_id, trigger, e)

    async def submit_after_quiet(self, ws_id: str, trigger: Trigger, quiet: float) -> None:
        """Debounced: each call puts the request off until `quiet` seconds after it."""
        lane = self._lane(ws_id)
        if lane.quiet_timer is not None:
            lane.quiet_timer.cancel()
        loop = asyncio.get_running_loop()
        lane.quiet_timer = loop.call_later(quiet, self.submit_quietly, ws_id, trigger, None)

    def stop(self) -> list[asyncio.Task[None]]:
        for lane in self._lanes.values():
            self._cancel_timer(lane)
            # What is queued but not started is dropped; its waiters hear why.
            while len(lane.queue) > (1 if lane.task else 0):
                req = lane.queue.pop()
                for w in req.waiters:
                    if not w.done():
                        w.set_exception(ShuttingDown("syncd is stopping; the run did not start"))
        return [lane.task for lane in self._lanes.values() if lane.task is not None]

    def busy(self) -> list[str]:
        return [ws_id for ws_id, lane in self._lanes.items() if lane.task is not None]

    def forget(self, known: set[str]) -> None:
        # A lane whose worker runs stays: its worker works through it to the end.
        for ws_id, lane in list(self._lanes.items()):
            if ws_id not in known and lane.task is None:
                self._cancel_timer(lane)
                del self._lanes[ws_id]

    # -- inside ------------------------------------------------------------------------------

    def _lane(self, ws_id: str) -> Lane:
        """The workspace's lane, made on first use."""
        return self._lanes.setdefault(ws_id, Lane())

    def _put(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        actor: str | None = None,
    ) -> Ticket:
        lane = self._lane(ws_id)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        waiting = lane.waiting()
        new_terms = Terms(trigger, revision, dry_run, head, actor)
        placed = merge([r.terms for r in waiting], new_terms)
        if isinstance(placed, Join):
            req = waiting[placed.index]
            req.trigger, req.head = placed.terms.trigger, placed.terms.head
            req.actor = placed.terms.actor
            req.waiters.append(future)
            return Ticket(ws_id, req.run_id, True, future)
        if placed == FULL:
            raise QueueFull(f"too many sync requests are waiting (workspace {ws_id})")
        new = Request(trigger, revision, dry_run, head, actor=actor)
        new.waiters.append(future)
        lane.queue.append(new)
        if lane.task is None:
            lane.task = asyncio.create_task(self._work(ws_id, lane), name=f"sync {ws_id}")
        return Ticket(ws_id, new.run_id, False, future)

    async def _work(self, ws_id: str, lane: Lane) -> None:
        try:
            while lane.queue:
                req = lane.queue[0]
                try:
                    outcome = await self.runner.run_one(ws_id, req)
                except Exception as e:  # a waiter must always hear how its run ended
                    lane.queue.popleft()
                    for w in req.waiters:
                        if not w.done():
                            w.set_exception(e)
                    if not isinstance(e, ShuttingDown):
                        log.exception("sync crashed", extra=fields(workspace=ws_id, run=req.run_id))
                        # Nothing was recorded (a locked store, say), so nothing else will
                        # ask again: retried as a transient failure is.
                        self.runner.after_crash(ws_id, req)
                    continue
                lane.queue.popleft()
                for w in req.waiters:
                    if not w.done():
                        w.set_result(outcome)
                self.runner.after_run(ws_id, req, outcome)
        finally:
            lane.task = None

    @staticmethod
    def _cancel_timer(lane: Lane) -> None:
        if lane.quiet_timer is not None:
            lane.quiet_timer.cancel()
        lane.quiet_timer = None
