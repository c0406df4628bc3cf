"""The store contract in detail, on the FakeStore, SQLite and PostgreSQL alike: step ids and
versions (through edits and deletions outside git, and tombstones), drift counts, what an apply
covers and what it leaves, git's index updated in part, runs and meta read back as written."""

from __future__ import annotations

import re

from syncd.core.model import (
    Origin,
    Plan,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
    Trigger,
)
from syncd.core.plan import compute_plan
from syncd.store import ApplyBase, IndexUpdate, Store
from tests.support.fakes import base_of

WS = "ws1"
OTHER = "ws2"
STEP_ID = re.compile(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}")  # uuid4().hex


def content(do: str) -> StepContent:
    return StepContent("true", do)


def file_of(name: str, do: str) -> Step:
    return Step(name, content(do), f"p/{name}.step.json", f"blob-{name}-{do}")


def sync(store: Store, desired: dict[str, str], rid: str, ws: str = WS) -> SyncState:
    """Apply `desired` ({name: do}) as run `rid`, at revision `rid`, over the whole index, as
    planned against the store now (covering the plan's steps and every drifted one)."""
    plan, base = read(store, desired, ws)
    return write(store, desired, rid, plan, base, ws)


def read(store: Store, desired: dict[str, str], ws: str = WS) -> tuple[Plan, ApplyBase]:
    live = {n: s.content for n, s in store.live_steps(ws).items()}
    plan = compute_plan({n: content(do) for n, do in desired.items()}, live)
    return plan, base_of(store, ws, {c.name for c in plan.changes})


def write(
    store: Store, desired: dict[str, str], rid: str, plan: Plan, base: ApplyBase, ws: str = WS
) -> SyncState:
    files = tuple(file_of(n, do) for n, do in desired.items())
    run = Run(rid, ws, Trigger.MANUAL, rid, RunResult.SUCCEEDED, 1.0, 2.0)
    state = SyncState(ws, Status.SYNCED, rid, rid, rid)
    return store.apply(plan, IndexUpdate(replace_all=True, upserts=files), run, state, base)


def test_a_step_keeps_its_id_through_updates_and_edits_outside_git(store: Store) -> None:
    sync(store, {"a": "1", "b": "1"}, "r1")
    first = store.live_steps(WS)
    assert STEP_ID.fullmatch(first["a"].id) and first["a"].id != first["b"].id
    assert (first["a"].version, first["a"].origin) == (1, Origin.GIT)
    assert first["a"].content_hash == content("1").content_hash()
    sync(store, {"a": "2", "b": "1"}, "r2")
    edited = store.put_outside(WS, "a", content("hand"))
    assert edited == store.live_steps(WS)["a"]
    assert (edited.id, edited.version, edited.origin) == (first["a"].id, 3, Origin.OUTSIDE)
    assert edited.content_hash == content("hand").content_hash()
    # Deleted by git, then created again: a new step.
    sync(store, {"b": "1"}, "r3")
    sync(store, {"a": "1", "b": "1"}, "r4")
    again = store.live_steps(WS)["a"]
    assert again.id != first["a"].id and again.version == 1


def test_a_tombstone_keeps_the_steps_id_and_version(store: Store) -> None:
    sync(store, {"a": "1"}, "r1")
    a = store.live_steps(WS)["a"]
    assert store.delete_outside(WS, "a")
    assert store.live_steps(WS) == {} and store.live_count(WS) == 0
    assert store.live_steps(WS, ["a", "nope"]) == {}
    back = store.put_outside(WS, "a", content("hand"))
    assert (back.id, back.version) == (a.id, 3)
    assert store.delete_outside(WS, "a")
    # git still has it: the sync brings it back, as the same step.
    sync(store, {"a": "1"}, "r2")
    restored = store.live_steps(WS)["a"]
    assert (restored.id, restored.version, restored.origin) == (a.id, 5, Origin.GIT)
    assert store.drifted_names(WS) == set() and store.state(WS).status is Status.SYNCED


def test_edits_outside_git_count_as_drift(store: Store) -> None:
    assert store.put_outside(OTHER, "x", content("hand")).version == 1  # a new workspace
    other = store.state(OTHER)
    assert (other.status, other.drift, other.last_applied_revision) == (Status.OUT_OF_SYNC, 1, None)
    sync(store, {"a": "1", "b": "1"}, "r1")
    assert not store.delete_outside(WS, "nope")
    assert store.state(WS).status is Status.SYNCED and store.state(WS).drift == 0
    store.put_outside(WS, "a", content("hand1"))
    store.put_outside(WS, "a", content("hand2"))
    store.delete_outside(WS, "b")
    assert (store.state(WS).status, store.state(WS).drift) == (Status.OUT_OF_SYNC, 3)
    assert store.drifted_names(WS) == {"a", "b"} and store.drifted_names(OTHER) == {"x"}


