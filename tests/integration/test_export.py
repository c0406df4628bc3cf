"""The export against the real https git server: commit in memory, push, read back with git."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.app import Core, build_core
from syncd.config import WorkspaceConfig, load_config
from syncd.core.errors import Conflict
from syncd.core.layout import LayoutError
from syncd.core.model import RunResult, StepContent, Trigger
from syncd.core.steps import render_step_file
from syncd.git import GitSource
from syncd.sync.export import (
    ExportRefused,
    ExportRequest,
    ExportResult,
    InvalidExport,
    export_workspace,
    parse_export_request,
)
from tests.support import GitServer, WorkTree, daemon_env, workspace, write_config

pytestmark = pytest.mark.timeout(120)

AUTHOR = {"name": "Export Bot", "email": "export-bot@example.com"}
STEPS = {
    "greet": StepContent("true", "hello();"),
    "and-done/greeting done": StepContent("data.x", "return { a: `b` }; /* */ */"),
    "ünï/cödé": StepContent("1", "x()", valid=False),
}
OFF = StepContent("true", "off()", enabled=False)


class Setup:
    def __init__(self, core: Core, tree: WorkTree, server: GitServer, url: str, tmp: Path) -> None:
        self.core, self.tree, self.server, self.url, self.tmp = core, tree, server, url, tmp
        self.ops: list[tuple[str, str]] = []

    def ws(self, ws_id: str = "dev") -> WorkspaceConfig:
        return self.core.config.workspace(ws_id)

    def export(self, branch: str, ws_id: str = "dev", **kw: object) -> ExportResult:
        order = ExportRequest(branch, kw.pop("message", None), **kw)  # type: ignore[arg-type]
        return export_workspace(
            self.core.git, self.core.store, self.core.config, self.ws(ws_id), order
        )

    def remote_head(self, branch: str) -> str | None:
        out = self.server.run_git("ls-remote", self.url, f"refs/heads/{branch}").stdout
        return out.split()[0] if out.strip() else None

    def clone(self, branch: str) -> Path:
        dest = self.tmp / f"clone-{len(list(self.tmp.iterdir()))}"
        self.server.run_git("clone", "--quiet", "--branch", branch, self.url, str(dest))
        return dest

    def git(self, clone: Path, *args: str) -> str:
        return self.server.run_git(*args, cwd=clone).stdout


@pytest.fixture
def setup(git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path) -> Iterator[Setup]:
    url, tree = repo
    path = write_config(
        tmp_path,
        [
            workspace("dev", url, git_server, "manual"),
            workspace("prod", url, git_server, "automatic"),
            workspace("flat", url, git_server, "manual", source={"path": "deploy"}),
        ],
        git={"author": AUTHOR},
    )
    calls: list[tuple[str, str]] = []
    core = build_core(
        load_config(path, daemon_env(git_server)),
        git_observer=lambda op, result, _s: calls.append((op, result)),
    )
    (tmp_path / "clones").mkdir()
    s = Setup(core, tree, git_server, url, tmp_path / "clones")
    s.ops = calls
    for name, content in {**STEPS, "off": OFF}.items():
        core.store.put_outside("dev", name, content)
    yield s
    core.close()


def test_export_to_a_new_branch_read_back_with_git(setup: Setup) -> None:
    main = setup.tree.head()
    result = setup.export("promote/dev", message="Promote dev")
    assert result.changed and result.branch == "promote/dev"
    assert result.files == 6  # 3 step files, 3 .mts files
    assert setup.remote_head("promote/dev") == result.commit
    assert setup.remote_head("main") == main  # the tracked branch is untouched

    clone = setup.clone("promote/dev")
    log = setup.git(clone, "log", "-1", "--format=%an <%ae>|%P|%s").strip()
    assert log == f"Export Bot <export-bot@example.com>|{main}|Promote dev"
    for name, content in STEPS.items():
        file = clone / "export/steps" / (name.replace("/", "__").replace(" ", "__") + ".step.json")
        assert file.read_bytes() == render_step_file(name, content)
    assert not (clone / "export/steps/off.step.json").exists()  # disabled: not exported
    mts = (clone / "src/steps/and-done/greeting done.mts").read_text()
    assert "Workspace:  dev" in mts and "return { a: `b` }; /* */ */" in mts
    assert (clone / "src/steps/ünï/cödé.mts").is_file()
    assert (clone / "README.md").is_file()  # the base's files stay
    assert ("push", "ok") in setup.ops


def test_nothing_changed_means_no_commit(setup: Setup) -> None:
    first = setup.export("promote/dev")
    again = setup.export("promote/dev")
    assert not again.changed and again.commit == first.commit
    assert setup.remote_head("promote/dev") == first.commit


def test_a_new_export_goes_on_top_of_the_branch_and_removes_stale_files(setup: Setup) -> None:
    first = setup.export("promote/dev")
    # Someone adds files of their own to the branch.
    setup.tree.git("fetch", "--quiet", "origin")
    setup.tree.git("checkout", "--quiet", "-B", "promote/dev", "origin/promote/dev")
    setup.tree.write("src/steps/helper.mts", "export const helper = 1;\n")
    setup.tree.write("notes.md", "notes\n")
    theirs = setup.tree.commit("helpers")
    setup.tree.push("promote/dev")
    # The workspace changes: one step deleted, one edited.
    setup.core.store.delete_outside("dev", "and-done/greeting done")
    setup.core.store.put_outside("dev", "greet", StepContent("true", "hello(2);"))
    second = setup.export("promote/dev")
    assert second.changed
    clone = setup.clone("promote/dev")
    assert setup.git(clone, "log", "-1", "--format=%P").strip() == theirs
    assert first.commit in setup.git(clone, "log", "--format=%H")
    assert not (clone / "export/steps/and-done__greeting__done.step.json").exists()
    assert not (clone / "src/steps/and-done").exists()  # the emptied folder is gone
    assert b"hello(2);" in (clone / "export/steps/greet.step.json").read_bytes()
    assert (clone / "src/steps/helper.mts").is_file() and (clone / "notes.md").is_file()


def test_the_tracked_branch_of_an_automatic_workspace_needs_allow(setup: Setup) -> None:
    main = setup.tree.head()
    with pytest.raises(ExportRefused, match="prod"):
        setup.export("main")
    assert setup.remote_head("main") == main
    result = setup.export("main", allow_tracked_branch=True)
    assert setup.remote_head("main") == result.commit
    # prod follows main: it now holds dev's enabled steps, step for step.
    run = setup.core.engine.sync(setup.ws("prod"), Trigger.POLL).run
    assert run.result is RunResult.SUCCEEDED, run.error
    live = {n: s.content for n, s in setup.core.store.live_steps("prod").items()}
    assert live == STEPS


def test_a_branch_that_moves_meanwhile_is_a_conflict(setup: Setup) -> None:
    setup.export("promote/dev")
    setup.core.store.put_outside("dev", "greet", StepContent("true", "raced();"))
    tree = setup.tree

    class Racing(GitSource):
        """Someone pushes to the branch between the export's commit and its push."""

        def commit_files(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            commit = super().commit_files(*args, **kwargs)
            tree.git("fetch", "--quiet", "origin")
            tree.git("checkout", "--quiet", "-B", "promote/dev", "origin/promote/dev")
            tree.write("theirs.txt", "theirs\n")
            tree.commit("theirs")
            tree.push("promote/dev")
            return commit

    racing = Racing(
        setup.core.config.state_dir, observer=lambda op, r, _s: setup.ops.append((op, r))
    )
    order = ExportRequest("promote/dev")
    with pytest.raises(Conflict, match="never force-pushes"):
        export_workspace(racing, setup.core.store, setup.core.config, setup.ws(), order)
    assert setup.remote_head("promote/dev") == tree.head()  # theirs is kept
    assert ("push", "error") in setup.ops


def test_a_hand_written_file_in_the_way_is_refused(setup: Setup) -> None:
    setup.tree.write("src/steps/greet.mts", "export const mine = 1;\n")
    setup.tree.commit("mine")
    setup.tree.push()
    with pytest.raises(LayoutError, match=r"src/steps/greet\.mts"):
        setup.export("promote/dev")
    assert setup.remote_head("promote/dev") is None


def test_another_path_gets_only_step_files(setup: Setup) -> None:
    setup.core.store.put_outside("flat", "a/b", StepContent("true", "x"))
    result = setup.export("flat-export", "flat")
    assert result.files == 1
    clone = setup.clone("flat-export")
    assert (clone / "deploy/a__b.step.json").is_file() and not (clone / "src").exists()


def test_request_validation() -> None:
    assert parse_export_request({"branch": "refs/heads/x"}) == ExportRequest("x")
    for body in (
        {},
        {"branch": 1},
        {"branch": "a..b"},
        {"branch": "x", "message": ""},
        {"branch": "x", "message": "a\x00"},
        {"branch": "x", "allow_tracked_branch": "yes"},
    ):
        with pytest.raises(InvalidExport):
            parse_export_request(body)
