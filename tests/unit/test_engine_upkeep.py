"""The engine asks its git for a branch's head and the commit on one connection when the git
can (`fetch_head`), and has the mirrors kept (`tidy`) only once the run is recorded."""

from __future__ import annotations

from syncd.core.errors import GitError
from syncd.core.model import RunResult, Trigger
from syncd.git import Remote
from syncd.sync.engine import Engine
from tests.support.fakes import FakeGit, FakeStore, step_files, workspace


class KeptGit(FakeGit):
    """A FakeGit with GitSource's `fetch_head` and `tidy`, which notes what the store held."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self.fetched_heads = 0
        self.tidied: list[str | None] = []  # the applied revision each tidy saw

    def fetch_head(self, remote: Remote, branch: str) -> str:
        self.fetched_heads += 1
        return self.fetch(remote, branch)

    def tidy(self) -> None:
        self.tidied.append(self.store.state("ws").last_applied_revision)


def test_the_head_is_fetched_on_one_connection_and_the_mirror_kept_after_the_apply() -> None:
    store = FakeStore()
    git = KeptGit(store)
    engine = Engine(store, git)
    sha = git.commit(step_files({"greet": "hello()"}))
    out = engine.sync(workspace("ws"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.SUCCEEDED, out.run.error
    assert (git.fetched_heads, git.fetches) == (1, 1)
    assert git.tidied == [sha]  # after the apply was recorded, once


def test_a_failed_run_still_keeps_the_mirror() -> None:
    store = FakeStore()
    git = KeptGit(store)
    git.outage = GitError("ls_remote: connection refused")
    engine = Engine(store, git)
    out = engine.sync(workspace("ws"), Trigger.WEBHOOK)
    assert out.run.result is RunResult.FAILED
    assert git.tidied == [None]
