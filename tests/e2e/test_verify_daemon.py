"""`verify` in the real daemon (issue #23): commits signed with real SSH keys (`git commit -S`,
gpg.format=ssh), pushed over https, announced by a signed GitHub webhook.

One daemon, one workspace, several checks in order (CI time is tight): a signed push is applied
and carries its signer; an unsigned one fails with `unverified:`, applies nothing, degrades the
workspace and is counted; a manual sync to it is refused with 422; a key taken out of the
allowed-signers file turns the workspace Degraded at the next reload, without a rollback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.demo.webhook import github_push
from tests.support import API_TOKEN, WEBHOOK_SECRET, GitServer, WorkTree, workspace, write_step
from tests.support.console import sign_in
from tests.support.daemon import (
    Daemon,
    kill_daemon,
    live_steps,
    metric,
    metrics_text,
    runs,
    start_daemon,
    view,
)
from tests.support.signing import PRINCIPAL, SshSigner, write_allowed_signers

WS = "signed"


def signed_commit(tree: WorkTree, signer: SshSigner, message: str) -> str:
    """`git commit -S` of the work tree as the signer's `git config` would make it."""
    tree.git("add", "-A")
    tree.git(*signer.sign_args(), "commit", "--quiet", "-S", "-m", message)
    return tree.head()


def push(d: Daemon, path: str, before: str) -> str:
    """Push HEAD and deliver GitHub's signed webhook for it; the pushed sha."""
    d.tree.push()
    sha = d.tree.head()
    headers, body = github_push(d.repo_url, sha, WEBHOOK_SECRET, before=before, added=[path])
    with d.client(token=None) as c:
        answer = c.post("/hooks/github", content=body, headers=headers)
    assert answer.status_code == 202 and answer.json()["matched"] == [WS], answer.text
    return sha


def run_of(d: Daemon, sha: str) -> dict[str, Any] | None:
    """The workspace's latest finished run of commit `sha`."""
    return next((r for r in runs(d, WS) if r["revision"] == sha and r["finished_at"]), None)


@pytest.fixture
def setup(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> Iterator[tuple[Daemon, SshSigner, SshSigner, Path]]:
    url, tree = repo
    dev, stranger = SshSigner(tmp_path, name="dev"), SshSigner(tmp_path, name="stranger")
    (tmp_path / "keys").mkdir()
    allowed = write_allowed_signers(tmp_path / "keys" / "allowed_signers", dev.allowed_signers())
    write_step(tree, "greet", "hello()")
    signed_commit(tree, dev, "a first signed step")
    tree.push()
    ws = workspace(WS, url, git_server, "automatic", verify={"allowed_signers_file": str(allowed)})
    d = start_daemon(tmp_path, git_server, tree, url, workspaces=[ws])
    yield d, dev, stranger, allowed
    kill_daemon(d)


def test_only_commits_signed_by_a_listed_key_are_applied(
    setup: tuple[Daemon, SshSigner, SshSigner, Path],
) -> None:
    d, dev, stranger, allowed = setup
    tree = d.tree
    first = tree.head()
    d.wait_until(lambda: view(d, WS)["last_applied_revision"] == first, what="the startup sync")

    # 1. A signed push through a signed webhook: applied, and the run and workspace say who.
    path = write_step(tree, "greet", "hello(2)")
    signed_commit(tree, dev, "greet twice")
    signed = push(d, path, before=first)
    d.wait_until(lambda: view(d, WS)["last_applied_revision"] == signed, what="the signed push")
    applied = run_of(d, signed)
    assert applied is not None and applied["result"] == "succeeded"
    assert applied["trigger"] == "webhook" and applied["signed_by"] == PRINCIPAL
    shown = view(d, WS)
    assert shown["signed_by"] == PRINCIPAL and shown["health"]["status"] == "Healthy"
    # The console shows it beside the applied revision and under the run; `syncd runs` too.
    with httpx.Client(base_url=d.url, timeout=30) as browser:
        sign_in(browser)
        page = browser.get(f"/ui/workspaces/{WS}")
    assert page.status_code == 200
    assert f"signed by <code>{PRINCIPAL}</code>" in page.text
    assert f"signed by {PRINCIPAL}</small>" in page.text
    listed = subprocess.run(
        [sys.executable, "-m", "syncd", "--server", d.url, "runs", WS],
        env={**os.environ, "SYNCD_TOKEN": API_TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert f"signed by {PRINCIPAL}" in listed.stdout

    # 2. An unsigned push: the run fails, nothing is applied, Degraded, counted.
    path = write_step(tree, "greet", "evil()")
    tree.commit("not signed")
    unsigned = push(d, path, before=signed)
    failed = d.wait_until(lambda: run_of(d, unsigned), what="the unsigned push's run")
    assert failed["result"] == "failed" and failed["signed_by"] is None
    assert failed["error"].startswith("unverified: "), failed["error"]
    assert live_steps(d, WS)["greet"]["do"] == "hello(2)"
    shown = view(d, WS)
    assert shown["last_applied_revision"] == signed and shown["failed_revision"] == unsigned
    assert shown["health"]["status"] == "Degraded"
    assert shown["signed_by"] == PRINCIPAL  # of what it still holds
    counted = metric(
        metrics_text(d), "syncd_verify_failures_total", workspace=WS, reason="unsigned"
    )
    assert counted == 1

    # 3. A manual sync (a rollback) to the unsigned commit: refused before anything is queued.
    before = len(runs(d, WS))
    with d.client() as c:
        answer = c.post(f"/api/v1/workspaces/{WS}/sync", json={"revision": unsigned})
    assert answer.status_code == 422, answer.text
    assert "unverified: " in answer.text
    assert len(runs(d, WS)) == before

    # 4. A signed commit on top recovers; then the key is taken out and the config reloaded:
    #    the applied commit is no longer trusted, the workspace turns Degraded, nothing moves.
    path = write_step(tree, "greet", "hello(3)")
    signed_commit(tree, dev, "greet thrice")
    again = push(d, path, before=unsigned)
    d.wait_until(
        lambda: view(d, WS)["health"]["status"] == "Healthy", what="a trusted commit to recover"
    )
    write_allowed_signers(allowed, stranger.allowed_signers())
    d.process.send_signal(signal.SIGHUP)

    def distrusted() -> dict[str, Any] | None:
        shown = view(d, WS)
        return shown if shown["health"]["status"] == "Degraded" else None

    shown = d.wait_until(distrusted, what="the reload to distrust the applied commit")
    assert shown["health"]["error"].startswith("unverified: ")
    assert again[:12] in shown["health"]["error"]
    assert shown["last_applied_revision"] == again  # not rolled back
    assert live_steps(d, WS)["greet"]["do"] == "hello(3)"
    assert httpx.get(f"{d.url}/healthz", timeout=5).status_code == 200
