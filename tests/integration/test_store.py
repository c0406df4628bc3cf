"""The store contract: the FakeStore the unit tests trust, SQLite (a file) and PostgreSQL (a fresh
database) hold and answer alike. One-transaction apply, rollback, outside edits, runs, webhook
deliveries; and, on the real stores only, what is about SQL itself: durability across a reopen,
two connections to one database, the schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.core.model import (
    CheckOutcome,
    Health,
    HealthRecord,
    Origin,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
    Trigger,
)
from syncd.core.plan import compute_plan
from syncd.store import ApplyBase, ApplyConflict, IndexUpdate, SqliteStore, Store, StoreError
from tests.support.fakes import FakeStore, base_of
from tests.support.stores import KINDS, REAL, open_store

WS = "ws1"
DAY = 24 * 3600.0


def content(do: str) -> StepContent:
    return StepContent("true", do)


def run(rid: str = "r1") -> Run:
    return Run(rid, WS, Trigger.MANUAL, "abc", RunResult.SUCCEEDED, 1.0, 2.0)


def apply(store: Store, desired: dict[str, StepContent], rid: str = "r1") -> None:
    live = {n: s.content for n, s in store.live_steps(WS).items()}
    plan = compute_plan(desired, live)
    steps = tuple(Step(n, c, f"p/{n}.step.json", "blob") for n, c in desired.items())
    state = SyncState(WS, Status.SYNCED, "abc", "abc", rid)
    base = base_of(store, WS, {c.name for c in plan.changes})
    store.apply(plan, IndexUpdate(replace_all=True, upserts=steps), run(rid), state, base)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# About SQL itself (what a reopened store or another connection finds): the real stores.
@pytest.fixture(params=REAL)
def real(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    s = open_store(kind, tmp_path, request)
    yield s
    s.close()


def test_apply_creates_updates_deletes_and_bumps_versions(store: Store) -> None:
    apply(store, {"a": content("1"), "b": content("1")})
    apply(store, {"a": content("2"), "c": content("1")}, "r2")
    live = store.live_steps(WS)
    assert set(live) == {"a", "c"}
    assert live["a"].version == 2 and live["a"].content.do == "2"
    assert live["c"].version == 1 and live["a"].origin is Origin.GIT
    assert store.state(WS).last_run_id == "r2"
    assert [r.id for r in store.runs(WS)] == ["r2", "r1"]
    assert store.index_count(WS) == 2


def test_last_success_is_the_last_succeeded_run(store: Store) -> None:
    assert store.last_success_at(WS) is None
    state = SyncState(WS, Status.SYNCED)
    for rid, result, finished in [
        ("a", RunResult.SUCCEEDED, 10.0),
        ("b", RunResult.SUCCEEDED, 20.0),
        ("c", RunResult.FAILED, 30.0),
        ("d", RunResult.PLANNED, 40.0),
    ]:
        store.record_run(Run(rid, WS, Trigger.POLL, "abc", result, finished - 1, finished), state)
    assert store.last_success_at(WS) == 20.0
    assert store.last_success_at("other") is None


def test_failed_apply_rolls_back_everything(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    apply(store, {"a": content("1")})
    before = store.live_steps(WS)
    plan = compute_plan({"a": content("2"), "b": content("1")}, {"a": content("1")})
    bad_state = SyncState(WS, Status.SYNCED, "def", "def", "r2")
    # A run row that collides with a NOT NULL constraint fails the transaction mid-way.
    broken = Run("r2", WS, Trigger.MANUAL, "def", RunResult.SUCCEEDED, None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"(?i)not.null"):  # SQLite: NOT NULL, PostgreSQL: not-null
        store.apply(
            plan, IndexUpdate(replace_all=True), broken, bad_state, base_of(store, WS, {"a"})
        )
    assert store.live_steps(WS) == before
    assert store.state(WS).last_applied_revision == "abc"
    assert store.run("r2") is None
    assert store.index_count(WS) == 1


def test_an_apply_over_a_moved_base_writes_nothing(store: Store) -> None:
    apply(store, {"a": content("1"), "b": content("1")})
    plan = compute_plan({"a": content("2")}, {"a": content("1")})
    stale = base_of(store, WS, {"a"})
    store.put_outside(WS, "a", content("hand"))  # lands between the plan and its apply
    before = (store.live_steps(WS), store.state(WS), store.runs(WS))
    state = SyncState(WS, Status.SYNCED, "def", "def", "r2")
    # Each store words a conflict alike (the FakeStore too: the engine's tests read it).
    with pytest.raises(
        ApplyConflict, match=r"^workspace ws1: steps changed since the plan was read: 'a'$"
    ):
        store.apply(plan, IndexUpdate(), run("r2"), state, stale)
    assert (store.live_steps(WS), store.state(WS), store.runs(WS)) == before
    moved = ApplyBase("other", stale.versions)
    with pytest.raises(
        ApplyConflict, match=r"^workspace ws1: applied revision moved from other to abc"
    ):
        store.apply(plan, IndexUpdate(), run("r2"), state, moved)
    assert (store.live_steps(WS), store.state(WS), store.runs(WS)) == before


def test_outside_edits_are_marked_and_cleared_by_apply(store: Store) -> None:
    apply(store, {"a": content("1"), "b": content("1")})
    edited = store.put_outside(WS, "a", content("hand"))
    assert edited.origin is Origin.OUTSIDE and edited.version == 2
    assert store.delete_outside(WS, "b")
    assert not store.delete_outside(WS, "b")
    assert store.drifted_names(WS) == {"a", "b"}
    assert set(store.live_steps(WS)) == {"a"}
    assert store.state(WS).status is Status.OUT_OF_SYNC
    apply(store, {"a": content("1"), "b": content("1")}, "r2")
    live = store.live_steps(WS)
    assert live["a"].content.do == "1" and live["a"].origin is Origin.GIT
    assert "b" in live and store.drifted_names(WS) == set()


def test_store_survives_reopen(real: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    s = open_store(real, tmp_path, request)
    apply(s, {"a": content("1")})
    s.put_outside(WS, "b", content("hand"))
    s.set_meta("digest", "42")
    s.close()
    s2 = open_store(real, tmp_path, request)
    assert set(s2.live_steps(WS)) == {"a", "b"}
    assert s2.drifted_names(WS) == {"b"}
    assert s2.get_meta("digest") == "42"
    assert [r.id for r in s2.runs(WS)] == ["r1"]
    s2.close()


def test_sqlite_store_checks_integrity(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "x.db")
    apply(s, {"a": content("1")})
    assert s.integrity_ok()
    assert s.schema_version() >= 1
    s.close()


def test_runs_list_newest_first_and_by_finish(store: Store) -> None:
    for i, started in enumerate([5.0, 7.0, 7.0, 6.0]):
        r = Run(f"r{i}", WS, Trigger.WEBHOOK, None, RunResult.SUCCEEDED, started, started + 10)
        store.record_run(r, SyncState(WS, Status.SYNCED, last_run_id=r.id))
    # Equal start times: the one recorded last comes first, as it does on either store.
    assert [r.id for r in store.runs(WS)] == ["r2", "r1", "r3", "r0"]
    assert [r.id for r in store.runs(WS, limit=2)] == ["r2", "r1"]
    assert [r.id for r in store.runs_finished_since(15.0, 17.0)] == ["r3", "r1", "r2"]
    assert store.run("r3") == Run("r3", WS, Trigger.WEBHOOK, None, RunResult.SUCCEEDED, 6.0, 16.0)
    assert store.run("nope") is None


def test_deliveries_are_remembered_for_a_day(store: Store) -> None:
    assert store.remember_delivery("github", "d1", 1000.0)
    assert not store.remember_delivery("github", "d1", 1001.0)
    assert store.remember_delivery("gitlab", "d1", 1001.0)  # another provider's id space
    assert not store.remember_delivery("github", "d1", 1000.0 + DAY - 1)
    # A day later the id is new again, and counts from then.
    assert store.remember_delivery("github", "d1", 1000.0 + DAY)
    assert not store.remember_delivery("github", "d1", 1000.0 + DAY + 1)
    store.forget_delivery("github", "d1")
    assert store.remember_delivery("github", "d1", 1000.0 + DAY + 2)


def test_old_deliveries_are_pruned(store: Store) -> None:
    for i in range(5):
        assert store.remember_delivery("github", f"old-{i}", 1000.0)
    # The next delivery a day later prunes the old ones (pruning runs at most once an hour).
    assert store.remember_delivery("github", "new", 1000.0 + 2 * DAY)
    assert count_deliveries(store) == 1


def count_deliveries(store: Store) -> int:
    if isinstance(store, FakeStore):
        return len(store.snapshot().deliveries)
    if isinstance(store, SqliteStore):
        return int(store._db.execute("SELECT count(*) FROM deliveries").fetchone()[0])
    with store._pool.connection() as conn:  # type: ignore[attr-defined]
        row = conn.execute("SELECT count(*) FROM deliveries").fetchone()
    return int(row[0])


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StoreError, match="upgrade syncd"):
        SqliteStore(tmp_path / "new.db")


def test_two_stores_share_one_database(
    real: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    daemon = open_store(real, tmp_path, request)
    cli = open_store(real, tmp_path, request)
    apply(cli, {"a": content("1")})
    assert set(daemon.live_steps(WS)) == {"a"}
    daemon.close()
    cli.close()


def test_an_older_schema_is_migrated_in_place(tmp_path: Path) -> None:
    from syncd.store import MIGRATIONS
    from syncd.store.sqlite import _statements

    db = sqlite3.connect(tmp_path / "old.db")
    for statement in _statements(MIGRATIONS[0]):
        db.execute(statement)
    db.execute("INSERT INTO workspaces (id, status) VALUES ('ws1', 'Synced')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SqliteStore(tmp_path / "old.db")
    assert store.schema_version() == len(MIGRATIONS)
    state = store.state("ws1")
    assert state.status is Status.SYNCED and state.source_key is None
    store.close()


def test_a_saved_state_keeps_the_suspension(store: Store) -> None:
    before = store.state(WS)  # what a run in flight read before the suspend
    store.set_suspended(WS, True)
    store.save_state(SyncState(WS, Status.OUT_OF_SYNC, "abc", "def", pinned_revision="abc"))
    store.save_state(before)  # the run saves: the suspension stays
    assert store.state(WS).suspended and store.state(WS).pinned_revision is None
    store.save_state(SyncState(WS, Status.OUT_OF_SYNC, "abc", "def", pinned_revision="abc"))
    state = store.state(WS)
    assert state.suspended and state.pinned_revision == "abc"
    store.set_suspended(WS, False)
    assert not store.state(WS).suspended and store.state(WS).pinned_revision == "abc"
    store.set_suspended("new", True)  # a workspace never synced can be suspended too
    assert store.state("new").suspended and store.state("new").status is Status.UNKNOWN
    assert store.state("other") == SyncState("other")


def test_health_is_kept_per_workspace(store: Store) -> None:
    assert store.health(WS) is None
    first = HealthRecord(WS, Health.DEGRADED, 5.0, "401", 2, source_failing=True)
    store.save_health(first)
    assert store.health(WS) == first and store.health("other") is None
    second = HealthRecord(WS, Health.HEALTHY, None, None, 0)
    store.save_health(second)
    assert store.health(WS) == second


def test_suspension_pin_and_health_persist(
    real: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    s = open_store(real, tmp_path, request)
    s.set_suspended(WS, True)
    s.save_state(SyncState(WS, Status.OUT_OF_SYNC, "abc", "def", pinned_revision="abc"))
    record = HealthRecord(WS, Health.DEGRADED, 5.0, "401", 2, source_failing=True)
    s.save_health(record)
    s.close()
    s2 = open_store(real, tmp_path, request)
    state = s2.state(WS)
    assert state.suspended and state.pinned_revision == "abc"
    assert s2.health(WS) == record and s2.health("other") is None
    s2.close()


def test_a_recorded_run_found_failed_marks_its_revision_failed(store: Store) -> None:
    # A check after an apply failed: the run's result, error and end change, and its commit
    # becomes the workspace's failed one; other workspaces and runs stay.
    apply(store, {"a": content("1")})
    store.record_run(
        Run("x", "other", Trigger.POLL, "abc", RunResult.SUCCEEDED, 1.0, 2.0), SyncState("other")
    )
    store.fail_run(WS, "r1", "check smoke: status 500", 9.0)
    checks = (CheckOutcome("smoke", "failed", "status 500", 1.5),)
    store.set_run_checks(WS, "r1", checks)
    failed = store.run("r1")
    assert failed is not None and failed.checks == checks
    assert (failed.result, failed.error, failed.finished_at) == (
        RunResult.FAILED,
        "check smoke: status 500",
        9.0,
    )
    assert store.state(WS).failed_revision == "abc"
    assert store.state(WS).last_applied_revision == "abc"
    assert [r.id for r in store.runs_finished_since(8.0, 10.0)] == ["r1"]
    other = store.run("x")
    assert other is not None and other.result is RunResult.SUCCEEDED
    assert store.state("other").failed_revision is None
