"""A sync's resolve and fetch on one connection (`GitSource.fetch_head`), and the mirrors'
repack after the run (`GitSource.tidy`), against a real https git server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from syncd.core.errors import RevisionNotFound
from syncd.core.retry import Policy
from syncd.git import GitSource, Remote, fetching
from syncd.git.mirrors import MAX_MIRROR_PACKS, pack_count
from tests.support import GitServer, WorkTree

pytestmark = pytest.mark.timeout(60)

Calls = list[tuple[str, str]]


@pytest.fixture
def calls() -> Calls:
    return []


@pytest.fixture
def source(tmp_path: Path, calls: Calls) -> GitSource:
    return GitSource(
        tmp_path / "state",
        timeout=5,
        observer=lambda op, result, _s: calls.append((op, result)),
        attempt_policy=Policy(base=0.01, cap=0.01, attempts=3),
    )


def _remote(server: GitServer, url: str) -> Remote:
    return Remote(url, server.username, server.password, server.ca_file)


def _push(tree: WorkTree, name: str) -> str:
    tree.write(f"{name}.txt", name)
    sha = tree.commit(name)
    tree.push()
    return sha


def test_a_new_head_costs_what_git_fetch_costs(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource, calls: Calls
) -> None:
    url, tree = repo
    remote = _remote(git_server, url)
    source.fetch(remote, "main")
    head = _push(tree, "second")
    before, calls[:] = git_server.snapshot(), []
    assert source.fetch_head(remote, "main") == head
    seen = git_server.snapshot() - before
    # The refs asked for once (after the 401 that asks for the credentials), then the pack.
    assert (seen["info_refs"], seen["unauthorized"]) == (2, 1), seen
    assert seen["upload_pack"] >= 1, seen
    assert calls == [("ls_remote", "ok"), ("fetch", "ok")]
    assert source.branches_containing(remote, head) == ["main"]

    # Nothing new: the ls-remote alone, nothing fetched.
    before = git_server.snapshot()
    assert source.fetch_head(remote, "main") == head
    seen = git_server.snapshot() - before
    assert (seen["info_refs"], seen["upload_pack"]) == (2, 0), seen


def test_a_fetch_in_between_keeps_the_mirror_moving_forward(
    git_server: GitServer,
    repo: tuple[str, WorkTree],
    source: GitSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, tree = repo
    remote = _remote(git_server, url)
    source.fetch(remote, "main")
    first = _push(tree, "first")
    later: list[str] = []
    asked = fetching.advertised

    def another_fetch_meanwhile(*args: object, **kwargs: object) -> fetching.Advertised:
        answer = asked(*args, **kwargs)  # type: ignore[arg-type]
        later.append(_push(tree, "later"))  # the branch moves on, and another run fetches it
        assert source.fetch(remote, "main") == later[0]
        return answer

    monkeypatch.setattr(fetching, "advertised", another_fetch_meanwhile)
    # The head the ls-remote saw, found in the mirror: not fetched again, and the mirror's
    # branch is not taken back to it.
    assert source.fetch_head(remote, "main") == first
    assert later, "the fetch in between ran"
    assert source.branches_containing(remote, first) == ["main"]
    assert source.resolve_commit(remote, later[0]) == later[0]
    monkeypatch.setattr(fetching, "advertised", asked)
    assert source.fetch_head(remote, "main") == later[0]


def test_a_missing_branch_is_not_found(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, _ = repo
    with pytest.raises(RevisionNotFound, match="branch 'nope' not found"):
        source.fetch_head(_remote(git_server, url), "nope")


def test_a_mirror_is_repacked_after_the_run_not_by_its_fetch(
    git_server: GitServer, repo: tuple[str, WorkTree], source: GitSource
) -> None:
    url, tree = repo
    remote = _remote(git_server, url)
    source.fetch(remote, "main")
    mirror = source.mirror_path(remote)
    # Copies of the one pack under other names stand for the packs of many fetches.
    (pack,) = (mirror / "objects" / "pack").glob("pack-*.pack")
    for k in range(MAX_MIRROR_PACKS):
        for suffix in (".pack", ".idx"):
            name = f"pack-{k:040x}{suffix}"
            shutil.copy(pack.with_suffix(suffix), pack.with_name(name))
    head = _push(tree, "second")
    assert source.fetch_head(remote, "main") == head
    assert pack_count(mirror) == MAX_MIRROR_PACKS + 2  # the fetch left them
    source.tidy()
    assert pack_count(mirror) == 1
    assert source.resolve_commit(remote, head) == head
    source.tidy()  # nothing fetched since: nothing to do
    assert pack_count(mirror) == 1
