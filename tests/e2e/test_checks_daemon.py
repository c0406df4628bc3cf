"""Checks after an apply in the real daemon (issue #25): an automatic workspace whose check (a
real command) passes on the first commit and fails once the thing it watches breaks. A push
announced by a signed webhook is applied, its check fails, and syncd goes back by itself: the
workspace holds the revision applied before, pinned there and so suspended; the bad run is
failed naming the check, with its checks on the run; the rollback is in the audit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.demo.webhook import github_push
from tests.support import WEBHOOK_SECRET, GitServer, WorkTree, workspace, write_step
from tests.support.daemon import Daemon, get, kill_daemon, runs, start_daemon, view

WS = "checked"


@pytest.fixture
def daemon(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> Iterator[tuple[Daemon, Path]]:
    url, tree = repo
    write_step(tree, "greet", "hello()")
    tree.commit("a first step")
    tree.push()
    broken = tmp_path / "broken"  # the check fails while this file exists
    probe = f"import os, sys; sys.exit(1 if os.path.exists({str(broken)!r}) else 0)"
    check = {
        "name": "smoke",
        "command": {"argv": [sys.executable, "-c", probe]},
        "timeout": "10s",
        "retries": 1,
        "interval": "100ms",
    }
    ws = workspace(WS, url, git_server, "automatic", checks=[check])
    d = start_daemon(tmp_path, git_server, tree, url, workspaces=[ws])
    yield d, broken
    kill_daemon(d)


def test_a_failing_check_rolls_the_workspace_back(daemon: tuple[Daemon, Path]) -> None:
    d, broken = daemon
    tree = d.tree
    good = tree.head()
    d.wait_until(lambda: view(d, WS)["last_applied_revision"] == good, what="the first apply")
    first = next(r for r in runs(d, WS) if r["revision"] == good)
    d.wait_until(lambda: get(d, f"/api/v1/runs/{first['id']}")["checks"], what="its checks")

    broken.touch()
    path = write_step(tree, "greet", "hello(broken)")
    tree.commit("a change the check does not like")
    tree.push()
    bad = tree.head()
    headers, body = github_push(d.repo_url, bad, WEBHOOK_SECRET, before=good, added=[path])
    with d.client(token=None) as c:
        assert c.post("/hooks/github", content=body, headers=headers).status_code == 202

    def rolled_back() -> bool:
        shown = view(d, WS)
        return bool(shown["pinned_revision"] == good == shown["last_applied_revision"])

    d.wait_until(rolled_back, 30, "the rollback to the revision applied before")
    shown = view(d, WS)
    assert shown["suspended"] is True and shown["status"] == "OutOfSync"
    failed = next(r for r in runs(d, WS) if r["revision"] == bad)
    assert failed["result"] == "failed" and failed["error"].startswith("check smoke: ")
    assert [(c["name"], c["result"]) for c in failed["checks"]] == [("smoke", "failed")]
    ok = get(d, f"/api/v1/runs/{first['id']}")["checks"]
    assert [(c["name"], c["result"]) for c in ok] == [("smoke", "ok")]
    back = runs(d, WS)[0]
    assert (back["revision"], back["result"], back["actor"]) == (
        good,
        "succeeded",
        "syncd:check smoke",
    )
