"""Day-one operations with real parts: the CLI in local mode against the https git server
(`wait --revision`, the runs' actor, message and author read by pygit2, `resume` of a manual
workspace), and a request's actor kept by the PostgreSQL queue from submit to claim."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path

import pytest

from syncd.cli import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, main
from syncd.core.model import Trigger
from syncd.git import GitSource, Remote
from syncd.runs.replicas.postgres import PostgresCoordinator
from syncd.store.postgres import PostgresStore
from tests.support import (
    GIT_PASSWORD_ENV,
    GitServer,
    WorkTree,
    postgres,
    workspace,
    write_config,
    write_step,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def local(
    git_server: GitServer,
    repo: tuple[str, WorkTree],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, WorkTree]:
    url, tree = repo
    monkeypatch.delenv("SYNCD_SERVER", raising=False)
    monkeypatch.setenv(GIT_PASSWORD_ENV, git_server.password)
    workspaces = [
        workspace("auto", url, git_server, "automatic"),
        workspace("manual", url, git_server, "manual"),
    ]
    return write_config(tmp_path, workspaces), tree


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def test_local_wait_runs_and_resume(
    local: tuple[Path, WorkTree], capsys: pytest.CaptureFixture[str]
) -> None:
    config, tree = local
    write_step(tree, "greet", "hello()")
    tree.commit("Greet everyone\n\nwith a body that is not recorded")
    tree.push()
    # Pushed, not applied: the wait sees HEAD is not there yet.
    assert cli(config, "wait", "auto", "--revision", "HEAD", "--timeout", "0") == EXIT_TIMEOUT
    assert "not applied after 0" in capsys.readouterr().err
    assert cli(config, "sync", "auto") == EXIT_OK
    capsys.readouterr()
    assert cli(config, "wait", "auto", "--revision", "HEAD", "--json", "--timeout", "5s") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["result"] == "applied" and answer["revision"] == tree.head()
    # The run: who asked, and the commit it read (pygit2, first line only).
    assert cli(config, "runs", "auto", "--json") == EXIT_OK
    run = json.loads(capsys.readouterr().out)[0]
    author = tree.git("log", "-1", "--format=%an <%ae>").strip()
    assert run["actor"] == f"local:{getpass.getuser()}"
    assert (run["message"], run["author"]) == ("Greet everyone", author)
    # Not a revision; not a commit of the branch: exit 2, naming it.
    assert cli(config, "wait", "auto", "--revision", "main") == EXIT_USAGE
    assert "'main' is neither HEAD nor a commit sha" in capsys.readouterr().err
    assert cli(config, "wait", "auto", "--revision", "deadbeef01") == EXIT_USAGE
    assert "deadbeef01" in capsys.readouterr().err
    # A manual workspace resumed: compared with the head, nothing applied.
    assert cli(config, "suspend", "manual") == EXIT_OK
    assert cli(config, "resume", "manual") == EXIT_OK
    shown = capsys.readouterr().out
    assert "compared with the branch head" in shown and "syncd sync manual" in shown
    assert cli(config, "steps", "manual", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == []
    # A bad commit: its run fails, and the wait says so.
    tree.write("export/steps/broken.step.json", "{not json")
    tree.commit("broken")
    tree.push()
    assert cli(config, "sync", "auto") == EXIT_FAILED
    assert cli(config, "wait", "auto", "--revision", "HEAD", "--timeout", "5s") == EXIT_FAILED
    assert "failed" in capsys.readouterr().err


def test_commit_summary_is_one_bounded_line(repo: tuple[str, WorkTree], tmp_path: Path) -> None:
    url, tree = repo
    tree.write("a.txt", "a")
    tree.git("add", "-A")
    tree.git(
        "commit", "-q", "-m", "x" * 300 + "\nsecond line", "--author=Ann \x1b[31mRed <a@x.org>"
    )
    sha = tree.head()
    tree.push()
    server_password = tree.server.password
    git = GitSource(tmp_path / "state")
    remote = Remote(url, tree.server.username, server_password, tree.server.ca_file)
    git.fetch(remote, "main")
    message, author = git.commit_summary(remote, sha)
    assert message == "x" * 200 and author == "Ann ?[31mRed <a@x.org>"


def test_the_postgres_queue_keeps_who_asked() -> None:
    postgres.require()
    with postgres.fresh_database() as url:
        store = PostgresStore(url)
        c = PostgresCoordinator(store.conninfo, store.where, store.clean)

        async def claim() -> str | None:
            assert await c.acquire("ws")
            claimed = await c.claim("ws")
            assert claimed is not None
            return claimed.actor

        try:
            c.submit("ws", Trigger.WEBHOOK, None, False, None, "r1")
            joined = c.submit("ws", Trigger.MANUAL, None, False, None, "r2", actor="ann")
            assert joined is not None and joined.coalesced
            assert asyncio.run(claim()) == "ann"
        finally:
            asyncio.run(c.stop())
            store.close()
