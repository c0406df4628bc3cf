"""Writers' leases on the stores, the same contract on SQLite (a file), PostgreSQL (a fresh
database) and the FakeStore the unit tests use: every take raises the workspace's fence; another
holder is refused while the lease lives, unless it forces a takeover or the lease expired; a
release keeps the fence; renewing says which leases were lost. An apply or a run record with a
lease that is no longer the workspace's (taken over, released, expired) raises Fenced and writes
nothing, and a run id is recorded once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from syncd.core.model import LiveStep, Run, RunResult, Status, Step, StepContent, SyncState, Trigger
from syncd.core.plan import compute_plan
from syncd.store import Fenced, IndexUpdate, Lease, Store
from tests.support.fakes import FakeStore, base_of
from tests.support.stores import Clock

WS = "ws1"
OTHER_WS = "ws2"
TTL = 60.0  # long enough never to expire by itself during a test
SHORT = 0.05  # a lease meant to expire: let_expire waits past it


def content(do: str) -> StepContent:
    return StepContent("true", do)


def run(rid: str) -> Run:
    return Run(rid, WS, Trigger.MANUAL, "abc", RunResult.SUCCEEDED, 1.0, 2.0)


def apply(
    store: Store,
    desired: dict[str, StepContent],
    rid: str,
    lease: Lease | None,
    revision: str = "abc",
) -> None:
    """Plan `desired` against the store now and apply it as run `rid`, with `lease`."""
    live = {n: s.content for n, s in store.live_steps(WS).items()}
    plan = compute_plan(desired, live)
    steps = tuple(Step(n, c, f"p/{n}.step.json", "blob") for n, c in desired.items())
    state = SyncState(WS, Status.SYNCED, revision, revision, rid)
    base = base_of(store, WS, {c.name for c in plan.changes})
    index = IndexUpdate(replace_all=True, upserts=steps)
    store.apply(plan, index, run(rid), state, base, lease)


def record(store: Store, rid: str, lease: Lease | None) -> None:
    """Record run `rid` (a failed one) with `lease`, as a run that did not apply does."""
    failed = Run(rid, WS, Trigger.MANUAL, "def", RunResult.FAILED, 3.0, 4.0, error="boom")
    before = store.state(WS)
    state = SyncState(WS, before.status, before.last_applied_revision, "def", rid)
    store.record_run(failed, state, lease)


def snapshot(store: Store) -> tuple[Any, ...]:
    """What a write could change: the state, the live steps, the runs, git's index, the drift."""
    live: dict[str, LiveStep] = store.live_steps(WS)
    return (
        store.state(WS),
        live,
        store.runs(WS, limit=1000),
        store.index_files(WS),
        store.drifted_names(WS),
    )


def let_expire(store: Store) -> None:
    """Let a lease taken with the SHORT ttl expire: the fake's clock moves; real ones wait."""
    if isinstance(store, FakeStore):
        assert isinstance(store.clock, Clock)
        store.clock.now += 2 * SHORT
    else:
        time.sleep(2 * SHORT)


# -- taking ----------------------------------------------------------------------------------


def test_the_first_take_gets_fence_1_for_each_workspace(store: Store) -> None:
    assert store.take_lease(WS, "a", TTL) == Lease(WS, "a", 1)
    assert store.take_lease(OTHER_WS, "b", TTL) == Lease(OTHER_WS, "b", 1)


def test_another_holder_is_refused_while_the_lease_lives(store: Store) -> None:
    lease = store.take_lease(WS, "a", TTL)
    assert lease is not None
    assert store.take_lease(WS, "b", TTL) is None
    # The refusal took nothing: the holder still writes.
    apply(store, {"s": content("1")}, "r1", lease)
    assert store.state(WS).last_applied_revision == "abc"
    assert store.take_lease(WS, "b", TTL) is None


def test_a_lease_needs_a_holder(store: Store) -> None:
    with pytest.raises(ValueError, match="holder"):
        store.take_lease(WS, "", TTL)
    assert store.lease_holder(WS) is None


def test_the_holder_is_whoever_holds_a_live_lease(store: Store) -> None:
    assert store.lease_holder(WS) is None
    lease = store.take_lease(WS, "a", SHORT)
    assert lease is not None and store.lease_holder(WS) == "a"
    assert store.lease_holder(OTHER_WS) is None
    let_expire(store)
    assert store.lease_holder(WS) is None
    renewed = store.take_lease(WS, "a", TTL)
    assert renewed is not None and store.lease_holder(WS) == "a"
    store.release_lease(renewed)
    assert store.lease_holder(WS) is None


def test_the_same_holder_may_take_again_and_the_fence_rises(store: Store) -> None:
    first = store.take_lease(WS, "a", TTL)
    second = store.take_lease(WS, "a", TTL)
    assert first == Lease(WS, "a", 1) and second == Lease(WS, "a", 2)
    before = snapshot(store)
    with pytest.raises(Fenced, match="fence 1"):
        apply(store, {"s": content("1")}, "r1", first)
    assert snapshot(store) == before
    apply(store, {"s": content("1")}, "r1", second)
    assert set(store.live_steps(WS)) == {"s"}


def test_a_forced_take_takes_over_a_live_lease_and_the_fence_rises(store: Store) -> None:
    assert store.take_lease(WS, "a", TTL) == Lease(WS, "a", 1)
    assert store.take_lease(WS, "b", TTL, force=True) == Lease(WS, "b", 2)
    assert store.take_lease(WS, "a", TTL) is None  # now b's, and live
    assert store.take_lease(WS, "c", TTL, force=True) == Lease(WS, "c", 3)


