"""Fetching into a mirror: a ref's commits brought over, on a connection of its own or on the
one an ls-remote has just opened.

`git fetch` asks the remote for its refs, then for the objects it lacks. A sync that learns
its branch's head by an ls-remote and then fetches that head asked for the refs twice, each
time on a new TLS connection: `advertised` keeps the ls-remote's connection open, and a fetch
given it wants what that ls-remote saw, without asking again. Callers hold the mirror's lock
for a fetch (`GitSource` keeps the locks and rebuilds a broken mirror).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FetchPrune

from syncd.core.errors import RevisionNotFound
from syncd.core.urls import redact_url
from syncd.git.mirrors import MAX_MIRROR_PACKS, check_commit, compact, find_commit, pack_count
from syncd.git.network import Network
from syncd.git.remote import Remote, fetch_url

# A mirror is repacked once past MAX_MIRROR_PACKS by `GitSource.tidy`, after the run whose
# fetch added the pack: out of the way from the webhook to the apply. Past this many, a fetch
# repacks at once: a mirror no run tidies (only pull requests' plans fetch into it) stays
# bounded too.
MAX_UNTIDY_PACKS = 4 * MAX_MIRROR_PACKS


@dataclass(frozen=True)
class Advertised:
    """A remote's answer to an ls-remote, its connection still open: the ref's commit then
    (None: no such ref), and the mirror's own value of the ref at that moment."""

    repo: pygit2.Repository  # the mirror the connection belongs to (this thread's)
    connection: pygit2.Remote
    head: str | None
    before: str | None


class Fetched(threading.local):
    """Per thread: the mirrors its fetches added a pack to since its last `GitSource.tidy`."""

    def __init__(self) -> None:
        self.paths: set[Path] = set()


def advertised(network: Network, remote: Remote, repo: pygit2.Repository, ref: str) -> Advertised:
    """Ask the remote for its refs (observed as an ls-remote) and keep the connection open for
    a fetch of `ref`. Called without the mirror's lock: the workspaces of one remote ask side by
    side."""
    before = ref_target(repo, ref)
    connection = repo.remotes.create_anonymous(fetch_url(remote))
    heads = network.run("ls_remote", remote, lambda cb: connection.list_heads(callbacks=cb))
    head = next((str(h.oid) for h in heads if h.name == ref), None)
    return Advertised(repo, connection, head, before)


def fetch_ref(
    network: Network,
    remote: Remote,
    repo: pygit2.Repository,
    path: Path,
    ref: str,
    connection: pygit2.Remote | None = None,
) -> str:
    """Fetch `ref` into the mirror under the same name (forced, pruned): its commit there.

    `connection`, an `Advertised` one on `repo`: the fetch wants what its ls-remote saw."""
    refspec = f"+{ref}:{ref}"
    anon = connection or repo.remotes.create_anonymous(fetch_url(remote))
    # PRUNE drops the local branch when the remote no longer has it.
    network.run(
        "fetch",
        remote,
        lambda cb: anon.fetch([refspec], callbacks=cb, prune=FetchPrune.PRUNE),
        mirror=path,
    )
    if pack_count(path) > MAX_UNTIDY_PACKS:
        compact(repo, path)
    fetched = repo.references.get(ref)
    if fetched is None:
        raise RevisionNotFound(f"{named(ref)} not found on {redact_url(remote.url)}")
    return check_commit(repo, str(fetched.target))


def wanted(repo: pygit2.Repository, remote: Remote, ref: str, want: str) -> str:
    """The full sha of `want` after a fetch of `ref`; RevisionNotFound when it did not come."""
    found = find_commit(repo, want)
    if found is None:
        raise RevisionNotFound(
            f"commit {want!r} not found on {named(ref)} of {redact_url(remote.url)}"
        )
    return found


def ref_target(repo: pygit2.Repository, ref: str) -> str | None:
    found = repo.references.get(ref)
    return None if found is None else str(found.target)


def named(ref: str) -> str:
    """A ref as messages name it: `branch 'main'`, `ref 'refs/pull/7/head'`."""
    branch = ref.removeprefix("refs/heads/")
    return f"branch {branch!r}" if branch != ref else f"ref {ref!r}"
