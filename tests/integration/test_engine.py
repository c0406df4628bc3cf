"""The engine against a real https git server, real commits and a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.app import Core, build_core
from syncd.config import WorkspaceConfig, load_config
from syncd.core.model import Origin, RunResult, Status, StepContent, Trigger
from tests.support import GitServer, WorkTree, daemon_env, workspace, write_config, write_step


@pytest.fixture
def setup(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> Iterator[tuple[Core, WorkTree]]:
    url, tree = repo
    path = write_config(
        tmp_path,
        [
            workspace("auto", url, git_server, "automatic"),
            workspace("manual", url, git_server, "manual"),
        ],
    )
    core = build_core(load_config(path, daemon_env(git_server)))
    yield core, tree
    core.close()


def ws(core: Core, ws_id: str) -> WorkspaceConfig:
    return core.config.workspace(ws_id)


def push(tree: WorkTree, message: str = "change") -> str:
    sha = tree.commit(message)
    tree.push()
    return sha


def live(core: Core, ws_id: str = "auto") -> dict[str, str]:
    return {n: s.content.do for n, s in core.store.live_steps(ws_id).items()}


def test_initial_sync_then_create_update_delete_by_push(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet", "hello()")
    write_step(tree, "and-done/greeting done", "bye()")
    first = push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert out.run.revision == first and out.run.created == 2
    assert live(core) == {"greet": "hello()", "and-done/greeting done": "bye()"}
    assert core.store.state("auto").status is Status.SYNCED

    write_step(tree, "greet", "hello(2)")
    write_step(tree, "new one", "x()")
    tree.remove("export/steps/and-done__greeting__done.step.json")
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.POLL)
    assert (out.run.created, out.run.updated, out.run.deleted) == (1, 1, 1)
    assert live(core) == {"greet": "hello(2)", "new one": "x()"}
    assert core.store.live_steps("auto")["greet"].version == 2


def test_manual_mode_plans_and_applies_only_on_manual_trigger(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet", "hello()")
    push(tree)
    out = core.engine.sync(ws(core, "manual"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.PLANNED
    assert live(core, "manual") == {}
    state = core.store.state("manual")
    assert state.status is Status.OUT_OF_SYNC and state.drift == 1
    out = core.engine.sync(ws(core, "manual"), Trigger.MANUAL)
    assert out.run.result is RunResult.SUCCEEDED
    assert live(core, "manual") == {"greet": "hello()"}
    assert core.store.state("manual").status is Status.SYNCED


def test_dry_run_applies_nothing(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet")
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.MANUAL, dry_run=True)
    assert out.run.result is RunResult.PLANNED and out.run.dry_run
    assert out.plan is not None and [c.name for c in out.plan.creates] == ["greet"]
    assert live(core) == {}


def test_pinned_revision_rolls_back(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet", "v1")
    v1 = push(tree)
    write_step(tree, "greet", "v2")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    assert live(core) == {"greet": "v2"}
    out = core.engine.sync(ws(core, "auto"), Trigger.MANUAL, revision=v1[:10])
    assert out.run.revision == v1 and live(core) == {"greet": "v1"}
    bad = core.engine.sync(ws(core, "auto"), Trigger.MANUAL, revision="0" * 40)
    assert bad.run.result is RunResult.FAILED and live(core) == {"greet": "v1"}


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"export/steps/bad.step.json": "{not json"}, "export/steps/bad.step.json"),
        (
            {"export/steps/a.step.json": '{"name": "greet", "content": {"if": "t", "do": "d"}}'},
            "both define step 'greet'",
        ),
        (
            {
                "export/steps/t.step.json": '{"name": "t", "content": {"if": "a", "do": "b"},'
                ' "json": "{}", "hash": "00"}'
            },
            "corrupt",
        ),
        ({"export/steps/big.step.json": "x" * (1024 * 1024 + 1)}, "over the limit"),
        (
            {"export/steps/x.step.json": '{"name": "x", "content": {"if": 1, "do": "b"}}'},
            "content.if",
        ),
    ],
)
def test_bad_files_apply_nothing_and_name_the_file(
    setup: tuple[Core, WorkTree], files: dict[str, str], fragment: str
) -> None:
    core, tree = setup
    write_step(tree, "greet", "good()")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    write_step(tree, "other", "new()")  # a good change riding with the bad one
    for path, text in files.items():
        tree.write(path, text)
    bad = push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert fragment in (out.run.error or "")
    assert live(core) == {"greet": "good()"}
    state = core.store.state("auto")
    assert state.failed_revision == bad and state.status is Status.OUT_OF_SYNC


def test_empty_export_is_refused_unless_allowed(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    tree.remove("export/steps/greet.step.json")
    tree.write("export/README.md", "moved")
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    assert out.run.result is RunResult.FAILED and "allow_empty" in (out.run.error or "")
    assert live(core) == {"greet": "done()"}


def test_a_commit_replacing_every_step_with_others_applies(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "placeholder")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    tree.remove("export/steps/placeholder.step.json")
    for i in range(30):
        write_step(tree, f"real/{i}", f"r{i}()")
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert (out.run.created, out.run.deleted) == (30, 1)
    assert live(core) == {f"real/{i}": f"r{i}()" for i in range(30)}


def test_every_bad_file_of_a_commit_is_named_in_one_run(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet", "good()")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    tree.write("export/steps/a.step.json", "{not json")
    tree.write("export/steps/b.step.json", '{"name": "b", "content": {"if": 1, "do": "x"}}')
    write_step(tree, "greet", "again()")  # greet.step.json, changed
    tree.write("export/steps/c.step.json", (tree.path / "export/steps/greet.step.json").read_text())
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.WEBHOOK)
    error = out.run.error or ""
    assert out.run.result is RunResult.FAILED and error.startswith("3 step files are wrong: ")
    assert "export/steps/a.step.json: is not valid JSON" in error
    assert "export/steps/b.step.json: `content.if` must be a string, got a number" in error
    assert "both define step 'greet'" in error
    assert live(core) == {"greet": "good()"}


def test_missing_path_is_an_error(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    tree.write("other/file.txt", "x")
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    assert out.run.result is RunResult.FAILED and "not found" in (out.run.error or "")


def test_symlink_and_submodule_are_refused(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "greet")
    tree.symlink("export/steps/link.step.json", "greet.step.json")
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    assert out.run.result is RunResult.FAILED and "symlink" in (out.run.error or "")
    assert live(core) == {}


def test_wrong_password_fails_cleanly_without_leaking(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    write_step(tree, "greet")
    push(tree)
    path = write_config(tmp_path, [workspace("auto", url, git_server)])
    env = daemon_env(git_server) | {"SYNCD_TEST_GIT_TOKEN": "wrong-password-xyz"}
    core = build_core(load_config(path, env))
    try:
        out = core.engine.sync(core.config.workspace("auto"), Trigger.MANUAL)
        assert out.run.result is RunResult.FAILED
        assert "wrong-password-xyz" not in (out.run.error or "")
        assert core.store.live_steps("auto") == {}
    finally:
        core.close()


def test_outside_edits_are_overwritten_by_the_next_apply(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    write_step(tree, "a", "git()")
    write_step(tree, "b", "git()")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    core.store.put_outside("auto", "a", StepContent("true", "hand()"))
    core.store.put_outside("auto", "extra", StepContent("true", "hand()"))
    core.store.delete_outside("auto", "b")
    assert core.store.live_steps("auto")["a"].origin is Origin.OUTSIDE
    out = core.engine.sync(ws(core, "auto"), Trigger.DRIFT)
    assert (out.run.created, out.run.updated, out.run.deleted) == (1, 1, 1)
    assert live(core) == {"a": "git()", "b": "git()"}
    assert core.store.drifted_names("auto") == set()


def test_incremental_sync_reads_only_the_changed_blob(setup: tuple[Core, WorkTree]) -> None:
    core, tree = setup
    for i in range(2000):
        write_step(tree, f"step {i:04d}", f"run({i})")
    push(tree, "2000 steps")
    first = core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    assert first.run.created == 2000
    write_step(tree, "step 0042", "run(changed)")
    push(tree, "one change")
    reading = core.engine.read_at(ws(core, "auto"), core.engine.resolve(ws(core, "auto")))
    assert reading.incremental and reading.blobs_read == 1
    assert len(reading.plan.updates) == 1 and reading.plan.unchanged == 1999
    out = core.engine.sync(ws(core, "auto"), Trigger.WEBHOOK)
    assert out.run.updated == 1
    assert live(core)["step 0042"] == "run(changed)"


def test_incremental_sync_catches_duplicates_against_unchanged_files(
    setup: tuple[Core, WorkTree],
) -> None:
    core, tree = setup
    write_step(tree, "greet", "a()")
    push(tree)
    core.engine.sync(ws(core, "auto"), Trigger.MANUAL)
    tree.write(
        "export/steps/copy.step.json", '{"name": "greet", "content": {"if": "t", "do": "b()"}}'
    )
    push(tree)
    out = core.engine.sync(ws(core, "auto"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert "greet.step.json" in (out.run.error or "") and "copy.step.json" in (out.run.error or "")


def test_a_new_path_in_the_config_reads_everything_again(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    write_step(tree, "old", "a()")
    write_step(tree, "old", "a2()", folder="elsewhere")
    write_step(tree, "new", "b()", folder="elsewhere")
    push(tree)
    first = write_config(tmp_path, [workspace("auto", url, git_server)])
    core = build_core(load_config(first, daemon_env(git_server)))
    core.engine.sync(core.config.workspace("auto"), Trigger.MANUAL)
    core.close()
    write_step(tree, "new2", "c()", folder="elsewhere")
    push(tree)
    moved = write_config(
        tmp_path, [workspace("auto", url, git_server, source={"path": "elsewhere"})]
    )
    core = build_core(load_config(moved, daemon_env(git_server)))
    try:
        out = core.engine.sync(core.config.workspace("auto"), Trigger.MANUAL)
        assert out.run.result is RunResult.SUCCEEDED, out.run.error
        assert live(core) == {"old": "a2()", "new": "b()", "new2": "c()"}
    finally:
        core.close()
