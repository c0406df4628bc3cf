"""Local failures told apart from remote ones: a state directory that cannot take a mirror
(here a file stands where the folder belongs, which holds even for root, unlike chmod) is a
LocalFailure counted as `local_error`, never a GitError of the remote; health does not call
the source unreachable; check-config names the state directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from syncd.core.errors import GitError, LocalFailure, is_local_failure
from syncd.core.model import HealthRecord, Run, RunResult, Trigger
from syncd.git import GitSource, Remote
from syncd.sync.health import after_run
from tests.support import GitServer, WorkTree

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def _remote(server: GitServer, url: str) -> Remote:
    return Remote(url, server.username, server.password, server.ca_file)


def test_a_state_directory_that_is_a_file_is_a_local_failure(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, _ = repo
    calls: list[tuple[str, str]] = []
    state = tmp_path / "state"
    state.write_text("a file, not a folder")
    source = GitSource(state, timeout=5, observer=lambda op, result, _s: calls.append((op, result)))
    for attempt in (
        lambda: source.heads(_remote(git_server, url)),
        lambda: source.fetch(_remote(git_server, url), "main"),
    ):
        with pytest.raises(LocalFailure) as caught:
            attempt()
        assert not isinstance(caught.value, GitError)
        assert str(state) in str(caught.value)
        assert is_local_failure(str(caught.value))
    assert calls == [("ls_remote", "local_error"), ("fetch", "local_error")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_mirror_is_a_local_failure(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    calls: list[tuple[str, str]] = []
    source = GitSource(tmp_path / "s", timeout=5, observer=lambda o, r, _s: calls.append((o, r)))
    remote = _remote(git_server, url)
    source.fetch(remote, "main")
    tree.write("b.txt", "b")
    tree.commit("b")
    tree.push()
    pack = source.mirror_path(remote) / "objects"
    for folder in [pack, *[p for p in pack.rglob("*") if p.is_dir()]]:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert not os.access(pack, os.W_OK)
    try:
        with pytest.raises(LocalFailure):
            source.fetch(remote, "main", want=tree.head())
        assert calls[-1] == ("fetch", "local_error")
    finally:
        for folder in [pack, *[p for p in pack.rglob("*") if p.is_dir()]]:
            folder.chmod(0o700)


def test_health_does_not_blame_the_source_for_a_local_failure() -> None:
    run = Run("r", "ws", Trigger.POLL, None, RunResult.FAILED, 1.0)
    run.error = str(LocalFailure("cannot write to the state directory /x: Read-only file system"))
    assert not after_run(HealthRecord("ws"), run, False, 2.0).source_failing
    run.error = "fetch https://h/r: the remote refused access (HTTP 401)"
    assert after_run(HealthRecord("ws"), run, False, 2.0).source_failing


def test_check_config_names_an_unwritable_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file")
    config = tmp_path / "syncd.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "workspaces": []}))
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert f"the state directory {state} is not a directory" in done.stderr
    state.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "does not exist yet" in done.stdout
