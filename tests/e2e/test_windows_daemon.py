"""A change window in the real daemon: an automatic workspace whose deny window never lets
changes through (`* * * * *` for 2m: each minute's window outlasts the next minute's start).
A push announced by a signed webhook is planned, never applied; the workspace says it is held
by its window, the gauge says 1, and a manual sync is refused with 409 (`manual_sync: false`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.demo.webhook import github_push
from tests.support import WEBHOOK_SECRET, GitServer, WorkTree, workspace, write_step
from tests.support.daemon import Daemon, kill_daemon, metric, metrics_text, runs, start_daemon, view

WS = "frozen"
NEVER_OPEN = {"kind": "deny", "schedule": "* * * * *", "duration": "2m", "manual_sync": False}


@pytest.fixture
def daemon(git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path) -> Iterator[Daemon]:
    url, tree = repo
    write_step(tree, "greet", "hello()")
    tree.commit("a first step")
    tree.push()
    ws = workspace(WS, url, git_server, "automatic", windows=[NEVER_OPEN])
    d = start_daemon(tmp_path, git_server, tree, url, workspaces=[ws])
    yield d
    kill_daemon(d)


def run_of(d: Daemon, sha: str) -> dict[str, Any] | None:
    return next((r for r in runs(d, WS) if r["revision"] == sha and r["finished_at"]), None)


def test_a_push_inside_a_window_that_never_opens_stays_planned(daemon: Daemon) -> None:
    d, tree = daemon, daemon.tree
    first = tree.head()
    d.wait_until(lambda: run_of(d, first), what="the startup comparison")
    path = write_step(tree, "greet", "hello(2)")
    tree.commit("greet twice")
    tree.push()
    pushed = tree.head()
    headers, body = github_push(d.repo_url, pushed, WEBHOOK_SECRET, before=first, added=[path])
    with d.client(token=None) as c:
        answer = c.post("/hooks/github", content=body, headers=headers)
    assert answer.status_code == 202 and answer.json()["matched"] == [WS], answer.text

    held = d.wait_until(lambda: run_of(d, pushed), what="the webhook's run")
    assert held["result"] == "planned" and held["trigger"] == "webhook"
    shown = view(d, WS)
    assert shown["status"] == "OutOfSync" and shown["last_applied_revision"] is None
    assert shown["blocked"]["reason"] == "window" and shown["blocked"]["until"] is None
    text = metrics_text(d)
    assert metric(text, "syncd_workspace_blocked", workspace=WS, reason="window") == 1
    assert metric(text, "syncd_workspace_blocked", workspace=WS, reason="promotion") == 0

    # A person's sync: refused (409) before anything is queued, naming the window.
    before = len(runs(d, WS))
    with d.client() as c:
        refused = c.post(f"/api/v1/workspaces/{WS}/sync", json={})
    assert refused.status_code == 409, refused.text
    assert "closed change window" in refused.text and "* * * * *" in refused.text
    assert len(runs(d, WS)) == before
