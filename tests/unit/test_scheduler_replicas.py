"""The scheduler with a shared coordinator: two replicas over one in-memory "database" of
requests and holders (the PostgreSQL coordinator's semantics, without the server), the real
engine over the stateful fakes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from syncd.core.model import Run, Trigger
from syncd.runs.merge import FULL, Join, Terms, merge
from syncd.runs.replicas import Claimed, ReplicaInfo, Submitted
from syncd.runs.requests import QueueFull
from syncd.runs.scheduler import Scheduler
from syncd.runs.shared_queue import SharedQueue
from syncd.store import StoreError
from syncd.sync.engine import Engine
from tests.support.fakes import FakeStore, GatedGit, config, step_files, workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Row:
    id: int
    ws: str
    trigger: Trigger
    revision: str | None
    dry_run: bool
    run_id: str
    claimed_by: str | None = None
    actor: str | None = None


@dataclass
class Database:
    """What the replicas share: request rows, each workspace's holder, the poll turns."""

    rows: list[Row] = field(default_factory=list)
    holders: dict[str, str] = field(default_factory=dict)
    polls: dict[str, str] = field(default_factory=dict)
    down: bool = False
    ids: int = 0
    wakers: list[Callable[[], object]] = field(default_factory=list)
    finishers: list[Callable[[str], None]] = field(default_factory=list)


@dataclass
class FakeCoordinator:
    db: Database
    replica_id: str
    shared: bool = True

    async def start(self, wake: Callable[[], None], finished: Callable[[str], None]) -> None:
        # Like a NOTIFY, heard on the replica's loop: `submit` runs on a store thread.
        loop = asyncio.get_running_loop()
        self.db.wakers.append(lambda: loop.call_soon_threadsafe(wake))
        self.db.finishers.append(finished)

    async def stop(self) -> None:
        self.die()

    def die(self) -> None:
        """The session ends: every workspace it held is free."""
        for ws, holder in list(self.db.holders.items()):
            if holder == self.replica_id:
                del self.db.holders[ws]

    def submit(
        self,
        ws: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        run_id: str,
        delay: float = 0.0,
        max_waiting: int = 4,
        actor: str | None = None,
    ) -> Submitted | None:
        if self.db.down:
            raise StoreError("store db: the database did not answer just now")
        # The one merge rule, as the PostgreSQL coordinator follows it (heads not kept here).
        waiting = [r for r in self.db.rows if r.ws == ws and r.claimed_by is None]
        terms = [Terms(r.trigger, r.revision, r.dry_run, None, r.actor) for r in waiting]
        placed = merge(terms, Terms(trigger, revision, dry_run, None, actor), max_waiting)
        if isinstance(placed, Join):
            joined = waiting[placed.index]
            joined.trigger, joined.actor = placed.terms.trigger, placed.terms.actor
            return Submitted(joined.run_id, True)
        if placed == FULL:
            return None
        self.db.ids += 1
        self.db.rows.append(Row(self.db.ids, ws, trigger, revision, dry_run, run_id, None, actor))
        for wake in self.db.wakers:
            wake()
        return Submitted(run_id, False)

    async def pending(self) -> list[str]:
        return list(dict.fromkeys(r.ws for r in self.db.rows))

    async def acquire(self, ws: str) -> bool:
        if ws in self.db.holders:
            return False
        self.db.holders[ws] = self.replica_id
        return True

    async def release(self, ws: str) -> None:
        if self.db.holders.get(ws) == self.replica_id:
            del self.db.holders[ws]

    async def claim(self, ws: str) -> Claimed | None:
        assert self.db.holders.get(ws) == self.replica_id, "claim without holding"
        for r in self.db.rows:
            if r.ws == ws:
                before, r.claimed_by = r.claimed_by, self.replica_id
                taken = before is not None
                return Claimed(
                    r.id, ws, r.trigger, r.revision, r.dry_run, None, r.run_id, taken, r.actor
                )
        return None

    async def finish(self, claimed: Claimed) -> None:
        self.db.rows = [r for r in self.db.rows if r.id != claimed.id]
        for finished in self.db.finishers:
            finished(claimed.run_id)

    async def poll_turn(self, remote: str, interval: float) -> bool:
        return self.db.polls.setdefault(remote, self.replica_id) == self.replica_id

    def held(self) -> list[str]:
        return sorted(ws for ws, h in self.db.holders.items() if h == self.replica_id)

    async def replicas(self) -> list[ReplicaInfo]:
        return []

    def alive(self) -> int:
        return 1

    def problem(self) -> str | None:
        return "down" if self.db.down else None


@dataclass
class World:
    store: FakeStore
    git: GatedGit
    db: Database
    replicas: list[Scheduler]
    coordinators: list[FakeCoordinator]

    def runs(self, ws: str) -> list[Run]:
        return [r for r in self.store.runs_finished_since(0, math.inf) if r.workspace == ws]