def test_an_apply_leaves_an_edit_it_did_not_cover(store: Store) -> None:
    sync(store, {"a": "1", "b": "1", "c": "1"}, "r1")
    desired = {"a": "2", "b": "1", "c": "1"}
    plan, base = read(store, desired)  # before the edits: it covers a only
    store.put_outside(WS, "b", content("hand"))
    store.delete_outside(WS, "c")
    saved = write(store, desired, "r2", plan, base)
    assert (saved.status, saved.drift, saved.last_run_id) == (Status.OUT_OF_SYNC, 2, "r2")
    assert store.state(WS) == saved
    live = store.live_steps(WS)
    assert live["a"].content.do == "2" and live["b"].origin is Origin.OUTSIDE
    assert "c" not in live and store.drifted_names(WS) == {"b", "c"}
    # The next one covers them: b back to git's, c's tombstone gone and c back.
    saved = sync(store, {"a": "2", "b": "1", "c": "1"}, "r3")
    assert (saved.status, saved.drift) == (Status.SYNCED, 0)
    assert store.drifted_names(WS) == set() and store.live_count(WS) == 3


def test_a_covered_edit_that_matches_git_or_a_step_git_deleted_too_is_cleared(
    store: Store,
) -> None:
    sync(store, {"a": "1", "b": "1", "c": "1"}, "r1")
    store.put_outside(WS, "a", content("2"))  # as git will have it
    store.delete_outside(WS, "b")  # git deletes it too
    store.put_outside(WS, "c", content("hand"))  # git deletes it
    saved = sync(store, {"a": "2"}, "r2")
    assert (saved.status, saved.drift) == (Status.SYNCED, 0)
    live = store.live_steps(WS)
    assert set(live) == {"a"} and live["a"].origin is Origin.GIT and live["a"].version == 2
    assert store.drifted_names(WS) == set()
    sync(store, {"a": "2", "b": "1"}, "r3")
    assert store.live_steps(WS)["b"].version == 1  # the tombstone went: a new step


def test_an_empty_plan_records_the_run_and_the_state(store: Store) -> None:
    sync(store, {"a": "1"}, "r1")
    saved = sync(store, {"a": "1"}, "r2")
    assert saved == store.state(WS) and saved.last_applied_revision == "r2"
    assert [r.id for r in store.runs(WS)] == ["r2", "r1"]
    assert store.live_steps(WS)["a"].version == 1


def test_gits_index_is_replaced_or_updated_in_part(store: Store) -> None:
    sync(store, {"a": "1", "b": "1"}, "r1")
    assert store.index_count(WS) == 2 and store.index_count(OTHER) == 0
    assert store.index_files(WS) == {f.path: f for f in (file_of("a", "1"), file_of("b", "1"))}
    moved = Step("a", content("2"), "q/a.step.json", "blob-moved")
    update = IndexUpdate(upserts=(moved,), removes=("p/b.step.json", "p/nope.step.json"))
    run = Run("r2", WS, Trigger.POLL, "r2", RunResult.SUCCEEDED, 3.0, 4.0)
    state = SyncState(WS, Status.SYNCED, "r2", "r2", "r2")
    store.apply(Plan(), update, run, state, ApplyBase("r1"))
    assert store.index_files(WS) == {"p/a.step.json": file_of("a", "1"), moved.path: moved}
    assert store.index_files(WS, ["q/a.step.json", "p/b.step.json"]) == {moved.path: moved}
    assert store.index_files(WS, []) == {}
    found = store.index_by_name(WS, ["a", "b"])
    assert set(found) == {"a"} and sorted(s.path for s in found["a"]) == [
        "p/a.step.json",
        "q/a.step.json",
    ]
    assert store.index_by_name(WS, []) == {} and store.index_by_name(OTHER, ["a"]) == {}


def test_runs_and_meta_read_back_as_written(store: Store) -> None:
    failed = Run("r1", WS, Trigger.WEBHOOK, None, RunResult.FAILED, 1.5, 2.5, 0, 0, 0, "boom", True)
    running = Run("r2", OTHER, Trigger.POLL, "abc", RunResult.PLANNED, 3.0, None, 1, 2, 3)
    store.record_run(failed, SyncState(WS, Status.OUT_OF_SYNC, failed_revision="abc"))
    store.record_run(running, SyncState(OTHER))
    assert store.run("r1") == failed and store.run("r2") == running
    assert store.runs(WS) == [failed] and store.runs(OTHER, limit=0) == []
    assert store.runs_finished_since(0.0, 10.0) == [failed]
    assert store.runs_finished_since(2.5, 10.0) == [] and store.last_success_at(WS) is None
    assert store.state(WS) == SyncState(WS, Status.OUT_OF_SYNC, failed_revision="abc")
    assert store.get_meta("k") is None
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.get_meta("k") == "2"
