"""Writers that interleave on one workspace never move it back, nor leave it unlike git: a
hypothesis state machine over FakeStore, SQLite (a file) and PostgreSQL (a fresh database).

Three writers (two of them runs of one process, so one holder; the third another process)
follow the engine's protocol over ONE store: take the workspace's lease, resolve the branch head
in a model git (commits c0..cN on one branch, each with other steps), plan against what the
store holds (its applied revision, live steps and drift), and apply with the lease, or record
a failed run with it. Between any two of those steps the machine may push a commit, let the
holder's lease expire, have another writer take the workspace over (as a replica does that saw
the holder's session end), release a lease, renew one, or edit a step outside git. So writers
go stale: they hold a plan made at an older head, or a lease that is no longer the workspace's,
and write late.

After every step: the applied revision's place in the branch never goes back (there are no pins
here), and the live steps are exactly the applied commit's steps but for the outside edits that
no apply has covered since (the drifted steps). Each take, renewal, apply and record has the
outcome the lease's row predicts (Fenced exactly when the writer's lease is no longer the live
one, or its run is recorded).

Three interleavings a missing fence would let through are also replayed step by step on each
store. Bounded by default (80 to 200 interleavings of up to 100 steps per store: some 7,000 to
17,000 steps each, under a minute in all); `SYNCD_RELIABILITY=full` runs ten times as many.
Where no PostgreSQL server answers, its cases skip with one line.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from syncd.core.model import Plan, Run, RunResult, Status, Step, StepContent, SyncState, Trigger
from syncd.core.plan import compute_plan
from syncd.store import ApplyBase, ApplyConflict, Fenced, IndexUpdate, Lease, SqliteStore, Store
from tests.support import postgres
from tests.support.fakes import FakeStore

FULL = os.environ.get("SYNCD_RELIABILITY", "").lower() == "full"
STEPS = 100  # at most, per interleaving (hypothesis runs some short ones too)
# Interleavings per store; a PostgreSQL step costs the most.
EXAMPLES = {"fake": 200, "sqlite": 120, "postgresql": 80}
SCALE = 10 if FULL else 1

TTL = 3600.0  # no lease expires by itself here: `expire` ends it
HOLDERS = ("proc-a", "proc-a", "proc-b")  # writers 0 and 1 are two runs of one process
NAMES = ("s0", "s1", "s2", "s3", "s4", "s5", "hand")  # "hand" is in no commit


def revision(k: int) -> str:
    return f"c{k}"


def place(rev: str | None) -> int:
    """A revision's place in the branch: -1 before anything was applied."""
    return -1 if rev is None else int(rev.removeprefix("c"))


def desired_at(k: int) -> dict[str, StepContent]:
    """Commit k's steps: each commit drops one, brings one back, changes every odd one (in a
    way no other commit does) and leaves the even ones as they were for two commits."""
    return {
        f"s{j}": StepContent("true", f"c{k}" if j % 2 else f"v{k // 2}")
        for j in range(6)
        if (j + k) % 3 != 0
    }


class Clock:
    """The FakeStore's clock, moved by `expire`."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# Opens the store an interleaving runs on, and the FakeStore's clock (None for a real store).
Opener = Callable[[], tuple[Store, Clock | None]]


@dataclass(frozen=True)
class Planned:
    """What a writer read and planned: at branch head `head`, against the store's `read`."""

    head: int
    plan: Plan
    base: ApplyBase
    read: SyncState
    writes: int  # the model's count of writes to the workspace when it was read


@dataclass
class Writer:
    """One writer's run: its lease (kept, stale or not, until a write is Fenced), its run id,
    the head it resolved and its plan."""

    holder: str
    lease: Lease | None = None
    run_id: str | None = None
    head: int | None = None
    planned: Planned | None = None

    def drop_run(self) -> None:
        self.run_id, self.head, self.planned = None, None, None


@dataclass
class LeaseRow:
    """The model of the workspace's lease row."""

    holder: str = ""
    fence: int = 0
    live: bool = False

    def names(self, lease: Lease) -> bool:
        return (self.holder, self.fence) == (lease.holder, lease.fence)


