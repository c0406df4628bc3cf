"""The SQLite store on a real file: one-transaction apply, rollback, outside edits, schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.model import Origin, Run, RunResult, Status, Step, StepContent, SyncState, Trigger
from syncd.plan import compute_plan
from syncd.store import ApplyBase, ApplyConflict, IndexUpdate, SqliteStore, StoreError

WS = "ws1"


def content(do: str) -> StepContent:
    return StepContent("true", do)


def run(rid: str = "r1") -> Run:
    return Run(rid, WS, Trigger.MANUAL, "abc", RunResult.SUCCEEDED, 1.0, 2.0)


def base_of(store: SqliteStore, names: set[str]) -> ApplyBase:
    """The base a plan over `names` (and every drifted step) was read from: the store now."""
    live = store.live_steps(WS)
    covered = names | store.drifted_names(WS)
    versions = {n: live[n].version if n in live else None for n in covered}
    return ApplyBase(store.state(WS).last_applied_revision, versions)


def apply(store: SqliteStore, desired: dict[str, StepContent], rid: str = "r1") -> None:
    live = {n: s.content for n, s in store.live_steps(WS).items()}
    plan = compute_plan(desired, live)
    steps = tuple(Step(n, c, f"p/{n}.step.json", "blob") for n, c in desired.items())
    state = SyncState(WS, Status.SYNCED, "abc", "abc", rid)
    base = base_of(store, {c.name for c in plan.changes})
    store.apply(plan, IndexUpdate(replace_all=True, upserts=steps), run(rid), state, base)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "syncd.db")
    yield s
    s.close()


def test_apply_creates_updates_deletes_and_bumps_versions(store: SqliteStore) -> None:
    apply(store, {"a": content("1"), "b": content("1")})
    apply(store, {"a": content("2"), "c": content("1")}, "r2")
    live = store.live_steps(WS)
    assert set(live) == {"a", "c"}
    assert live["a"].version == 2 and live["a"].content.do == "2"
    assert live["c"].version == 1 and live["a"].origin is Origin.GIT
    assert store.state(WS).last_run_id == "r2"
    assert [r.id for r in store.runs(WS)] == ["r2", "r1"]
    assert store.index_count(WS) == 2


def test_last_success_is_the_last_succeeded_run(store: SqliteStore) -> None:
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


def test_failed_apply_rolls_back_everything(store: SqliteStore, monkeypatch) -> None:
    apply(store, {"a": content("1")})
    before = store.live_steps(WS)
    plan = compute_plan({"a": content("2"), "b": content("1")}, {"a": content("1")})
    bad_state = SyncState(WS, Status.SYNCED, "def", "def", "r2")
    # A run row that collides with a NOT NULL constraint fails the transaction mid-way.
    broken = Run("r2", WS, Trigger.MANUAL, "def", RunResult.SUCCEEDED, None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="NOT NULL"):
        store.apply(plan, IndexUpdate(replace_all=True), broken, bad_state, base_of(store, {"a"}))
    assert store.live_steps(WS) == before
    assert store.state(WS).last_applied_revision == "abc"
    assert store.run("r2") is None
    assert store.index_count(WS) == 1


def test_an_apply_over_a_moved_base_writes_nothing(store: SqliteStore) -> None:
    apply(store, {"a": content("1"), "b": content("1")})
    plan = compute_plan({"a": content("2")}, {"a": content("1")})
    stale = base_of(store, {"a"})
    store.put_outside(WS, "a", content("hand"))  # lands between the plan and its apply
    before = (store.live_steps(WS), store.state(WS), store.runs(WS))
    state = SyncState(WS, Status.SYNCED, "def", "def", "r2")
    with pytest.raises(ApplyConflict, match="'a'"):
        store.apply(plan, IndexUpdate(), run("r2"), state, stale)
    assert (store.live_steps(WS), store.state(WS), store.runs(WS)) == before
    moved = ApplyBase("other", stale.versions)
    with pytest.raises(ApplyConflict, match="applied revision"):
        store.apply(plan, IndexUpdate(), run("r2"), state, moved)


def test_outside_edits_are_marked_and_cleared_by_apply(store: SqliteStore) -> None:
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


def test_store_survives_reopen_and_checks_integrity(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "x.db")
    apply(s, {"a": content("1")})
    s.close()
    s2 = SqliteStore(tmp_path / "x.db")
    assert set(s2.live_steps(WS)) == {"a"}
    assert s2.integrity_ok()
    assert s2.schema_version() >= 1
    s2.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StoreError, match="upgrade syncd"):
        SqliteStore(tmp_path / "new.db")


def test_two_connections_share_the_file(tmp_path: Path) -> None:
    daemon = SqliteStore(tmp_path / "s.db")
    cli = SqliteStore(tmp_path / "s.db")
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


def test_suspension_pin_and_health_persist_and_a_saved_state_keeps_the_suspension(
    tmp_path: Path,
) -> None:
    from syncd.model import Health, HealthRecord

    s = SqliteStore(tmp_path / "h.db")
    before = s.state(WS)  # what a run in flight read before the suspend
    s.set_suspended(WS, True)
    s.save_state(SyncState(WS, Status.OUT_OF_SYNC, "abc", "def", pinned_revision="abc"))
    s.save_state(before)  # the run saves: the suspension stays
    s.save_state(SyncState(WS, Status.OUT_OF_SYNC, "abc", "def", pinned_revision="abc"))
    record = HealthRecord(WS, Health.DEGRADED, 5.0, "401", 2, source_failing=True)
    s.save_health(record)
    s.close()
    s2 = SqliteStore(tmp_path / "h.db")
    state = s2.state(WS)
    assert state.suspended and state.pinned_revision == "abc"
    assert s2.health(WS) == record and s2.health("other") is None
    s2.set_suspended(WS, False)
    assert not s2.state(WS).suspended and s2.state(WS).pinned_revision == "abc"
    s2.set_suspended("new", True)  # a workspace never synced can be suspended too
    assert s2.state("new").suspended and s2.state("new").status is Status.UNKNOWN
    s2.close()
