"""A deploy script against the real daemon: `git push && syncd --server URL wait auto
--revision HEAD` returns only once the daemon has applied that commit. Polling is off and the
webhook is delivered only after `wait` has started, so nothing but the wait holds the script.

Also the wait's other endings (a failed run: 1; a commit not on the branch: 2), and who each
run names as its actor, with the commit's message and author."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_daemon import deliver, github_push, runs_of, settle
from tests.support import API_TOKEN, READ_TOKEN, write_step
from tests.support.daemon import Daemon, applied

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


def client(daemon: Daemon, token: str, *args: str) -> subprocess.Popen[str]:
    """`syncd --server URL ARGS` as a host without the daemon's config or secrets."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "SYNCD_TOKEN": token,
        "SYNCD_CONFIG": str(ROOT / "no-such-dir" / "syncd.yaml"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", "--server", daemon.url, *args],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=90)
    return proc.returncode, stdout, stderr


def test_a_deploy_script_returns_only_once_its_commit_is_applied(daemon: Daemon) -> None:
    settle(daemon)
    tree = daemon.tree
    path = write_step(tree, "greeting", "bonjour()")
    pushed = tree.commit("Greet in French")
    tree.push()
    # The deploy script: the push is done, its webhook is not delivered yet.
    waiter = client(daemon, READ_TOKEN, "wait", "auto", "--revision", "HEAD", "--timeout", "60s")
    time.sleep(2.0)  # give a wait that returns too early every chance to do so
    assert waiter.poll() is None, waiter.communicate()
    assert applied(daemon, "auto") != pushed
    assert deliver(daemon, *github_push(daemon, [path])).status_code == 202
    code, stdout, stderr = finished(waiter)
    assert code == 0, stderr
    assert applied(daemon, "auto") == pushed  # returned after the apply, never before
    assert f"HEAD ({pushed[:12]}) applied" in stdout and "Healthy" in stdout

    # The run names its trigger, and the commit it read.
    run = next(r for r in runs_of(daemon, "auto") if r["revision"] == pushed)
    author = tree.git("log", "-1", "--format=%an <%ae>").strip()
    assert (run["actor"], run["message"], run["author"]) == ("webhook", "Greet in French", author)
    # A sync through the API names its token.
    code, _, stderr = finished(client(daemon, API_TOKEN, "sync", "manual", "--wait"))
    assert code == 0, stderr
    assert runs_of(daemon, "manual")[0]["actor"] == "ci"

    # A commit of another branch: exit 2, naming it; nothing waited for.
    tree.git("checkout", "--quiet", "-b", "feature")
    elsewhere = tree.commit("elsewhere")
    tree.push("feature")
    tree.git("checkout", "--quiet", "main")
    code, _, stderr = finished(client(daemon, READ_TOKEN, "wait", "auto", "--revision", elsewhere))
    # (only main is fetched: the commit is not found there, and the error names it)
    assert code == 2 and elsewhere in stderr and len(stderr.splitlines()) == 1, stderr

    # A bad commit: its run fails, and the wait says so with exit 1.
    tree.write("export/steps/broken.step.json", "{not json")
    bad = tree.commit("a broken step")
    tree.push()
    assert (
        deliver(daemon, *github_push(daemon, ["export/steps/broken.step.json"])).status_code == 202
    )
    code, _, stderr = finished(
        client(daemon, READ_TOKEN, "wait", "auto", "--revision", bad, "--timeout", "60s")
    )
    assert code == 1 and f"a run of {bad[:12]} failed" in stderr, stderr