def world(*ids: str, count: int = 2, parallel: int = 4, poll: float = 0.0) -> World:
    store, git, db = FakeStore(), GatedGit(), Database()
    git.commit(step_files({"greet": "hello()"}))
    cfg = config(*(workspace(i, poll_interval=poll) for i in ids))
    coordinators = [FakeCoordinator(db, f"r{k}") for k in range(count)]
    replicas = [
        Scheduler(
            Engine(store, git),
            store,
            config=lambda: cfg,
            max_parallel=parallel,
            rng=lambda: 0.5,
            coordinator=c,
        )
        for c in coordinators
    ]
    return World(store, git, db, replicas, coordinators)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_requests_to_either_replica_coalesce_and_run_once_at_a_time() -> None:
    w = world("a")
    a, b = w.replicas
    for s in w.replicas:
        await s.start(startup_sync=False)
    first = await a.request("a", Trigger.WEBHOOK)
    await until(lambda: w.git.active == 1)
    tickets = [(await s.request("a", Trigger.WEBHOOK)) for s in (a, b) * 20]
    assert all(t.coalesced for t in tickets[1:]) and not tickets[0].coalesced
    assert len({t.run_id for t in tickets}) == 1
    w.git.gate.set()
    # Each caller hears how its run ended, whichever replica ran it.
    done = await asyncio.wait_for(asyncio.gather(first.future, *(t.future for t in tickets)), 5)
    assert {o.run.id for o in done} == {first.run_id, tickets[0].run_id}
    assert [r.id for r in w.runs("a")] == [first.run_id, tickets[0].run_id]
    assert w.git.peak == 1
    await until(lambda: not w.db.rows and not w.db.holders)
    for s in w.replicas:
        await s.stop()


async def test_workspaces_spread_over_replicas_up_to_their_parallelism() -> None:
    w = world("a", "b", "c", "d", parallel=2)
    for s in w.replicas:
        await s.start(startup_sync=False)
    for ws in ("a", "b", "c", "d"):
        (await w.replicas[0].request(ws, Trigger.WEBHOOK))
    await until(lambda: w.git.active == 4)
    assert sorted(w.db.holders.values()) == ["r0", "r0", "r1", "r1"]
    assert len(w.replicas[0].busy()) == 2 and len(w.replicas[1].busy()) == 2
    w.git.gate.set()
    await until(lambda: all(len(w.runs(ws)) == 1 for ws in "abcd"))
    for s in w.replicas:
        await s.stop()


async def test_a_dead_replicas_workspace_is_taken_over_and_its_request_run() -> None:
    w = world("a")
    a, b = w.replicas
    await b.start(startup_sync=False)
    # Replica r0 claimed the request, then died before recording a run.
    ticket = await b.request("a", Trigger.MANUAL)
    w.db.holders.pop("a", None)
    w.db.rows[0].claimed_by = "r0-gone"
    w.git.gate.set()
    assert isinstance(b.queue, SharedQueue)
    b.queue.wake.set()
    outcome = await asyncio.wait_for(ticket.future, 5)
    assert outcome.run.id == ticket.run_id
    assert [r.id for r in w.runs("a")] == [ticket.run_id]
    await b.stop()
    assert a.busy() == []


async def test_a_request_that_cannot_be_recorded_is_refused() -> None:
    w = world("a")
    s = w.replicas[0]
    await s.start(startup_sync=False)
    w.db.down = True
    with pytest.raises(QueueFull, match="cannot be recorded"):
        (await s.request("a", Trigger.WEBHOOK))
    w.db.down = False
    # Pinned requests that differ queue up to the bound of waiting ones (a claimed one, held
    # at the git gate, is in flight and not waiting).
    with pytest.raises(QueueFull, match="too many"):
        for rev in ("a1", "a2", "a3", "a4", "a5", "a6"):
            await s.request("a", Trigger.MANUAL, revision=rev)
    assert len([r for r in w.db.rows if r.claimed_by is None]) == 4
    w.git.gate.set()
    await s.stop()


async def test_an_outside_edit_becomes_a_request_any_replica_runs() -> None:
    w = world("a")
    a, b = w.replicas
    await b.start(startup_sync=False)
    a.accepting = True  # took the edit, never ran anything
    (await a.note_outside_edit("a"))
    assert [r.trigger for r in w.db.rows] == [Trigger.DRIFT]
    w.git.gate.set()
    await until(lambda: [r.trigger for r in w.runs("a")] == [Trigger.DRIFT])
    await b.stop()


async def test_only_the_replica_whose_turn_it_is_polls() -> None:
    w = world("a", poll=0.05)
    w.git.gate.set()
    for s in w.replicas:
        await s.start(startup_sync=False)
    w.git.commit(step_files({"greet": "bye()"}))
    await until(lambda: len(w.runs("a")) >= 1)
    assert set(w.db.polls.values()) == {"r0"}
    for s in w.replicas:
        await s.stop()