class Interleavings(RuleBasedStateMachine):
    """Writers over one store's workspace (a new workspace id per interleaving)."""

    def open_store(self) -> tuple[Store, Clock | None]:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.store, self.clock = self.open_store()
        self.ws = f"ws-{uuid.uuid4().hex[:12]}"
        self.writers = [Writer(h) for h in HOLDERS]
        self.commits = 1  # c0
        self.row = LeaseRow()
        self.applied = -1  # the model's applied commit
        self.highest = -1  # the highest place the store has shown
        self.outside: dict[str, StepContent | None] = {}  # edits no apply has covered yet
        self.writes = 0
        self.recorded: set[str] = set()

    # -- the model's expectations --------------------------------------------------------------

    def expected_live(self) -> dict[str, StepContent]:
        live = desired_at(self.applied) if self.applied >= 0 else {}
        for name, edited in self.outside.items():
            if edited is None:
                live.pop(name, None)
            else:
                live[name] = edited
        return live

    def fenced(self, w: Writer) -> bool:
        """Whether a write by `w` must be Fenced: its lease is not the live one, or its run
        was recorded."""
        assert w.lease is not None and w.run_id is not None
        return not self.row.names(w.lease) or w.run_id in self.recorded

    def _pick(self, pick: int, ready: Callable[[Writer], bool]) -> Writer:
        candidates = [w for w in self.writers if ready(w)]
        return candidates[pick % len(candidates)]

    # -- the writer protocol -------------------------------------------------------------------

    def _take(self, w: Writer, force: bool) -> None:
        may = force or not self.row.holder or self.row.holder == w.holder or not self.row.live
        got = self.store.take_lease(self.ws, w.holder, TTL, force=force)
        if not may:
            assert got is None, f"{w.holder} took a lease {self.row} held"
            return
        self.row = LeaseRow(w.holder, self.row.fence + 1, live=True)
        assert got == Lease(self.ws, w.holder, self.row.fence)
        w.lease, w.run_id, w.head, w.planned = got, f"run-{uuid.uuid4().hex[:12]}", None, None

    @precondition(lambda self: any(w.run_id is None for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def take(self, pick: int) -> None:
        """A writer not in a run starts one: it takes the lease, unless another holder's is
        live (the other run of its process may hold it: the fence rises past that run's)."""
        self._take(self._pick(pick, lambda w: w.run_id is None), force=False)

    @precondition(lambda self: any(w.run_id is None for w in self.writers) and self.row.live)
    @rule(pick=st.integers(0, 2))
    def takeover(self, pick: int) -> None:
        """A writer not in a run takes the workspace over from a live lease (it saw the
        holder's session end; the holder may be the other run of its own process)."""
        self._take(self._pick(pick, lambda w: w.run_id is None), force=True)

    def _resolve(self, w: Writer) -> None:
        w.head, w.planned = self.commits - 1, None

    def _plan(self, w: Writer) -> None:
        """As the engine reads: the applied revision, the live steps and the drifted ones."""
        assert w.head is not None
        read = self.store.state(self.ws)
        live = self.store.live_steps(self.ws)
        plan = compute_plan(desired_at(w.head), {n: s.content for n, s in live.items()})
        covered = {c.name for c in plan.changes} | self.store.drifted_names(self.ws)
        versions = {n: live[n].version if n in live else None for n in covered}
        base = ApplyBase(read.last_applied_revision, versions)
        w.planned = Planned(w.head, plan, base, read, self.writes)

    def _apply(self, w: Writer) -> type[Exception] | None:
        """The writer's apply, with its lease: the exception it raised, if any."""
        p, run_id = w.planned, w.run_id
        assert p is not None and run_id is not None and w.lease is not None
        rev = revision(p.head)
        steps = tuple(Step(n, c, f"steps/{n}.step.json") for n, c in desired_at(p.head).items())
        run = Run(run_id, self.ws, Trigger.POLL, rev, RunResult.SUCCEEDED, 1.0, 2.0)
        state = SyncState(self.ws, Status.SYNCED, rev, rev, run_id)
        fenced = self.fenced(w)
        index = IndexUpdate(replace_all=True, upserts=steps)
        try:
            self.store.apply(p.plan, index, run, state, p.base, w.lease)
        except Fenced:
            assert fenced, f"{w.holder}'s apply was Fenced, its lease {w.lease} being {self.row}"
            w.lease = None
            w.drop_run()
            return Fenced
        except ApplyConflict:
            assert not fenced, f"{w.holder}'s apply with lease {w.lease} got past {self.row}"
            assert self.writes != p.writes, "an apply conflicted with nothing written since"
            w.head, w.planned = None, None  # resolve again, as the engine does
            return ApplyConflict
        assert not fenced, f"{w.holder}'s apply with lease {w.lease} committed over {self.row}"
        assert p.base.revision == (revision(self.applied) if self.applied >= 0 else None)
        self.applied = p.head
        for name in p.base.versions:
            self.outside.pop(name, None)
        self.writes += 1
        self.recorded.add(run_id)
        w.drop_run()
        return None

    @precondition(lambda self: any(w.run_id and w.head is None for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def resolve(self, pick: int) -> None:
        """A writer in a run reads the branch head from the model git (once per attempt)."""
        self._resolve(self._pick(pick, lambda w: w.run_id is not None and w.head is None))

    @precondition(lambda self: any(w.head is not None and not w.planned for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def plan(self, pick: int) -> None:
        """A writer that resolved plans against the store now (it may stall after)."""
        self._plan(self._pick(pick, lambda w: w.head is not None and w.planned is None))

    @precondition(lambda self: any(w.planned for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def apply(self, pick: int) -> None:
        """A writer applies its plan, however long ago it made it."""
        self._apply(self._pick(pick, lambda w: w.planned is not None))

    @precondition(lambda self: any(w.run_id for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def run_through(self, pick: int) -> None:
        """A writer that does not stall: its next phases back to back, up to its apply, and
        after a conflict resolves, plans and applies again (as the engine does, a few times)."""
        self._run_through(self._pick(pick, lambda w: w.run_id is not None))

    def _run_through(self, w: Writer) -> None:
        for _attempt in range(3):
            if w.head is None:
                self._resolve(w)
            if w.planned is None:
                self._plan(w)
            if self._apply(w) is not ApplyConflict:
                return

    @precondition(lambda self: any(w.planned for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def record_failure(self, pick: int) -> None:
        """A run that does not apply records itself with the state it read, under its lease:
        late, that state would be older than what was applied since."""
        self._record_failure(self._pick(pick, lambda w: w.planned is not None))

    def _record_failure(self, w: Writer) -> None:
        p, run_id = w.planned, w.run_id
        assert p is not None and run_id is not None
        rev = revision(p.head)
        run = Run(run_id, self.ws, Trigger.POLL, rev, RunResult.FAILED, 1.0, 2.0, error="no")
        state = replace(p.read, last_seen_revision=rev, last_run_id=run_id)
        fenced = self.fenced(w)
        try:
            self.store.record_run(run, state, w.lease)
        except Fenced:
            assert fenced, f"{w.holder}'s record was Fenced, its lease {w.lease} being {self.row}"
            w.lease = None
            w.drop_run()
            return
        assert not fenced, f"{w.holder}'s record with lease {w.lease} committed over {self.row}"
        self.recorded.add(run_id)
        w.drop_run()

    @precondition(lambda self: any(w.lease and w.run_id is None for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def release(self, pick: int) -> None:
        """A writer whose run ended releases its lease: the workspace's, or a stale one."""
        w = self._pick(pick, lambda w: w.lease is not None and w.run_id is None)
        assert w.lease is not None
        self.store.release_lease(w.lease)
        if self.row.names(w.lease):
            self.row = LeaseRow("", self.row.fence, live=False)
        w.lease = None

    @precondition(lambda self: any(w.lease for w in self.writers))
    @rule(pick=st.integers(0, 2))
    def renew(self, pick: int) -> None:
        """A writer renews its lease: lost unless the row still names it (expired or not)."""
        w = self._pick(pick, lambda w: w.lease is not None)
        assert w.lease is not None
        lost = self.store.renew_leases([w.lease], TTL)
        kept = self.row.names(w.lease)
        assert lost == ([] if kept else [w.lease]), f"renewing {w.lease} over {self.row}"
        if kept:
            self.row.live = True

    # -- the world around them -----------------------------------------------------------------

    @precondition(lambda self: self.row.live)
    @rule()
    def expire(self) -> None:
        """Time passes the holder's ttl: FakeStore's clock moves past it; on a real store the
        lease row's expiry is set in the past, through a renewal with a negative ttl."""
        if self.clock is not None:
            self.clock.now += 2 * TTL
        else:
            current = Lease(self.ws, self.row.holder, self.row.fence)
            assert self.store.renew_leases([current], -1.0) == []
        self.row.live = False

    @precondition(lambda self: self.commits - 1 - self.applied <= 2)
    @rule()
    def push(self) -> None:
        """A commit on the branch (at most a few ahead of the applied one: writers catch up)."""
        self.commits += 1

    @rule(name=st.sampled_from(NAMES), variant=st.integers(-1, 2))
    def edit_outside(self, name: str, variant: int) -> None:
        """A step edited outside git, or deleted (variant -1)."""
        if variant < 0:
            expected = name in self.expected_live()
            assert self.store.delete_outside(self.ws, name) == expected
            if expected:
                self.outside[name] = None
                self.writes += 1
            return
        edited = StepContent("true", f"hand-{variant}")
        self.store.put_outside(self.ws, name, edited)
        self.outside[name] = edited
        self.writes += 1

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def never_back_and_as_git_has_it(self) -> None:
        applied = place(self.store.state(self.ws).last_applied_revision)
        assert applied >= self.highest, f"applied c{applied} after c{self.highest}"
        self.highest = applied
        assert applied == self.applied
        live = {n: s.content for n, s in self.store.live_steps(self.ws).items()}
        assert live == self.expected_live()
        assert self.store.drifted_names(self.ws) == set(self.outside)
        assert {r.id for r in self.store.runs(self.ws, limit=10_000)} == self.recorded


def on(opened: Opener) -> type[Interleavings]:
    """The machine on the stores `opened` gives (hypothesis builds one per interleaving)."""

    class OnStore(Interleavings):
        def open_store(self) -> tuple[Store, Clock | None]:
            return opened()

    return OnStore


def interleavings(kind: str) -> settings:
    return settings(
        max_examples=EXAMPLES[kind] * SCALE,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Opener]:
    """What each interleaving runs on: a new FakeStore (and clock); or one SQLite file, or one
    fresh PostgreSQL database, for the whole test (each interleaving has its own workspace)."""
    if kind == "fake":

        def fake() -> tuple[Store, Clock | None]:
            clock = Clock()
            return FakeStore(clock=clock), clock

        yield fake
        return
    store: Store
    if kind == "sqlite":
        store = SqliteStore(tmp_path / "syncd.db")
    else:
        postgres.require()
        from syncd.store.postgres import PostgresStore

        url = request.getfixturevalue("pg_url")
        store = PostgresStore(url)
    try:
        yield lambda: (store, None)
    finally:
        store.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres.fresh_database() as url:
        yield url


def test_interleaved_writers_never_move_the_workspace_back(kind: str, opener: Opener) -> None:
    """Random interleavings: with the fence, every stale write is refused and none goes back."""
    run_state_machine_as_test(on(opener), settings=interleavings(kind))


# Interleavings a missing fence would let through, replayed step by step (the invariant is
# checked after each): writers 0 and 1 are runs of one process, writer 2 another process's.
# Writer 0 goes stale in each, and its late write must be Fenced.
Replay = list[Callable[[], object]]


def plans_after_a_takeover_at_the_head_it_resolved_before(m: Interleavings) -> Replay:
    a, _, b = m.writers
    return [
        lambda: m._take(a, force=False),
        lambda: m._resolve(a),  # c0; then a stalls
        m.push,
        lambda: m._take(b, force=True),  # b saw a's session end
        lambda: m._run_through(b),  # applies c1
        # Reads c1 as applied: its plan goes back to c0, from a base that still holds.
        lambda: m._plan(a),
        lambda: m._apply(a),
    ]


def takes_after_an_expiry_and_the_holder_wakes(m: Interleavings) -> Replay:
    a, _, b = m.writers
    return [
        lambda: m._take(a, force=False),
        lambda: m._resolve(a),
        m.push,
        m.expire,  # a froze past its ttl
        lambda: m._take(b, force=False),
        lambda: m._run_through(b),
        lambda: m._run_through(a),  # wakes, plans at c0 and applies
    ]


def records_a_state_read_before_the_other_run_applied(m: Interleavings) -> Replay:
    a, a2, _ = m.writers
    return [
        lambda: m._take(a, force=False),
        lambda: m._resolve(a),
        lambda: m._plan(a),  # reads: nothing applied
        lambda: m._take(a2, force=False),  # the process's next run: the fence rises
        lambda: m._run_through(a2),  # applies c0
        lambda: m._record_failure(a),  # would save "nothing applied" over c0
    ]


@pytest.mark.parametrize(
    "interleaving",
    [
        plans_after_a_takeover_at_the_head_it_resolved_before,
        takes_after_an_expiry_and_the_holder_wakes,
        records_a_state_read_before_the_other_run_applied,
    ],
)
def test_a_stale_writer_is_fenced(
    opener: Opener, interleaving: Callable[[Interleavings], Replay]
) -> None:
    m = on(opener)()
    for step in interleaving(m):
        step()
        m.never_back_and_as_git_has_it()
    stale = m.writers[0]
    assert stale.lease is None and stale.run_id is None, "the stale writer was not Fenced"
    assert m.applied == m.commits - 1 and len(m.recorded) == 1  # the other writer's run
