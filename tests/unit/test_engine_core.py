"""One sync, phase by phase, against the stateful fakes: fast, and no I/O.

Each test asserts on what the store holds afterwards and what git was asked for (as counts
the fake git keeps), the way tests/integration/test_engine.py does against the real thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import pytest

from syncd.config import DeleteLimit
from syncd.core.errors import GitError
from syncd.core.model import Mode, Origin, RunResult, Status, StepContent, Trigger
from syncd.runs.scheduler import should_sync
from syncd.store import StoreError
from syncd.sync.engine import Engine
from syncd.sync.parsed_steps import ParsedSteps
from tests.support.fakes import STEPS_PATH, FakeGit, FakeStore, step_files, workspace

WS = workspace("ws")


@dataclass
class World:
    store: FakeStore
    git: FakeGit
    engine: Engine

    def live(self, ws_id: str = "ws") -> dict[str, str]:
        return {n: s.content.do for n, s in self.store.live_steps(ws_id).items()}


@pytest.fixture
def world() -> World:
    ticks = count(1000)  # each look at the clock is one second later: runs order by time
    store = FakeStore(clock=lambda: float(next(ticks)))
    git = FakeGit()
    return World(store, git, Engine(store, git, clock=lambda: float(next(ticks))))


def test_first_sync_creates_every_step_and_records_the_run(world: World) -> None:
    sha = world.git.commit(step_files({"greet": "hello()", "a/b c": "bye()", "third": "x()"}))
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert (out.run.revision, out.run.created, out.run.updated, out.run.deleted) == (sha, 3, 0, 0)
    assert world.live() == {"greet": "hello()", "a/b c": "bye()", "third": "x()"}
    assert all(
        (s.version, s.origin) == (1, Origin.GIT) for s in world.store.live_steps("ws").values()
    )
    assert world.store.runs("ws") == [out.run]
    state = world.store.state("ws")
    assert state.status is Status.SYNCED and state.last_applied_revision == sha
    assert state.last_run_id == out.run.id and state.failed_revision is None
    assert world.store.index_count("ws") == 3
    assert world.git.fetches == 1 and world.git.blobs_read == 3


def test_a_second_workspace_at_the_same_commit_reads_no_file(world: World) -> None:
    """Workspaces of one remote at one commit (a startup, a push to the branch they share):
    the first reads the folder's files, the others take its steps as they are."""
    world.git.commit(step_files({"greet": "hello()", "other": "o()"}))
    first = world.engine.sync(WS, Trigger.STARTUP)
    reads = world.git.blobs_read
    second = world.engine.sync(workspace("ws2"), Trigger.STARTUP)
    assert second.run.result is RunResult.SUCCEEDED, second.run.error
    assert (first.run.created, second.run.created) == (2, 2)
    assert world.git.blobs_read == reads
    assert world.live("ws2") == {"greet": "hello()", "other": "o()"}
    assert world.store.index_count("ws2") == 2


def test_a_reading_from_a_workspaces_own_index_is_not_shared(world: World) -> None:
    """A full read of a commit already applied takes its steps from the workspace's own index
    (its parse of each blob): that is the workspace's, not another's to take."""
    world.git.commit(step_files({"greet": "hello()"}))
    world.engine.sync(WS, Trigger.STARTUP)
    world.engine.sync(WS, Trigger.MANUAL)  # the same commit again: read from the index
    world.engine.parsed = ParsedSteps()  # a restart: nothing parsed in this process yet
    world.engine.sync(WS, Trigger.MANUAL)
    reads = world.git.blobs_read
    world.engine.sync(workspace("ws2"), Trigger.STARTUP)
    assert world.git.blobs_read == reads + 1  # ws2 parsed the blob itself


def test_a_bad_file_fails_every_workspace_that_reads_it(world: World) -> None:
    """A listing with a problem is not kept: each workspace's run names the bad file."""
    world.git.commit({f"{STEPS_PATH}/bad.step.json": "{not json"})
    for ws_id in ("ws", "ws2"):
        out = world.engine.sync(workspace(ws_id), Trigger.STARTUP)
        assert out.run.result is RunResult.FAILED
        assert out.run.error and f"{STEPS_PATH}/bad.step.json" in out.run.error


