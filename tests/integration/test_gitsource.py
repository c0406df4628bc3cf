"""GitSource against a real https git server (git http-backend), with real commits."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.core.errors import (
    AuthError,
    GitError,
    RevisionNotFound,
    StepFileError,
    TransientGitError,
)
from syncd.core.retry import Policy
from syncd.git import FileChange, GitSource, Remote, TreeEntry, remote_key
from tests.support import GitServer, WorkTree

pytestmark = pytest.mark.timeout(60)

Calls = list[tuple[str, str, float]]


@pytest.fixture
def calls() -> Calls:
    return []


@pytest.fixture
def source(tmp_path: Path, calls: Calls) -> GitSource:
    def observe(op: str, result: str, seconds: float) -> None:
        calls.append((op, result, seconds))

    return GitSource(
        tmp_path / "state",
        timeout=5,
        observer=observe,
        attempt_policy=Policy(base=0.01, cap=0.01, attempts=3),
    )


def _remote(server: GitServer, url: str, **overrides: object) -> Remote:
    fields: dict[str, object] = {
        "url": url,
        "username": server.username,
        "password": server.password,
        "ca_file": server.ca_file,
    }
    fields.update(overrides)
    return Remote(**fields)  # type: ignore[arg-type]


def _delta(server: GitServer, action: Callable[[], object]) -> dict[str, int]:
    before = server.snapshot()
    try:
        action()
    finally:
        after = server.snapshot()
    return {k: after[k] - before[k] for k in after}


def _fails(
    error: type[Exception], call: Callable[..., object], *args: object
) -> Callable[[], None]:
    def run() -> None:
        with pytest.raises(error):
            call(*args)

    return run


def _step(name: str) -> str:
    return f'{{"name": "{name}", "content": {{"if": "true", "do": "pass"}}}}'


# -- resolve and fetch -------------------------------------------------------------------


def test_resolve_returns_the_branch_head(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource, calls: Calls
) -> None:
    url, tree = repo
    remote = _remote(git_server, url)
    assert source.resolve(remote, "main") == tree.head()
    assert calls[-1][:2] == ("ls_remote", "ok")
    tree.push("feature/x")
    assert source.heads(remote) == {"main": tree.head(), "feature/x": tree.head()}
    with pytest.raises(RevisionNotFound, match="'nope'"):
        source.resolve(remote, "nope")


def test_fetch_only_when_the_branch_moved(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, tree = repo
    remote = _remote(git_server, url)
    first = tree.head()

    fetched = _delta(git_server, lambda: source.fetch(remote, "main", want=first))
    assert fetched["upload_pack"] == 1
    assert source.has_commit(remote, first)

    # Nothing moved: ls-remote only, and the fetch does not reach the server.
    def unchanged() -> None:
        head = source.resolve(remote, "main")
        assert source.fetch(remote, "main", want=head) == first

    idle = _delta(git_server, unchanged)
    assert idle["upload_pack"] == 0
    assert idle["info_refs"] >= 1

    tree.write("a.txt", "a")
    second = tree.commit("second")
    tree.push()
    assert source.resolve(remote, "main") == second
    assert not source.has_commit(remote, second)
    moved = _delta(git_server, lambda: source.fetch(remote, "main", want=second))
    assert moved["upload_pack"] == 1
    assert source.fetch(remote, "main") == second


def test_fetch_a_pinned_older_commit(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, tree = repo
    old = tree.head()
    tree.write("b.txt", "b")
    new = tree.commit()
    tree.push()
    remote = _remote(git_server, url)

    assert source.fetch(remote, "main", want=old[:10]) == old
    assert source.has_commit(remote, new)
    assert source.resolve_commit(remote, old[:8]) == old
    with pytest.raises(RevisionNotFound):
        source.resolve_commit(remote, "deadbeef")
    with pytest.raises(RevisionNotFound):
        source.fetch(remote, "main", want="0" * 40)
    with pytest.raises(RevisionNotFound):
        source.fetch(remote, "no-such-branch")


def test_concurrent_fetches_share_one_mirror_and_one_fetch(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, tree = repo
    first = _remote(git_server, url)
    # The same repository spelled differently shares the mirror; another user does not.
    second = _remote(git_server, url + "/")
    assert source.mirror_path(first) == source.mirror_path(second)
    same = Remote(url.removesuffix(".git"), username=git_server.username)
    assert source.mirror_path(first) == source.mirror_path(same)
    assert source.mirror_path(first) != source.mirror_path(_remote(git_server, url, username="x"))

    head = tree.head()
    results: list[str] = []

    def work(remote: Remote) -> None:
        results.append(source.fetch(remote, "main", want=head))

    def both() -> None:
        threads = [threading.Thread(target=work, args=(r,)) for r in (first, second, first)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert _delta(git_server, both)["upload_pack"] == 1
    assert results == [head, head, head]
    assert len(list((source.mirror_path(first).parent).iterdir())) == 1


# -- reading trees -----------------------------------------------------------------------


def test_list_files(git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource) -> None:
    url, tree = repo
    tree.write("export/steps/a.step.json", _step("a"))
    tree.write("export/steps/deep/er/b.step.json", _step("deep/er/b"))
    tree.write("export/steps/notes.md", "ignored")
    tree.write("export/steps/c.step.json.bak", "ignored")
    tree.write("export/other.step.json", _step("outside the path"))
    tree.symlink("export/steps/link.txt", "a.step.json")
    tree.add_gitlink("export/steps/vendored", tree.head())
    commit = tree.commit("steps")
    tree.push()
    remote = _remote(git_server, url)
    source.fetch(remote, "main")

    entries = source.list_files(remote, commit, "export/steps")
    by_path = {e.path: e for e in entries}
    assert sorted(by_path) == [
        "export/steps/a.step.json",
        "export/steps/deep/er/b.step.json",
        "export/steps/link.txt",
        "export/steps/vendored",
    ]
    a = by_path["export/steps/a.step.json"]
    assert a == TreeEntry(a.path, a.blob, 0o100644, len(_step("a")))
    assert source.read_blob(remote, a.blob) == _step("a").encode()
    assert by_path["export/steps/link.txt"].mode == 0o120000
    assert by_path["export/steps/vendored"].mode == 0o160000
    assert by_path["export/steps/vendored"].blob == tree.git("rev-parse", "HEAD~1").strip()

    # A trailing slash is the same folder; the root holds one more step file.
    assert source.list_files(remote, commit, "export/steps/") == entries
    assert len(source.list_files(remote, commit, "")) == len(entries) + 1

    with pytest.raises(StepFileError, match=rf"path 'missing' not found at commit {commit[:12]}"):
        source.list_files(remote, commit, "missing")
    with pytest.raises(StepFileError, match="not a directory"):
        source.list_files(remote, commit, "README.md")
    with pytest.raises(RevisionNotFound):
        source.list_files(remote, "0" * 40, "export/steps")


def test_changed_files(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, tree = repo
    base_before_folder = tree.head()
    tree.write("export/steps/keep.step.json", _step("keep"))
    tree.write("export/steps/edit.step.json", _step("edit"))
    tree.write("export/steps/gone.step.json", _step("gone"))
    tree.write("export/steps/old-name.step.json", _step("moved"))
    base = tree.commit("base")

    tree.write("export/steps/edit.step.json", _step("edited"))
    tree.remove("export/steps/gone.step.json")
    tree.remove("export/steps/old-name.step.json")
    tree.write("export/steps/sub/new-name.step.json", _step("moved"))
    tree.write("export/steps/new.step.json", _step("new"))
    tree.write("export/steps/readme.txt", "not a step")
    tree.write("elsewhere.step.json", _step("outside"))
    tree.symlink("export/steps/link", "keep.step.json")
    head = tree.commit("changes")
    tree.push()
    remote = _remote(git_server, url)
    source.fetch(remote, "main")

    changes = source.changed_files(remote, base, head, "export/steps")
    assert changes is not None
    blob = {c.path: c.blob for c in changes}
    assert [(c.status, c.path) for c in changes] == [
        ("modified", "export/steps/edit.step.json"),
        ("deleted", "export/steps/gone.step.json"),
        ("added", "export/steps/link"),
        ("added", "export/steps/new.step.json"),
        ("deleted", "export/steps/old-name.step.json"),
        ("added", "export/steps/sub/new-name.step.json"),
    ]
    assert blob["export/steps/gone.step.json"] is None
    assert source.read_blob(remote, blob["export/steps/edit.step.json"] or "") == (
        _step("edited").encode()
    )
    link = FileChange("added", "export/steps/link", blob["export/steps/link"], 0o120000, 14)
    assert link in changes  # 14: the size of the link's blob, "keep.step.json"

    # The folder did not exist at the older base: everything in it is added.
    from_nothing = source.changed_files(remote, base_before_folder, head, "export/steps")
    assert from_nothing is not None
    assert {c.status for c in from_nothing} == {"added"}
    assert len(from_nothing) == len(source.list_files(remote, head, "export/steps"))

    assert source.changed_files(remote, head, head, "export/steps") == []
    assert source.changed_files(remote, "f" * 40, head, "export/steps") is None

    # The folder is gone (its last file deleted): everything in it is deleted.
    tree.remove("export/steps")
    emptied = tree.commit("no steps left")
    tree.push()
    source.fetch(remote, "main")
    gone = source.changed_files(remote, head, emptied, "export/steps")
    assert gone is not None
    assert {c.status for c in gone} == {"deleted"}
    assert len(gone) == len(from_nothing)
    with pytest.raises(StepFileError, match="not found"):
        source.changed_files(remote, base_before_folder, emptied, "export/steps")


# -- failures ----------------------------------------------------------------------------


def test_wrong_password_fails_fast_without_retry(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource, calls: Calls
) -> None:
    url, _ = repo
    remote = _remote(git_server, url, password="not-the-token")
    started = time.monotonic()
    with pytest.raises(AuthError, match="rejected the credentials") as caught:
        _delta(git_server, lambda: source.resolve(remote, "main"))
    assert time.monotonic() - started < 2
    assert "not-the-token" not in str(caught.value)

    # One anonymous request answered 401, one with the wrong credentials, no third.
    delta = _delta(git_server, _fails(AuthError, source.fetch, remote, "main"))
    assert delta["info_refs"] == 2
    assert delta["upload_pack"] == 0
    assert calls[-1][:2] == ("fetch", "error")

    with pytest.raises(AuthError, match="none are configured"):
        source.resolve(_remote(git_server, url, username=None, password=None), "main")

    git_server.set_fault("401")
    delta = _delta(
        git_server,
        _fails(AuthError, source.resolve, _remote(git_server, url), "main"),
    )
    assert delta["total"] == 2


@pytest.mark.parametrize("fault", ["refuse", "500"])
def test_transient_faults_are_retried_then_given_up(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource, calls: Calls, fault: str
) -> None:
    url, _ = repo
    remote = _remote(git_server, url)
    git_server.set_fault(fault)  # type: ignore[arg-type]
    errors: list[TransientGitError] = []

    def resolve() -> None:
        with pytest.raises(TransientGitError, match="gave up after 3 attempts") as caught:
            source.resolve(remote, "main")
        errors.append(caught.value)

    # Each attempt is one request (a refused or failed one never reaches the auth step).
    assert _delta(git_server, resolve)["info_refs"] == 3
    assert url in str(errors[0])
    assert [c[:2] for c in calls] == [("ls_remote", "error")] * 3

    # Recovers once the server does.
    git_server.set_fault(None)
    assert source.fetch(remote, "main") == source.resolve(remote, "main")


def test_a_slow_server_times_out(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, _ = repo
    source = GitSource(
        tmp_path / "state", timeout=0.5, attempt_policy=Policy(base=0.01, cap=0.01, attempts=2)
    )
    git_server.set_fault("slow", delay=3)
    started = time.monotonic()
    with pytest.raises(TransientGitError):
        source.resolve(_remote(git_server, url), "main")
    assert time.monotonic() - started < 2.5


def test_unreachable_and_missing_remotes(
    git_server: GitServer, source: GitSource, calls: Calls
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    unreachable = _remote(git_server, f"https://127.0.0.1:{closed_port}/x.git")
    with pytest.raises(TransientGitError, match="gave up after 3 attempts"):
        source.resolve(unreachable, "main")

    calls.clear()
    missing = _remote(git_server, git_server.url("does-not-exist"))
    with pytest.raises(GitError, match="repository not found") as caught:
        source.fetch(missing, "main")
    assert not isinstance(caught.value, TransientGitError)
    assert len(calls) == 1  # not retried

    with pytest.raises(GitError, match="only https"):
        source.resolve(Remote("http://127.0.0.1:1/x.git"), "main")


def test_certificate_for_another_name_is_refused(tmp_path: Path, source: GitSource) -> None:
    with GitServer(tmp_path / "srv", hostnames=("git.other.example",)) as other:
        url = other.create_repo("elsewhere")
        with pytest.raises(GitError, match="TLS certificate rejected") as caught:
            source.resolve(_remote(other, url), "main")
        assert not isinstance(caught.value, TransientGitError)
        assert "mismatch" in str(caught.value).lower()


def test_untrusted_ca_is_refused_and_ca_file_adds_trust(
    tmp_path: Path, source: GitSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = ssl.get_default_verify_paths().openssl_cafile
    if os.path.exists(system):
        # As on the deployment hosts: the system bundle is named explicitly.
        monkeypatch.setenv("SSL_CERT_FILE", system)
    with GitServer(tmp_path / "srv") as fresh:
        url = fresh.create_repo("private-ca")
        # This CA has never been registered in this process: the system bundle alone fails.
        with pytest.raises(GitError, match="TLS certificate rejected") as caught:
            source.resolve(_remote(fresh, url, ca_file=None), "main")
        assert not isinstance(caught.value, TransientGitError)
        # With its ca_file, TLS and auth pass: the empty repository simply has no branch.
        with pytest.raises(RevisionNotFound):
            source.resolve(_remote(fresh, url), "main")


def test_a_bad_ca_file_is_reported(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path, source: GitSource
) -> None:
    url, _ = repo
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(GitError, match=r"bad\.pem"):
        source.resolve(_remote(git_server, url, ca_file=bad), "main")


# -- secrets and mirrors -----------------------------------------------------------------


def test_no_password_in_mirror_or_messages(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, _ = repo
    password = git_server.password
    in_url = url.replace("https://", f"https://{git_server.username}:{password}@")
    remote = _remote(git_server, in_url, username=None, password=None)
    assert password not in repr(_remote(git_server, url))

    source.fetch(remote, "main")
    mirror = source.mirror_path(remote)
    assert mirror == source.mirror_path(_remote(git_server, url))
    config = (mirror / "config").read_text()
    assert password not in config
    assert "url" not in config  # an anonymous remote: nothing recorded
    for f in mirror.rglob("*"):
        if f.is_file() and "objects" not in f.parts:
            assert password.encode() not in f.read_bytes(), f

    messages = []
    for fault in ("500", "refuse", "401"):
        git_server.set_fault(fault)
        with pytest.raises(GitError) as caught:
            source.resolve(remote, "main")
        messages.append(str(caught.value))
    git_server.set_fault(None)
    with pytest.raises(GitError) as caught:
        source.fetch(_remote(git_server, in_url.replace(".git", "-missing.git")), "main")
    messages.append(str(caught.value))
    for message in messages:
        assert password not in message
        assert "127.0.0.1" in message


def test_a_corrupt_mirror_is_rebuilt(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, tree = repo
    remote = _remote(git_server, url)
    head = source.fetch(remote, "main")
    mirror = source.mirror_path(remote)

    # Objects lost: the branch points at nothing.
    shutil.rmtree(mirror / "objects" / "pack")
    (mirror / "objects" / "pack").mkdir()
    assert source.fetch(remote, "main") == head
    assert [e.path for e in source.list_files(remote, head, "", suffix=".md")] == ["README.md"]

    # Not a repository any more.
    shutil.rmtree(mirror / "objects")
    assert not source.has_commit(remote, head)
    assert source.fetch(remote, "main", want=head) == head

    # A blob lost from a mirror whose commits and trees are intact, found by a read: the
    # next fetch rebuilds the mirror even though the wanted commit is there.
    _explode_packs(mirror)
    readme = tree.git("rev-parse", "HEAD:README.md").strip()
    (mirror / "objects" / readme[:2] / readme[2:]).unlink()
    with pytest.raises(GitError, match="read mirror"):
        source.read_blob(remote, readme)
    assert source.fetch(remote, "main", want=head) == head
    assert source.read_blob(remote, readme) == f"# {tree.repo_name}\n".encode()


def _explode_packs(mirror: Path) -> None:
    """Turn the mirror's packs into loose objects, so that one object can be removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    for pack in (mirror / "objects" / "pack").glob("*.pack"):
        data = pack.read_bytes()
        for f in pack.parent.glob(pack.stem + ".*"):
            f.unlink()
        subprocess.run(
            ["git", "-C", str(mirror), "unpack-objects", "-q"], input=data, check=True, env=env
        )


def test_one_remote_key_names_the_mirror_and_the_poll_group(tmp_path: Path) -> None:
    source = GitSource(tmp_path / "state")
    a = Remote("https://Git.Example:443/team/repo.git/", username="ci", password="p1")
    b = Remote("https://git.example/team/repo", username="ci", password="p2")
    other_user = Remote("https://git.example/team/repo", username="ops")
    assert a.key == b.key == remote_key(b.url, "ci")
    assert source.mirror_path(a) == source.mirror_path(b)
    assert other_user.key != a.key
    assert source.mirror_path(other_user) != source.mirror_path(a)
