"""The resolve and fetch phases of a sync (1-2): which commit to sync to, present in the mirror
afterwards; and `GitReader`, what a sync needs of git.

Not pure: these functions ask the remote (ls-remote, fetch) and read the mirror, through the
`GitReader` they are given (the engine passes its own at each call, so its unit tests run
against a stateful fake). They write nothing to the store.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from syncd.config import WorkspaceConfig
from syncd.core.errors import RevisionNotFound, RevisionNotOnBranch, SyncdError
from syncd.git import Remote
from syncd.git.signatures import CommitSignature
from syncd.sync.reading import Progress, TreeReader


class GitReader(TreeReader, Protocol):
    """What a sync needs of git: heads, fetches, and reading trees, blobs and commit
    signatures of a mirror."""

    def heads(self, remote: Remote) -> dict[str, str]: ...
    def resolve(self, remote: Remote, branch: str) -> str: ...
    def fetch(self, remote: Remote, branch: str, want: str | None = None) -> str: ...
    def resolve_commit(self, remote: Remote, rev: str) -> str: ...
    def branches_containing(self, remote: Remote, commit: str) -> list[str]: ...
    def is_ancestor(self, remote: Remote, ancestor: str, descendant: str) -> bool: ...
    # A commit's message (first line) and author `Name <email>`, bounded, from the mirror.
    def commit_summary(self, remote: Remote, sha: str) -> tuple[str, str]: ...
    # A commit's signature and the bytes it signs, from the mirror (`verify` only).
    def commit_signature(self, remote: Remote, sha: str) -> CommitSignature: ...


@runtime_checkable
class FetchesHeads(Protocol):
    """A GitReader that learns a branch's head and fetches it on one connection (`GitSource`):
    what `resolve` and then `fetch(want=head)` do, one round trip fewer."""

    def fetch_head(self, remote: Remote, branch: str) -> str: ...


@runtime_checkable
class KeepsMirrors(Protocol):
    """A GitReader whose mirrors want upkeep after a run (`GitSource` repacks them)."""

    def tidy(self) -> None: ...


def remote_for(ws: WorkspaceConfig) -> Remote:
    src = ws.source
    password = src.password.reveal() if src.password else None
    return Remote(url=src.url, username=src.username, password=password, ca_file=src.ca_file)


def resolve(
    git: GitReader,
    ws: WorkspaceConfig,
    revision: str | None = None,
    progress: Progress | None = None,
    head: str | None = None,
) -> str:
    """The commit to sync to, present in the mirror afterwards."""
    remote = remote_for(ws)
    say = progress or (lambda _msg: None)
    # 1. resolve: the branch head by ls-remote, unless pinned or just learned by a poll
    say(f"resolving {ws.source.branch}")
    if revision is None and head is None:
        if isinstance(git, FetchesHeads):
            # 2. fetched on the ls-remote's connection when the mirror lacks it
            say("fetching")
            return git.fetch_head(remote, ws.source.branch)
        head = git.resolve(remote, ws.source.branch)
    elif revision is not None:
        head = None
    # 2. fetch: nothing when the mirror already has the commit
    fetched = False
    if head is not None or not _has(git, remote, revision):
        say("fetching")
        git.fetch(remote, ws.source.branch, want=head)
        fetched = True
    if head is not None:
        return head
    commit = git.resolve_commit(remote, revision or "")
    # A pinned commit must be on the workspace's branch, not only somewhere in the mirror
    # (which other workspaces' branches share); the branch may have moved: fetch it once.
    if not _on_branch(git, remote, ws.source.branch, commit):
        if not fetched:
            git.fetch(remote, ws.source.branch)
        if not _on_branch(git, remote, ws.source.branch, commit):
            raise _not_on_branch(git, remote, ws.source.branch, commit)
    return commit


def present(git: GitReader, ws: WorkspaceConfig, revision: str) -> str:
    """The full sha of `revision` for a preview: a commit the mirror has (the branch's, or a
    pull request head fetched for its plan), else one the branch has after a fetch. Unlike a
    pin it need not be on the branch: a pull request's head is previewed before its merge."""
    remote = remote_for(ws)
    if not _has(git, remote, revision):
        git.fetch(remote, ws.source.branch)
        if not _has(git, remote, revision):
            raise RevisionNotFound(
                f"commit {revision[:40]!r} is neither on branch {ws.source.branch!r} nor a pull"
                " request head syncd has fetched"
            )
    return git.resolve_commit(remote, revision)


def behind(git: GitReader, ws: WorkspaceConfig, head: str, applied: str | None) -> bool:
    """A head learned earlier (a poll's or the startup comparison's ls-remote) that the
    applied commit already contains: another run (a webhook's, on this replica or another) has
    applied a newer commit since. Applying the hint would take the workspace back to an older
    commit until the next trigger."""
    return applied is not None and git.is_ancestor(remote_for(ws), head, applied)


def branch_head(git: GitReader, ws: WorkspaceConfig) -> str | None:
    """The branch head now; None when the remote cannot tell (the pin stays OutOfSync)."""
    try:
        return git.resolve(remote_for(ws), ws.source.branch)
    except SyncdError:
        return None


def _has(git: GitReader, remote: Remote, revision: str | None) -> bool:
    if revision is None:
        return False
    try:
        git.resolve_commit(remote, revision)
    except SyncdError:
        return False
    return True


def _on_branch(git: GitReader, remote: Remote, branch: str, commit: str) -> bool:
    return branch in git.branches_containing(remote, commit)


def _not_on_branch(git: GitReader, remote: Remote, branch: str, commit: str) -> RevisionNotOnBranch:
    others = sorted(git.branches_containing(remote, commit))
    where = f"it is on {', '.join(repr(b) for b in others)}" if others else "on no known branch"
    return RevisionNotOnBranch(
        f"commit {commit[:12]} is not on branch {branch!r} ({where}); a pinned revision must"
        f" be reachable from the workspace's branch"
    )