def test_a_commit_changing_one_file_reads_and_applies_only_that(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()", "other": "o()", "third": "x()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    reads, fetches = world.git.blobs_read, world.git.fetches
    second = world.git.commit(step_files({"greet": "hello(2)"}))
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert (out.run.created, out.run.updated, out.run.deleted) == (0, 1, 0)
    assert out.plan is not None and out.plan.unchanged == 2
    assert world.git.blobs_read - reads == 1  # the incremental path read one blob
    assert world.git.fetches - fetches == 1
    live = world.store.live_steps("ws")
    assert live["greet"].content.do == "hello(2)" and live["greet"].version == 2
    assert live["other"].version == 1 and live["third"].version == 1
    assert world.store.state("ws").last_applied_revision == second
    # The record of git's files moved on with the commit.
    assert {s.name: s.content.do for s in world.store.index_files("ws").values()}["greet"] == (
        "hello(2)"
    )


def test_a_manual_workspace_only_plans_on_a_webhook(world: World) -> None:
    manual = workspace("ws", mode=Mode.MANUAL)
    sha = world.git.commit(step_files({"greet": "hello()", "other": "o()"}))
    out = world.engine.sync(manual, Trigger.WEBHOOK)
    assert out.run.result is RunResult.PLANNED
    assert out.plan is not None and [c.name for c in out.plan.creates] == ["greet", "other"]
    # The contract: a planned run counts its plan.
    assert (out.run.created, out.run.updated, out.run.deleted) == (2, 0, 0)
    assert world.live() == {}
    state = world.store.state("ws")
    assert state.status is Status.OUT_OF_SYNC and state.drift == 2
    assert state.last_seen_revision == sha and state.last_applied_revision is None
    assert world.store.runs("ws") == [out.run]
    # A person asking applies it.
    out = world.engine.sync(manual, Trigger.MANUAL)
    assert out.run.result is RunResult.SUCCEEDED
    assert world.live() == {"greet": "hello()", "other": "o()"}
    assert world.store.state("ws").status is Status.SYNCED


def test_a_dry_run_applies_nothing(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()"}))
    before = world.store.snapshot()
    out = world.engine.sync(WS, Trigger.MANUAL, dry_run=True)
    assert out.run.result is RunResult.PLANNED and out.run.dry_run
    assert out.plan is not None and [c.name for c in out.plan.creates] == ["greet"]
    after = world.store.snapshot()
    assert after.steps == before.steps and after.git_files == before.git_files
    assert world.store.state("ws").last_applied_revision is None


def test_planned_and_dry_runs_record_the_counts_of_their_plan(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()", "other": "o()", "gone": "g()"}))
    world.engine.sync(WS, Trigger.MANUAL)
    world.git.commit(step_files({"greet": "hello(2)", "gone": None, "new": "n()", "new2": "m()"}))
    dry = world.engine.sync(WS, Trigger.MANUAL, dry_run=True)
    planned = world.engine.sync(workspace("ws", mode=Mode.MANUAL), Trigger.WEBHOOK)
    for out in (dry, planned):
        assert out.run.result is RunResult.PLANNED
        assert (out.run.created, out.run.updated, out.run.deleted) == (2, 1, 1)
        assert world.store.run(out.run.id) == out.run
    assert world.live() == {"greet": "hello()", "other": "o()", "gone": "g()"}


def test_a_pinned_revision_syncs_to_that_commit(world: World) -> None:
    v1 = world.git.commit(step_files({"greet": "v1"}))
    world.git.commit(step_files({"greet": "v2"}))
    world.engine.sync(WS, Trigger.MANUAL)
    assert world.live() == {"greet": "v2"}
    fetches = world.git.fetches
    out = world.engine.sync(WS, Trigger.MANUAL, revision=v1[:10])
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert out.run.revision == v1 and world.live() == {"greet": "v1"}
    assert world.git.fetches == fetches  # the mirror had it: no fetch
    assert world.store.state("ws").last_applied_revision == v1


def test_an_unknown_pinned_revision_fails_and_changes_nothing(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(WS, Trigger.MANUAL)
    out = world.engine.sync(WS, Trigger.MANUAL, revision="0" * 40)
    assert out.run.result is RunResult.FAILED and out.run.error
    assert "0" * 40 in out.run.error
    assert world.live() == {"greet": "v1"}


def test_a_bad_step_file_fails_the_run_and_that_commit_is_not_retried(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    before = world.store.snapshot()
    bad = world.git.commit({f"{STEPS_PATH}/bad.step.json": "{not json"})
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert out.run.error and f"{STEPS_PATH}/bad.step.json" in out.run.error
    after = world.store.snapshot()
    assert after.steps == before.steps and after.git_files == before.git_files
    state = world.store.state("ws")
    assert state.failed_revision == bad and state.status is Status.OUT_OF_SYNC
    assert state.last_seen_revision == bad
    assert not should_sync(WS.mode, state, bad)  # permanent: waits for a new commit
    # The fix is a new commit, which syncs and forgets the failure.
    fixed = world.git.commit({f"{STEPS_PATH}/bad.step.json": None})
    assert should_sync(WS.mode, state, fixed)
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert world.store.state("ws").failed_revision is None


@pytest.mark.parametrize("incremental", [False, True])
def test_every_bad_step_file_is_named_in_one_run(world: World, incremental: bool) -> None:
    world.git.commit(step_files({"greet": "hello()"}))
    if incremental:
        world.engine.sync(WS, Trigger.WEBHOOK)
    good = step_files({"fine": "f()"})
    world.git.commit(
        {
            **good,
            f"{STEPS_PATH}/a.step.json": "{not json",
            f"{STEPS_PATH}/b.step.json": '{"name": 7, "content": {}}',
            f"{STEPS_PATH}/c.step.json": step_files({"greet": "again()"})[
                f"{STEPS_PATH}/greet.step.json"
            ]
            or b"",
            **{f"{STEPS_PATH}/z{i:02}.step.json": "[]" for i in range(25)},
        }
    )
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and out.run.error
    error = out.run.error
    assert error.startswith("28 step files are wrong: "), error
    assert f"{STEPS_PATH}/a.step.json: is not valid JSON" in error
    assert f"{STEPS_PATH}/b.step.json: `name` must be a string, got a number" in error
    assert f"{STEPS_PATH}/c.step.json" in error and "both define step 'greet'" in error
    assert f"{STEPS_PATH}/z00.step.json: must be a JSON object, got an array" in error
    assert error.endswith("; and 8 more")
    assert "fine" not in world.live()


def test_a_commit_replacing_every_step_with_other_steps_applies(world: World) -> None:
    world.git.commit(step_files({"placeholder": "p()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    names = {f"real/{i}": f"r{i}()" for i in range(50)}
    world.git.commit({**step_files({"placeholder": None}), **step_files(names)})
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert (out.run.created, out.run.deleted) == (50, 1)
    assert world.live() == names


def test_max_deletes_refuses_a_mass_deletion(world: World) -> None:
    world.git.commit(step_files({f"s{i}": "x()" for i in range(10)}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    world.git.commit(step_files({f"s{i}": None for i in range(3)}))
    limited = workspace("ws", max_deletes=DeleteLimit(percent=20))
    out = world.engine.sync(limited, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and out.run.error
    assert "would delete 3 of the 10 steps" in out.run.error and "max_deletes: 20%" in out.run.error
    assert len(world.live()) == 10
    out = world.engine.sync(workspace("ws", max_deletes=DeleteLimit(count=3)), Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert len(world.live()) == 7


def test_a_vanished_export_folder_follows_the_empty_result_rule(world: World) -> None:
    world.git.commit({**step_files({"greet": "hello()"}), "README.md": "x"})
    world.engine.sync(WS, Trigger.WEBHOOK)
    world.git.commit(step_files({"greet": None}))  # the folder is gone with its last file
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and out.run.error
    assert "not found" in out.run.error and "would leave the workspace empty" in out.run.error
    assert world.live() == {"greet": "hello()"}
    out = world.engine.sync(workspace("ws", allow_empty=True), Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert world.live() == {}


def test_a_transient_git_error_fails_the_run_for_a_retry(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()"}))
    world.git.outage = GitError("connection refused")
    out = world.engine.sync(WS, Trigger.POLL)
    assert out.run.result is RunResult.FAILED and out.run.error == "connection refused"
    assert world.store.state("ws").failed_revision is None
    world.git.outage = None
    assert world.engine.sync(WS, Trigger.POLL).run.result is RunResult.SUCCEEDED


def test_a_failed_apply_leaves_the_store_exactly_as_before(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()", "other": "o()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    world.git.commit(step_files({"greet": "hello(2)", "other": None, "new": "n()"}))
    before = world.store.snapshot()
    world.store.fail_next_apply = OSError("disk I/O error")
    # Every failure is a recorded run, even one the engine has no type for.
    failed = world.engine.sync(WS, Trigger.WEBHOOK)
    assert failed.run.result is RunResult.FAILED and "disk I/O error" in (failed.run.error or "")
    after = world.store.snapshot()
    assert (after.steps, after.git_files) == (before.steps, before.git_files)
    # The next try applies the whole commit.
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert (out.run.created, out.run.updated, out.run.deleted) == (1, 1, 1)
    assert world.live() == {"greet": "hello(2)", "new": "n()"}


def test_a_store_error_on_apply_records_a_failed_run_and_nothing_else(world: World) -> None:
    first = world.git.commit(step_files({"greet": "hello()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    world.git.commit(step_files({"greet": "hello(2)"}))
    before = world.store.snapshot()
    world.store.fail_next_apply = StoreError("database is locked")
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and out.run.error == "database is locked"
    after = world.store.snapshot()
    assert after.steps == before.steps and after.git_files == before.git_files
    state = world.store.state("ws")
    assert state.last_applied_revision == first and state.failed_revision is None
    assert world.store.runs("ws")[0] == out.run


@pytest.mark.parametrize("leftover", [{}, {f"{STEPS_PATH}/README.md": "steps live here"}])
def test_a_commit_removing_every_step_is_refused_unless_allowed(
    world: World, leftover: dict[str, str]
) -> None:
    # With or without other files left, the folder holds no step any more.
    world.git.commit({**step_files({"greet": "hello()", "other": "o()"}), **leftover})
    world.engine.sync(WS, Trigger.WEBHOOK)
    wipe = world.git.commit(step_files({"greet": None, "other": None}))
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert out.run.error and "allow_empty" in out.run.error
    assert world.live() == {"greet": "hello()", "other": "o()"}
    assert world.store.state("ws").failed_revision == wipe
    out = world.engine.sync(workspace("ws", allow_empty=True), Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert out.run.deleted == 2 and world.live() == {}
    assert world.store.state("ws").last_applied_revision == wipe


@pytest.mark.parametrize("edit", ["put", "delete"])
def test_an_outside_edit_is_overwritten_by_the_next_sync(world: World, edit: str) -> None:
    world.git.commit(step_files({"greet": "hello()", "other": "o()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    step_id = world.store.live_steps("ws")["greet"].id
    if edit == "put":
        world.store.put_outside("ws", "greet", StepContent("false", "edited()"))
    else:
        assert world.store.delete_outside("ws", "greet")
    assert world.store.drifted_names("ws") == {"greet"}
    assert world.store.state("ws").status is Status.OUT_OF_SYNC
    out = world.engine.sync(WS, Trigger.DRIFT)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert world.live() == {"greet": "hello()", "other": "o()"}
    greet = world.store.live_steps("ws")["greet"]
    assert greet.origin is Origin.GIT and greet.id == step_id and greet.version == 3
    assert world.store.drifted_names("ws") == set()
    assert world.store.state("ws").status is Status.SYNCED


def test_an_outside_edit_is_overwritten_by_a_commit_touching_another_step(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()", "other": "o()", "third": "x()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    world.store.put_outside("ws", "greet", StepContent("false", "edited()"))
    reads = world.git.blobs_read
    world.git.commit(step_files({"other": "o(2)"}))
    out = world.engine.sync(WS, Trigger.WEBHOOK)
    assert (out.run.created, out.run.updated, out.run.deleted) == (0, 2, 0)
    assert world.git.blobs_read - reads == 1  # still incremental: greet came from the index
    assert world.live() == {"greet": "hello()", "other": "o(2)", "third": "x()"}
    assert world.store.live_steps("ws")["greet"].origin is Origin.GIT


def test_a_preview_plans_incrementally_and_records_nothing(world: World) -> None:
    world.git.commit(step_files({"greet": "hello()", "other": "o()"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    head = world.git.commit(step_files({"other": "o(2)", "new": "n()"}))
    before = world.store.snapshot()
    reading = world.engine.preview(WS)
    assert reading.revision == head and reading.incremental and reading.blobs_read == 2
    assert [c.name for c in reading.plan.changes] == ["new", "other"]
    assert world.store.snapshot() == before


class RacingStore(FakeStore):
    """A FakeStore where something else writes just before each of the first `races` applies."""

    def __init__(self, race: Callable[[FakeStore], object], races: int = 1) -> None:
        super().__init__()
        self.race, self.races, self.applies = race, races, 0

    def apply(self, *args: Any) -> Any:
        self.applies += 1
        if self.applies <= self.races:
            self.race(self)
        return super().apply(*args)


def test_an_outside_edit_between_plan_and_apply_is_planned_again() -> None:
    git = FakeGit()
    store = RacingStore(lambda s: s.put_outside("ws", "a", StepContent("true", "hand()")))
    engine = Engine(store, git)
    git.commit(step_files({"a": "1()", "b": "1()"}))
    store.races = 0
    engine.sync(WS, Trigger.WEBHOOK)
    git.commit(step_files({"a": "2()", "b": "1()"}))
    store.races = store.applies + 1  # the next apply races an edit of a step in its plan
    out = engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    live = store.live_steps("ws")
    assert live["a"].content.do == "2()" and live["a"].origin is Origin.GIT
    assert store.state("ws").status is Status.SYNCED and not store.drifted_names("ws")


def test_an_apply_that_keeps_conflicting_fails_transiently_and_writes_nothing() -> None:
    git = FakeGit()
    edits = count()
    store = RacingStore(
        lambda s: s.put_outside("ws", "a", StepContent("true", f"hand{next(edits)}()")), races=0
    )
    engine = Engine(store, git)
    git.commit(step_files({"a": "1()"}))
    engine.sync(WS, Trigger.WEBHOOK)
    git.commit(step_files({"a": "2()"}))
    store.races = 100
    out = engine.sync(WS, Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED and "changed since the plan" in (out.run.error or "")
    assert out.state.failed_revision is None  # transient: the scheduler retries
    assert store.live_steps("ws")["a"].origin is Origin.OUTSIDE


def test_workspaces_on_one_remote_read_each_blob_once(world: World) -> None:
    """The parsed-steps cache: a second workspace on the same remote needs no blob read, and
    still gets every step, its own run and its own index."""
    world.git.commit(step_files({"greet": "hello()", "other": "o()"}))
    first = world.engine.sync(workspace("dev"), Trigger.STARTUP)
    reads = world.git.blobs_read
    second = world.engine.sync(workspace("prod"), Trigger.STARTUP)
    assert first.run.result is second.run.result is RunResult.SUCCEEDED
    assert world.git.blobs_read == reads == 2
    assert world.live("prod") == world.live("dev") == {"greet": "hello()", "other": "o()"}
    assert world.store.index_count("prod") == 2


def test_a_head_hint_older_than_the_applied_commit_is_asked_again(world: World) -> None:
    """A poll or the startup comparison learned a head; a webhook's run applied a newer commit
    before the hinted run started. The hint is stale: the run asks the remote again and keeps
    the newer commit, instead of taking the workspace back."""
    old = world.git.commit(step_files({"greet": "hello()"}))
    world.engine.sync(WS, Trigger.STARTUP)
    new = world.git.commit(step_files({"greet": "hello(2)", "more": "m()"}))
    assert world.engine.sync(WS, Trigger.WEBHOOK).run.revision == new
    out = world.engine.sync(WS, Trigger.STARTUP, head=old)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert out.run.revision == new and (out.run.created, out.run.deleted) == (0, 0)
    assert world.live() == {"greet": "hello(2)", "more": "m()"}


def test_a_head_hint_that_moved_back_is_applied_when_the_remote_says_so(world: World) -> None:
    """A force-push back to an older commit: the remote itself says the older commit is the
    head, so it is applied, hint or not."""
    old = world.git.commit(step_files({"greet": "hello()"}))
    world.git.commit(step_files({"greet": "hello(2)"}))
    world.engine.sync(WS, Trigger.WEBHOOK)
    world.git.branches["main"] = old  # the branch was reset to the older commit
    out = world.engine.sync(WS, Trigger.POLL, head=old)
    assert out.run.revision == old and world.live() == {"greet": "hello()"}