def test_an_expired_lease_can_be_taken_by_another(store: Store) -> None:
    assert store.take_lease(WS, "a", SHORT) == Lease(WS, "a", 1)
    let_expire(store)
    assert store.take_lease(WS, "b", TTL) == Lease(WS, "b", 2)
    assert store.take_lease(WS, "a", TTL) is None


def test_a_release_frees_the_workspace_and_keeps_the_fence(store: Store) -> None:
    lease = store.take_lease(WS, "a", TTL)
    assert lease == Lease(WS, "a", 1)
    store.release_lease(lease)
    before = snapshot(store)
    with pytest.raises(Fenced, match="released"):
        apply(store, {"s": content("1")}, "r1", lease)
    assert snapshot(store) == before
    assert store.take_lease(WS, "b", TTL) == Lease(WS, "b", 2)


def test_a_stale_release_leaves_the_new_holder_alone(store: Store) -> None:
    old = store.take_lease(WS, "a", TTL)
    assert old is not None
    new = store.take_lease(WS, "b", TTL, force=True)
    assert new == Lease(WS, "b", 2)
    store.release_lease(old)
    assert store.take_lease(WS, "c", TTL) is None
    apply(store, {"s": content("1")}, "r1", new)
    assert store.renew_leases([new], TTL) == []


# -- renewing --------------------------------------------------------------------------------


def test_renew_returns_the_leases_lost_to_a_takeover(store: Store) -> None:
    mine = store.take_lease(WS, "a", TTL)
    kept = store.take_lease(OTHER_WS, "a", TTL)
    assert mine is not None and kept is not None
    assert store.renew_leases([mine, kept], TTL) == []
    assert store.take_lease(WS, "b", TTL, force=True) == Lease(WS, "b", 2)
    assert store.renew_leases([mine, kept], TTL) == [mine]
    # Renewing the lost lease did not take it back.
    assert store.take_lease(WS, "a", TTL) is None


def test_a_renewed_lease_outlives_its_first_ttl(store: Store) -> None:
    lease = store.take_lease(WS, "a", SHORT)
    assert lease is not None
    assert store.renew_leases([lease], TTL) == []
    let_expire(store)
    assert store.take_lease(WS, "b", TTL) is None
    apply(store, {"s": content("1")}, "r1", lease)
    assert store.state(WS).last_run_id == "r1"


# -- fenced writes ---------------------------------------------------------------------------


def test_a_stale_lease_writes_nothing(store: Store) -> None:
    old = store.take_lease(WS, "a", TTL)
    assert old is not None
    apply(store, {"s": content("1"), "t": content("1")}, "r1", old)
    store.put_outside(WS, "t", content("hand"))
    new = store.take_lease(WS, "b", TTL, force=True)
    assert new is not None
    before = snapshot(store)
    with pytest.raises(Fenced, match="no longer holds"):
        apply(store, {"s": content("2"), "u": content("1")}, "r2", old, revision="def")
    assert snapshot(store) == before
    with pytest.raises(Fenced, match="no longer holds"):
        record(store, "r3", old)
    assert snapshot(store) == before
    assert store.run("r2") is None and store.run("r3") is None
    # The new holder writes, the run ids the stale one tried included.
    apply(store, {"s": content("2"), "u": content("1")}, "r2", new, revision="def")
    record(store, "r3", new)
    assert store.state(WS).last_applied_revision == "def"
    assert [r.id for r in store.runs(WS)] == ["r3", "r2", "r1"]


def test_a_run_id_is_recorded_once(store: Store) -> None:
    lease = store.take_lease(WS, "a", TTL)
    assert lease is not None
    apply(store, {"s": content("1")}, "r1", lease)
    record(store, "r2", lease)
    before = snapshot(store)
    for again in ("r1", "r2"):
        with pytest.raises(Fenced, match=f"run {again} was recorded"):
            record(store, again, lease)
        assert snapshot(store) == before
        with pytest.raises(Fenced, match=f"run {again} was recorded"):
            apply(store, {"s": content("2")}, again, lease, revision="def")
        assert snapshot(store) == before
    # Without a lease too (a writer that holds none): a run id is one writer's.
    with pytest.raises(Fenced, match="run r1 was recorded"):
        record(store, "r1", None)
    assert snapshot(store) == before


def test_an_expired_lease_nobody_took_still_writes(store: Store) -> None:
    """Expiry lets another writer take the workspace; until one does, the fence still says no
    other writer wrote, and a run whose renewal was held up (a long apply elsewhere) goes on."""
    lease = store.take_lease(WS, "a", TTL)
    assert lease is not None
    apply(store, {"s": content("1")}, "r1", lease)
    # Renewed with the short ttl: the holder's renewals then stop (frozen, held up).
    assert store.renew_leases([lease], SHORT) == []
    let_expire(store)
    apply(store, {"s": content("2")}, "r2", lease, revision="def")
    assert store.state(WS).last_applied_revision == "def"
    # Once another writer has taken it, the late writer is fenced.
    assert store.take_lease(WS, "b", TTL) is not None
    before = snapshot(store)
    with pytest.raises(Fenced, match="held by b"):
        record(store, "r3", lease)
    assert snapshot(store) == before


def test_writes_without_a_lease_are_not_fenced(store: Store) -> None:
    """A writer with no lease (lease=None) is not checked against whoever holds one."""
    assert store.take_lease(WS, "a", TTL) is not None
    apply(store, {"s": content("1")}, "r1", None)
    record(store, "r2", None)
    assert [r.id for r in store.runs(WS)] == ["r2", "r1"]
