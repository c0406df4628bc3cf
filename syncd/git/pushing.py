"""A push that never forces: a commit of the mirror set as a branch's head on the remote (the
export's last step). `GitSource.push` finds the commit and opens the mirror."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pygit2

from syncd.core.errors import Conflict, GitError
from syncd.core.refs import head_ref
from syncd.core.urls import redact_url
from syncd.git.failures import NOT_FAST_FORWARD
from syncd.git.network import Network
from syncd.git.remote import Remote, fetch_url


def name_commit(repo: pygit2.Repository, sha: str) -> str:
    """A private ref naming `sha` for a push (libgit2 pushes refs, not bare commits): its
    name. `push_commit` deletes it."""
    source = f"refs/syncd/push/{uuid.uuid4().hex}"
    repo.references.create(source, sha)
    return source


def push_commit(
    network: Network, remote: Remote, repo: pygit2.Repository, path: Path, source: str, branch: str
) -> None:
    """Set refs/heads/<branch> on the remote to the commit the private ref `source` (see
    `name_commit`) names in the mirror `repo` at `path`; Conflict when the branch has commits
    that commit does not contain. Observed as op "push"."""
    target = head_ref(branch)
    try:
        anon = repo.remotes.create_anonymous(fetch_url(remote))

        def call(cb: pygit2.RemoteCallbacks) -> None:
            anon.push([f"{source}:{target}"], callbacks=cb)
            refused = getattr(cb, "refused", {}).get(target)
            if refused is not None:  # the server said no: a hook, or it moved meanwhile
                raise pygit2.GitError(f"the remote refused to update {target}: {refused}")

        network.run("push", remote, call, mirror=path)
    except GitError as e:
        if NOT_FAST_FORWARD.search(str(e)):
            raise Conflict(
                f"push {redact_url(remote.url)}: branch {branch!r} has commits that the "
                "export does not contain; nothing was pushed (syncd never force-pushes)"
            ) from e
        raise
    finally:
        with contextlib.suppress(pygit2.GitError, KeyError):
            repo.references.delete(source)
