"""The shared queue: with replicas on PostgreSQL the sync requests live in the database.

A request is a row, committed before it is answered, placed by the merge rule
(`syncd.runs.merge`); a replica runs a workspace's requests only while it holds the workspace
(`syncd.runs.replicas`), and a caller waiting on a run another replica serves hears how it
ended when that replica says it finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from syncd.config import Config
from syncd.core.errors import NotFound, SyncdError
from syncd.core.model import Trigger
from syncd.ops.logs import fields
from syncd.runs.merge import MAX_QUEUED_PER_WORKSPACE
from syncd.runs.queue import Runner, dropped
from syncd.runs.replicas import Claimed, Coordinator
from syncd.runs.requests import QueueFull, Request, ShuttingDown, Ticket
from syncd.store import Store, StoreError
from syncd.store.offloop import OffLoop
from syncd.sync.engine import Outcome

# The scheduler's logger: these lines were always the scheduler's, and log filters name it.
log = logging.getLogger("syncd.scheduler")

# How often a replica looks for requests when no NOTIFY woke it (a missed one, a workspace
# freed by a replica that died), and how long it remembers a caller waiting on a run another
# replica serves.
CLAIM_EVERY = 1.0
WAITER_TTL = 600.0


class SharedQueue:
    """Requests in the database: submitting, claiming, serving, and telling the waiters."""

    def __init__(
        self,
        runner: Runner,
        coordinator: Coordinator,
        store: Store,
        config: Callable[[], Config],
        offloop: OffLoop,
        max_parallel: int,
    ) -> None:
        self.runner = runner
        self.coordinator = coordinator
        self.store = store
        self.config = config
        self.offloop = offloop
        self.max_parallel = max_parallel
        # The workspaces this replica holds, each with the task serving it; the callers
        # waiting on a run, by run id (when it was asked, and their futures).
        self.held: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, tuple[float, list[asyncio.Future[Outcome]]]] = {}
        # The event that wakes the claim loop (a NOTIFY, a request recorded here).
        self.wake = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._quiet: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.coordinator.start(self.wake.set, self._finished_elsewhere)
        self._claimer = asyncio.create_task(self._claim_loop(), name="claim requests")

    def stop(self) -> list[asyncio.Task[None]]:
        # What is queued stays in the database for the other replicas.
        if self._claimer is not None:
            self._claimer.cancel()
            self._claimer = None
        return list(self.held.values())

    def busy(self) -> list[str]:
        return sorted(self.held)

    def forget(self, known: set[str]) -> None:
        return None  # nothing is kept here per workspace but what runs

    async def submit(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        delay: float = 0.0,
        *,
        actor: str | None = None,
    ) -> Ticket:
        """Record the request durably (committed before the caller answers), or join the one
        of its kind waiting, whichever replica took it. Off the event loop, with a deadline:
        a database that does not answer is QueueFull (503) for the caller, never a wait for
        every other request."""
        if not self.runner.accepting:
            raise ShuttingDown("syncd is stopping and takes no new runs")
        try:
            submitted = await self.offloop.run(
                self.coordinator.submit,
                ws_id,
                trigger,
                revision,
                dry_run,
                head,
                uuid.uuid4().hex,
                delay,
                MAX_QUEUED_PER_WORKSPACE,
                actor,
            )
        except StoreError as e:
            raise QueueFull(f"the sync request cannot be recorded now: {e}") from e
        if submitted is None:
            raise QueueFull(f"too many sync requests are waiting (workspace {ws_id})")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        _asked, futures = self._waiters.setdefault(submitted.run_id, (time.monotonic(), []))
        futures.append(future)
        self.wake.set()
        return Ticket(ws_id, submitted.run_id, submitted.coalesced, future)

    def submit_quietly(self, ws_id: str, trigger: Trigger, head: str | None) -> None:
        """Recorded in the background: a lost one is asked again by the next poll or timer."""
        task = asyncio.get_running_loop().create_task(self._submit_logged(ws_id, trigger, head))
        self._quiet.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._quiet.discard)

    async def _submit_logged(self, ws_id: str, trigger: Trigger, head: str | None) -> None:
        try:
            self.runner.admit(ws_id)
            await self.submit(ws_id, trigger, None, False, head)
        except (QueueFull, ShuttingDown, NotFound) as e:
            dropped(ws_id, trigger, e)

    async def submit_after_quiet(self, ws_id: str, trigger: Trigger, quiet: float) -> None:
        """A request row due after the quiet moment: any replica serves it, even if this one
        is gone by then. Joined, it is due at the earlier time (the merge rule)."""
        try:
            await self.submit(ws_id, trigger, None, False, None, delay=quiet)
        except (QueueFull, ShuttingDown, NotFound) as e:
            dropped(ws_id, trigger, e)

    # -- serving -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        """Take the workspaces with requests due that no replica holds, up to this replica's
        parallelism; woken by NOTIFY, and every CLAIM_EVERY seconds regardless."""
        while self.runner.accepting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), CLAIM_EVERY)
            self.wake.clear()
            self._forget_stale_waiters()
            try:
                await self._claim_round()
            except StoreError as e:  # the database is away: the next round tries again
                log.warning("claiming requests failed", extra=fields(error=str(e)))
                await asyncio.sleep(CLAIM_EVERY)
            except Exception:  # never end the loop: this replica would stop taking work
                log.exception("claiming requests crashed")
                await asyncio.sleep(CLAIM_EVERY)

    async def _claim_round(self) -> None:
        if len(self.held) >= self.max_parallel:
            return
        known = {ws.id for ws in self.config().workspaces}
        for ws_id in await self.coordinator.pending():
            if len(self.held) >= self.max_parallel or not self.runner.accepting:
                return
            # Another config (a rolling upgrade) may name a workspace this one does not.
            if ws_id in self.held or ws_id not in known:
                continue
            if await self.coordinator.acquire(ws_id):
                self.held[ws_id] = asyncio.create_task(self._serve(ws_id), name=f"sync {ws_id}")

    async def _serve(self, ws_id: str) -> None:
        """Run the requests of a workspace this replica holds, oldest first, then let go."""
        try:
            while self.runner.accepting:
                claimed = await self.coordinator.claim(ws_id)
                if claimed is None:
                    break
                if claimed.taken_over:
                    log.info(
                        "request taken over", extra=fields(workspace=ws_id, run=claimed.run_id)
                    )
                    if await asyncio.to_thread(self.store.run, claimed.run_id) is not None:
                        # Its run was recorded before its replica went: served already.
                        await self.coordinator.finish(claimed)
                        continue
                if not await self._serve_one(ws_id, claimed):
                    break
        except StoreError as e:
            log.warning("serving requests stopped", extra=fields(workspace=ws_id, error=str(e)))
        except Exception:
            log.exception("serving requests crashed", extra=fields(workspace=ws_id))
        finally:
            del self.held[ws_id]
            await self.coordinator.release(ws_id)
            self.wake.set()  # requests may have come while this replica held it

    async def _serve_one(self, ws_id: str, claimed: Claimed) -> bool:
        """Run one claimed request; False when this replica must stop serving the workspace
        (it is stopping, or another writer took the workspace over)."""
        req = Request(
            claimed.trigger,
            claimed.revision,
            claimed.dry_run,
            claimed.head,
            claimed.run_id,
            take_over=claimed.taken_over,
            actor=claimed.actor,
        )
        try:
            outcome = await self.runner.run_one(ws_id, req)
        except ShuttingDown:
            return False  # the row stays: another replica runs it
        except Exception as e:
            log.exception("sync crashed", extra=fields(workspace=ws_id, run=req.run_id))
            await self.coordinator.finish(claimed)
            self._resolve(claimed.run_id, error=e)
            return True
        if outcome.fenced:
            # Another writer holds the workspace (it took it over from this replica, frozen or
            # cut off; or `syncd sync` kept it past the wait): the row stays, for that writer
            # or for the next holder here, and the callers hear when it is served.
            log.warning(
                "workspace held by another writer: serving stops",
                extra=fields(workspace=ws_id, run=claimed.run_id),
            )
            return False
        await self.coordinator.finish(claimed)
        self._resolve(claimed.run_id, outcome=outcome)
        self.runner.after_run(ws_id, req, outcome)
        return True

    def _resolve(
        self, run_id: str, outcome: Outcome | None = None, error: Exception | None = None
    ) -> None:
        _asked, futures = self._waiters.pop(run_id, (0.0, []))
        for w in futures:
            if w.done():
                continue
            if outcome is not None:
                w.set_result(outcome)
            else:
                w.set_exception(error or SyncdError("the run ended without an outcome"))

    def _finished_elsewhere(self, run_id: str) -> None:
        """Another replica finished a run: its callers waiting here hear how it ended."""
        if run_id in self._waiters:
            task = asyncio.get_running_loop().create_task(self._fetch_outcome(run_id))
            # Held until done: the loop keeps only a weak reference to a task.
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)

    async def _fetch_outcome(self, run_id: str) -> None:
        try:
            run = await asyncio.to_thread(self.store.run, run_id)
            if run is None:
                return  # not recorded (its replica went first): the next holder runs it
            state = await asyncio.to_thread(self.store.state, run.workspace)
        except StoreError as e:
            log.warning("reading a finished run failed", extra=fields(run=run_id, error=str(e)))
            return
        self._resolve(run_id, outcome=Outcome(run, None, state))

    def _forget_stale_waiters(self) -> None:
        now = time.monotonic()
        for run_id, (asked, futures) in list(self._waiters.items()):
            if now - asked > WAITER_TTL or all(f.done() for f in futures):
                del self._waiters[run_id]
