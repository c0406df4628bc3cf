"""Triggers become runs: coalescing per workspace, bounded parallelism, polling per remote.

Webhooks, polls, manual requests and outside edits all *request* a sync. A workspace has at
most one run in flight and, for ordinary requests, one queued: any number of requests while a
run is in flight collapse into the one queued run. This loop retries runs (`syncd.retry.RUN`):
a transient failure is retried with capped, jittered backoff; a permanent one waits for a new
commit.

With a shared coordinator (replicas on PostgreSQL) the queues live in the database instead:
a request is a row, committed before it is answered; a replica runs a workspace's requests
only while it holds the workspace, and polls a remote only on its turn (`syncd.replicas`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from syncd import retry
from syncd.config import Config, WorkspaceConfig
from syncd.engine import Engine, Outcome
from syncd.errors import GitError, NotFound, SyncdError
from syncd.git import remote_key
from syncd.health import HealthKeeper
from syncd.logs import fields
from syncd.model import Mode, RunResult, Status, SyncState, Trigger, automation_suspended
from syncd.refs import short_branch
from syncd.replicas import Claimed, Coordinator, LocalCoordinator
from syncd.store import Store, StoreError
from syncd.urls import redact_url

log = logging.getLogger("syncd.scheduler")

# A workspace's queue holds ordinary requests in one entry; pinned revisions and dry runs
# that differ from each other need entries of their own, up to this many.
MAX_QUEUED_PER_WORKSPACE = 4
# Shared mode: how often a replica looks for requests when no NOTIFY woke it (a missed one,
# a workspace freed by a replica that died), and how long it remembers a caller waiting on a
# run another replica serves.
CLAIM_EVERY = 1.0
WAITER_TTL = 600.0


class QueueFull(SyncdError):
    """Too many requests are waiting: try again later (HTTP 503 with Retry-After)."""


class ShuttingDown(SyncdError):
    """syncd is stopping and takes no new runs."""


@dataclass
class Request:
    trigger: Trigger
    revision: str | None = None
    dry_run: bool = False
    head: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    waiters: list[asyncio.Future[Outcome]] = field(default_factory=list)

    @property
    def ordinary(self) -> bool:
        return self.revision is None and not self.dry_run

    def absorbs(self, other: Request) -> bool:
        return (self.revision, self.dry_run) == (other.revision, other.dry_run)


@dataclass(frozen=True)
class Ticket:
    workspace: str
    run_id: str
    coalesced: bool
    future: asyncio.Future[Outcome]


@dataclass
class _Slot:
    queue: deque[Request] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    failures: int = 0
    retry: asyncio.TimerHandle | None = None
    drift_timer: asyncio.TimerHandle | None = None


def should_sync(mode: Mode, state: SyncState, head: str | None) -> bool:
    """The poll decision: has the branch moved, or is an automatic workspace still behind?"""
    if head is None:
        return False  # the branch is gone: nothing to apply; the next push will tell
    if head != state.last_seen_revision:
        return True
    if head == state.failed_revision:
        return False  # a bad commit waits for a new one instead of failing again and again
    if state.status is Status.UNKNOWN:
        return True
    if automation_suspended(mode, state):
        return False  # suspended or pinned: the poll records nothing new, applies nothing
    return mode is Mode.AUTOMATIC and state.status is Status.OUT_OF_SYNC


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
        # The startup comparison's ls-remotes and fetches, apart from the runs' slots, so
        # that fetching the next remotes overlaps the first remotes' runs.
        self._prefetch = asyncio.Semaphore(max_parallel)
        self._startup: asyncio.Task[None] | None = None
        self._slots: dict[str, _Slot] = {}
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self.accepting = False
        # The poll groups of the config they were computed from: each poll loop asks for them
        # twice a cycle, and a reload swaps the config object whole.
        self._groups: tuple[Config, dict[str, list[WorkspaceConfig]]] | None = None
        # Shared mode: the workspaces this replica holds, each with the task serving it; the
        # callers waiting on a run, by run id (when it was asked, and their futures).
        self._held: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, tuple[float, list[asyncio.Future[Outcome]]]] = {}
        self._wake = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        return self.coordinator.shared

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, startup_sync: bool = True) -> None:
        self.accepting = True
        if self.shared:
            await self.coordinator.start(self._wake.set, self._finished_elsewhere)
            self._claimer = asyncio.create_task(self._claim_loop(), name="claim requests")
        self.reconfigure()
        if startup_sync:
            self._startup = asyncio.create_task(self._startup_comparison(), name="startup")

    async def _startup_comparison(self) -> None:
        """Request a startup sync of every workspace, remote by remote as polling does: one
        ls-remote and one fetch per remote (per branch followed), then each workspace of it
        is planned from the shared mirror with the head it was told (no ls-remote of its
        own). Remotes are taken `max_parallel` at a time; a remote's workspaces are requested
        as soon as its mirror is fetched, so their runs overlap the next remotes' fetches."""
        groups: dict[str, list[WorkspaceConfig]] = {}
        for ws in self.config().workspaces:
            groups.setdefault(remote_key(ws.source.url, ws.source.username), []).append(ws)
        await asyncio.gather(*(self._start_remote(group) for group in groups.values()))

    async def _start_remote(self, group: list[WorkspaceConfig]) -> None:
        heads: dict[str, str] = {}
        async with self._prefetch:
            if not self.accepting:
                return
            try:
                heads = await asyncio.to_thread(self.engine.branch_heads, group[0])
                for branch in dict.fromkeys(ws.source.branch for ws in group):
                    ws = next(w for w in group if w.source.branch == branch)
                    if (head := heads.get(short_branch(branch))) is not None:
                        await asyncio.to_thread(self.engine.prefetch, ws, head)
            except SyncdError as e:
                # Each workspace's own run will try again and record the failure as before.
                log.warning(
                    "startup fetch failed",
                    extra=fields(remote=redact_url(group[0].source.url), error=str(e)),
                )
            except Exception:
                # Not the remote's fault (a full disk): the runs meet it too and record it;
                # an exception out of here would leave every other remote's workspaces out.
                log.exception(
                    "startup fetch crashed", extra=fields(remote=redact_url(group[0].source.url))
                )
        for ws in group:
            # A branch the remote lacks: the run resolves it itself and says so.
            self._request_quietly(ws.id, Trigger.STARTUP, heads.get(short_branch(ws.source.branch)))

    def reconfigure(self) -> None:
        """Align pollers with the current config; runs in flight finish untouched."""
        wanted = self._remotes()
        for key, task in list(self._pollers.items()):
            task.cancel()
            del self._pollers[key]
        if not self.accepting:
            return
        for key in wanted:
            self._pollers[key] = asyncio.create_task(self._poll_loop(key), name=f"poll {key}")
        known = {ws.id for ws in self.config().workspaces}
        for ws_id, slot in list(self._slots.items()):
            if ws_id not in known and slot.task is None:
                self._cancel_timers(slot)
                del self._slots[ws_id]

    async def stop(self, deadline: float = 8.0) -> bool:
        """Stop taking runs and wait for those in flight; True when all finished in time."""
        # 1. stop accepting: new requests raise ShuttingDown, timers and pollers end
        self.accepting = False
        if self._startup is not None:
            self._startup.cancel()
        for task in self._pollers.values():
            task.cancel()
        self._pollers.clear()
        if self._claimer is not None:
            self._claimer.cancel()
            self._claimer = None
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
        running += list(self._held.values())
        if not running:
            await self.coordinator.stop()
            return True
        _done, pending = await asyncio.wait(running, timeout=deadline)
        # Shared mode: what was queued stays in the database for the other replicas; closing
        # this replica's session frees the workspaces it held.
        await self.coordinator.stop()
        return not pending

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None = None,
        dry_run: bool = False,
        head: str | None = None,
    ) -> Ticket:
        if not self.accepting:
            raise ShuttingDown("syncd is stopping and takes no new runs")
        self.config().workspace(ws_id)  # NotFound for an unknown workspace
        if self.shared:
            return self._submit(ws_id, trigger, revision, dry_run, head)
        slot = self._slots.setdefault(ws_id, _Slot())
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

    def note_outside_edit(self, ws_id: str) -> None:
        """An edit outside git: reconcile after a quiet moment (debounced, like self-heal)."""
        if self.shared:
            # A request row due after the quiet moment: any replica heals it, even if this one
            # is gone by then.
            try:
                self._submit(ws_id, Trigger.DRIFT, None, False, None, delay=self.drift_debounce)
            except (QueueFull, ShuttingDown, NotFound) as e:
                log.info(
                    "request dropped", extra=fields(workspace=ws_id, trigger="drift", reason=str(e))
                )
            return
        slot = self._slots.setdefault(ws_id, _Slot())
        if slot.drift_timer is not None:
            slot.drift_timer.cancel()
        loop = asyncio.get_running_loop()
        slot.drift_timer = loop.call_later(
            self.drift_debounce, self._request_quietly, ws_id, Trigger.DRIFT
        )

    def queued(self) -> int:
        return sum(len(s.queue) for s in self._slots.values())

    def busy(self) -> list[str]:
        if self.shared:
            return sorted(self._held)
        return [ws_id for ws_id, s in self._slots.items() if s.task is not None]

    # -- shared mode: requests in the database -----------------------------------------------

    def _submit(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        delay: float = 0.0,
    ) -> Ticket:
        """Record the request durably (committed before the caller answers), or join the one
        of its kind waiting, whichever replica took it."""
        if not self.accepting:
            raise ShuttingDown("syncd is stopping and takes no new runs")
        try:
            submitted = self.coordinator.submit(
                ws_id,
                trigger,
                revision,
                dry_run,
                head,
                uuid.uuid4().hex,
                delay,
                MAX_QUEUED_PER_WORKSPACE,
            )
        except StoreError as e:
            raise QueueFull(f"the sync request cannot be recorded now: {e}") from e
        if submitted is None:
            raise QueueFull(f"too many sync requests are waiting (workspace {ws_id})")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        _asked, futures = self._waiters.setdefault(submitted.run_id, (time.monotonic(), []))
        futures.append(future)
        self._wake.set()
        return Ticket(ws_id, submitted.run_id, submitted.coalesced, future)

    async def _claim_loop(self) -> None:
        """Take the workspaces with requests due that no replica holds, up to this replica's
        parallelism; woken by NOTIFY, and every CLAIM_EVERY seconds regardless."""
        while self.accepting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CLAIM_EVERY)
            self._wake.clear()
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
        if len(self._held) >= self.max_parallel:
            return
        known = {ws.id for ws in self.config().workspaces}
        for ws_id in await self.coordinator.pending():
            if len(self._held) >= self.max_parallel or not self.accepting:
                return
            # Another config (a rolling upgrade) may name a workspace this one does not.
            if ws_id in self._held or ws_id not in known:
                continue
            if await self.coordinator.acquire(ws_id):
                self._held[ws_id] = asyncio.create_task(self._serve(ws_id), name=f"sync {ws_id}")

    async def _serve(self, ws_id: str) -> None:
        """Run the requests of a workspace this replica holds, oldest first, then let go."""
        slot = self._slots.setdefault(ws_id, _Slot())
        try:
            while self.accepting:
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
                await self._serve_one(ws_id, slot, claimed)
        except StoreError as e:
            log.warning("serving requests stopped", extra=fields(workspace=ws_id, error=str(e)))
        except Exception:
            log.exception("serving requests crashed", extra=fields(workspace=ws_id))
        finally:
            del self._held[ws_id]
            await self.coordinator.release(ws_id)
            self._wake.set()  # requests may have come while this replica held it

    async def _serve_one(self, ws_id: str, slot: _Slot, claimed: Claimed) -> None:
        req = Request(
            claimed.trigger, claimed.revision, claimed.dry_run, claimed.head, claimed.run_id
        )
        try:
            outcome = await self._run(ws_id, req)
        except ShuttingDown:
            return  # the row stays: another replica runs it
        except Exception as e:
            log.exception("sync crashed", extra=fields(workspace=ws_id, run=req.run_id))
            await self.coordinator.finish(claimed)
            self._resolve(claimed.run_id, error=e)
            return
        await self.coordinator.finish(claimed)
        self._resolve(claimed.run_id, outcome=outcome)
        self._after(ws_id, slot, req, outcome)

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

    # -- running -----------------------------------------------------------------------------

    async def _work(self, ws_id: str, slot: _Slot) -> None:
        try:
            while slot.queue:
                req = slot.queue[0]
                try:
                    outcome = await self._run(ws_id, req)
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
                self._after(ws_id, slot, req, outcome)
        finally:
            slot.task = None

    async def _run(self, ws_id: str, req: Request) -> Outcome:
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

    def _after(self, ws_id: str, slot: _Slot, req: Request, outcome: Outcome) -> None:
        """Schedule a retry after a transient failure; forget failures after a success."""
        if outcome.run.result is not RunResult.FAILED:
            slot.failures = 0
            return
        if outcome.state.failed_revision is not None:
            return  # permanent: it waits for a new commit
        self._retry_later(ws_id, slot, req)

    def _retry_later(self, ws_id: str, slot: _Slot, req: Request) -> None:
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
        slot.retry = loop.call_later(delay, self._request_quietly, ws_id, trigger)
        log.info(
            "retry scheduled",
            extra=fields(workspace=ws_id, delay_seconds=round(delay, 1), failures=slot.failures),
        )

    def _request_quietly(self, ws_id: str, trigger: Trigger, head: str | None = None) -> None:
        """A request no one waits for (a timer, a poll): dropping it is logged, not raised."""
        try:
            self.request(ws_id, trigger, head=head)
        except (QueueFull, ShuttingDown, NotFound) as e:
            log.info(
                "request dropped",
                extra=fields(workspace=ws_id, trigger=str(trigger), reason=str(e)),
            )

    @staticmethod
    def _cancel_timers(slot: _Slot) -> None:
        for timer in (slot.retry, slot.drift_timer):
            if timer is not None:
                timer.cancel()
        slot.retry = slot.drift_timer = None

    # -- polling -----------------------------------------------------------------------------

    def _remotes(self) -> dict[str, list[WorkspaceConfig]]:
        """Polled workspaces grouped by remote: one ls-remote a cycle serves them all."""
        config = self.config()
        if self._groups is not None and self._groups[0] is config:
            return self._groups[1]
        groups: dict[str, list[WorkspaceConfig]] = {}
        for ws in config.workspaces:
            if ws.poll_interval > 0:
                key = remote_key(ws.source.url, ws.source.username)
                groups.setdefault(key, []).append(ws)
        self._groups = (config, groups)
        return groups

    async def _poll_loop(self, key: str) -> None:
        failures = 0
        while self.accepting:
            group = self._remotes().get(key)
            if not group:
                return
            interval = min(ws.poll_interval for ws in group)
            if failures:
                interval = replace(retry.POLL, base=interval).delay(failures, self.rng)
            else:
                interval *= 0.9 + self.rng() * 0.2  # jitter spreads remotes' polls apart
            await asyncio.sleep(interval)
            if self.shared:
                try:
                    if not await self.coordinator.poll_turn(
                        key, min(ws.poll_interval for ws in group)
                    ):
                        continue  # another replica polls this remote this cycle
                except StoreError as e:
                    log.warning(
                        "poll turn unknown", extra=fields(remote=key.split("|")[0], error=str(e))
                    )
                    continue
            try:
                heads = await asyncio.to_thread(self.engine.branch_heads, group[0])
            except GitError as e:
                failures += 1
                log.warning(
                    "poll failed",
                    extra=fields(remote=key.split("|")[0], failures=failures, error=str(e)),
                )
                await asyncio.to_thread(self._source_failed, self._remotes().get(key, []), e)
                continue
            except Exception:
                # Not the remote's fault (a full disk, the store): this cycle is lost, the
                # remote's polling is not; an exception out of here would end it for good.
                failures += 1
                log.exception(
                    "poll crashed", extra=fields(remote=key.split("|")[0], failures=failures)
                )
                continue
            failures = 0
            try:
                await self._request_moved(key, heads)
            except Exception:
                log.exception("poll crashed", extra=fields(remote=key.split("|")[0]))

    async def _request_moved(self, key: str, heads: dict[str, str]) -> None:
        """Request a sync of each workspace on the remote whose branch calls for one."""
        for ws in self._remotes().get(key, []):
            head = heads.get(ws.source.branch)
            state = await asyncio.to_thread(self.store.state, ws.id)
            if should_sync(ws.mode, state, head) or await self._source_back(ws.id):
                self._request_quietly(ws.id, Trigger.POLL, head)

    def _source_failed(self, group: list[WorkspaceConfig], error: GitError) -> None:
        """Each workspace of a remote that cannot be read: its first failure is recorded as a
        failed run (so the digest names it), the later ones only counted."""
        if self.health is None:
            return
        for ws in group:
            try:
                if self.health.source_failed(ws.id, str(error)):
                    self.engine.record_source_failure(ws, Trigger.POLL, error)
            except Exception:  # a store error: the next poll tries again
                log.exception("recording a source failure failed", extra=fields(workspace=ws.id))

    async def _source_back(self, ws_id: str) -> bool:
        """A source that failed answers again: a sync ends the failure (and the digest tells
        of the recovery), even when the branch has not moved."""
        if self.health is None:
            return False
        return await asyncio.to_thread(self.health.source_failing, ws_id)
