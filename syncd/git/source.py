"""Git over https, through pygit2: ls-remote, fetch into shared bare mirrors, read, push.

Its calls block; callers run them in threads.

One bare mirror per remote key (repository URL and username) lives under
`state_dir/mirrors/`, shared by every workspace on that remote. The mirror's config never holds
a URL with credentials: every network call goes through an in-memory anonymous remote, and the
password reaches libgit2 only through the credentials callback. Transient failures (refused,
reset, timeout, 5xx) are retried under `retry.GIT_ATTEMPT`; authentication, TLS and not-found
failures are not (`network.py` holds one network operation, `remote.py` a remote's key and
credentials).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pygit2

from syncd.core import retry
from syncd.core.errors import (
    GitError,
    LocalFailure,
    RevisionNotFound,
    StepFileError,
)
from syncd.core.refs import HEADS, head_ref, is_full_sha
from syncd.core.steps import MAX_FILE_BYTES
from syncd.core.urls import redact_url
from syncd.git import commits, fetching, pushing, signatures, trees
from syncd.git.fetching import Advertised
from syncd.git.mirrors import (
    MAX_MIRROR_PACKS,
    CorruptMirror,
    check_refs,
    compact,
    find_commit,
    open_mirror,
    pack_count,
    wipe,
)
from syncd.git.network import GitObserver, Network
from syncd.git.remote import Remote, fetch_url, remote_key, scrub
from syncd.git.signatures import CommitSignature
from syncd.git.tls import Trust
from syncd.git.trees import FileChange, TreeEntry
from syncd.ops.logs import fields

__all__ = ["GitObserver", "GitSource", "Remote", "remote_key"]

log = logging.getLogger(__name__)

# A run records its commit's message (first line) and author cut to this many characters: a
# run row stays small whatever a commit says.
SUMMARY_CHARS = 200


class GitSource:
    def __init__(
        self,
        state_dir: Path,
        timeout: float = 30.0,
        observer: GitObserver | None = None,
        attempt_policy: retry.Policy = retry.GIT_ATTEMPT,
    ) -> None:
        self._mirrors = Path(state_dir) / "mirrors"
        self._network = Network(Trust(Path(state_dir), timeout), observer, attempt_policy)
        self._guard = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}
        self._suspect: set[Path] = set()  # mirrors a read found unreadable: rebuild on next fetch
        self._fetched = fetching.Fetched()  # per thread: the mirrors to `tidy`

    def on_auth_failure(self, hook: Callable[[], None] | None) -> None:
        """Call `hook` each time a remote refuses the credentials, before the AuthError goes
        up (and the run backs off): the daemon reads rotated credential files again."""
        self._network.on_auth_failure = hook

    # -- network operations ----------------------------------------------------------------

    def heads(self, remote: Remote) -> dict[str, str]:
        """Every branch on the remote and its sha, from one ls-remote: {"main": sha, ...}."""
        path = self.mirror_path(remote)
        with self._lock(path), self._local("ls_remote"):
            repo = open_mirror(path)  # created on first use: ls-remote needs a repository
        anon = repo.remotes.create_anonymous(fetch_url(remote))
        advertised = self._network.run(
            "ls_remote", remote, lambda cb: anon.list_heads(callbacks=cb)
        )
        return {
            h.name.removeprefix(HEADS): str(h.oid)
            for h in advertised
            if h.name and h.name.startswith(HEADS)
        }

    def resolve(self, remote: Remote, branch: str) -> str:
        """The sha of refs/heads/<branch> on the remote (ls-remote)."""
        sha = self.heads(remote).get(branch)
        if sha is None:
            raise RevisionNotFound(f"branch {branch!r} not found on {redact_url(remote.url)}")
        return sha

    def fetch(self, remote: Remote, branch: str, want: str | None = None) -> str:
        """Fetch refs/heads/<branch> into the mirror, unless `want` is already there.

        Returns `want` (as a full sha) when it is given, else the branch head in the mirror.
        """
        return self._fetch(remote, head_ref(branch), want)

    def fetch_head(self, remote: Remote, branch: str) -> str:
        """The branch's head on the remote now, in the mirror afterwards: what `resolve` and
        then `fetch(want=head)` do, and one round trip fewer. When the mirror lacks the head,
        the fetch goes on with the ls-remote's connection and the refs it got, unless another
        fetch into the mirror came in between (then it asks again, as `fetch` does)."""
        ref = head_ref(branch)
        path = self.mirror_path(remote)
        with self._lock(path), self._local("ls_remote"):
            repo = open_mirror(path)
        asked = fetching.advertised(self._network, remote, repo, ref)
        if asked.head is None:
            raise RevisionNotFound(f"branch {branch!r} not found on {redact_url(remote.url)}")
        return self._fetch(remote, ref, asked.head, asked)

    def fetch_ref(self, remote: Remote, ref: str) -> str:
        """Fetch one ref the remote advertises besides its branches (a pull request's head,
        `refs/pull/N/head`) into the mirror under the same name; its commit. The workspaces'
        branches are untouched, and a branch's fetch never prunes it."""
        return self._fetch(remote, ref, None)

    def tidy(self) -> None:
        """Repack the mirrors this thread fetched into since its last call that hold too many
        packs: a run calls this once it has recorded itself, so a repack never delays its
        apply. This thread's only: a run still reading a mirror in another thread sees it
        repacked no more often than when a fetch repacked it. Never raises: a mirror not
        repacked now is repacked later, or by a fetch once it holds far too many packs."""
        paths, self._fetched.paths = self._fetched.paths, set()
        for path in paths:
            if pack_count(path) <= MAX_MIRROR_PACKS:
                continue
            try:
                with self._lock(path):
                    compact(open_mirror(path), path)
            except (pygit2.GitError, OSError, KeyError, ValueError, LocalFailure) as e:
                log.warning("mirror not repacked", extra=fields(path=str(path), error=str(e)))

    def _fetch(
        self, remote: Remote, ref: str, want: str | None, asked: Advertised | None = None
    ) -> str:
        path = self.mirror_path(remote)
        with self._lock(path):
            for rebuilt in (False, True):
                try:
                    # A rebuilt mirror is a new repository: the ls-remote's connection was not.
                    return self._fetch_locked(remote, path, ref, want, None if rebuilt else asked)
                except CorruptMirror as e:
                    if rebuilt:
                        raise GitError(
                            f"fetch {redact_url(remote.url)}: mirror unusable: {e}"
                        ) from e
                    log.warning(
                        "mirror corrupt, rebuilding", extra=fields(path=str(path), error=str(e))
                    )
                    wipe(path)
        raise AssertionError("unreachable")

    def _fetch_locked(
        self, remote: Remote, path: Path, ref: str, want: str | None, asked: Advertised | None
    ) -> str:
        with self._local("fetch"):
            repo = open_mirror(path)
        with self._guard:
            suspect = path in self._suspect
            self._suspect.discard(path)
        if suspect:
            raise CorruptMirror("a read found objects missing or unreadable")
        check_refs(repo)
        if want is not None and (found := find_commit(repo, want)) is not None:
            return found  # already here: no network at all
        connection = None
        if asked is not None and fetching.ref_target(repo, ref) == asked.before:
            # No fetch into the mirror since the ls-remote: go on with its answer. (After one,
            # its answer may be older than the mirror's ref: ask the remote again.)
            repo, connection = asked.repo, asked.connection
        head = fetching.fetch_ref(self._network, remote, repo, path, ref, connection)
        self._fetched.paths.add(path)
        return head if want is None else fetching.wanted(repo, remote, ref, want)

    # -- reading the mirror ----------------------------------------------------------------

    def has_commit(self, remote: Remote, sha: str) -> bool:
        repo = self._repo(remote)
        return repo is not None and find_commit(repo, sha) is not None

    def resolve_commit(self, remote: Remote, rev: str) -> str:
        """The full sha of a commit in the mirror, given a full or abbreviated sha."""
        return self._commit(remote, rev)[1]

    def is_ancestor(self, remote: Remote, ancestor: str, descendant: str) -> bool:
        """True when both commits are in the mirror and `descendant` descends from `ancestor`
        (a different commit that contains it)."""
        repo = self._repo(remote)
        old, new = find_commit(repo, ancestor), find_commit(repo, descendant)
        if repo is None or old is None or new is None or old == new:
            return False
        with self._reading(remote):
            return bool(repo.descendant_of(pygit2.Oid(hex=new), pygit2.Oid(hex=old)))

    def commit_summary(self, remote: Remote, sha: str) -> tuple[str, str]:
        """A commit's message, its first line cut to SUMMARY_CHARS, and its author as
        `Name <email>` (each cut to SUMMARY_CHARS): what a run records of the commit it read."""
        repo, found = self._commit(remote, sha)
        with self._reading(remote):
            commit = repo[found].peel(pygit2.Commit)
            # Raw bytes, decoded leniently: a commit's text is anyone's, in any encoding.
            raw = commit.raw_message.decode("utf-8", "replace").strip()
            who = commit.author
            name = who.raw_name.decode("utf-8", "replace")
            email = who.raw_email.decode("utf-8", "replace")
        message = _printable(raw.split("\n", 1)[0].strip())
        return message[:SUMMARY_CHARS], _printable(f"{name} <{email}>")[:SUMMARY_CHARS]

    def branches_containing(self, remote: Remote, commit: str) -> list[str]:
        """The mirror's branches whose head is `commit` or descends from it (as last fetched)."""
        repo, sha = self._commit(remote, commit)
        oid = pygit2.Oid(hex=sha)
        found = []
        with self._reading(remote):
            for name in repo.references:
                if not name.startswith(HEADS):
                    continue
                target = repo.references[name].resolve().target
                if not isinstance(target, pygit2.Oid):
                    continue
                if target == oid or repo.descendant_of(target, oid):
                    found.append(name.removeprefix(HEADS))
        return sorted(found)

    def list_files(
        self, remote: Remote, commit: str, path: str, suffix: str = ".step.json"
    ) -> list[TreeEntry]:
        """Every *suffix blob under `path` (recursively), plus every symlink and submodule entry
        there whatever its name. Reads trees and object headers only, never a blob."""
        repo, sha = self._commit(remote, commit)
        with self._reading(remote):
            return trees.list_files(repo, sha, path, suffix)

    def changed_files(
        self, remote: Remote, base: str, head: str, path: str, suffix: str = ".step.json"
    ) -> list[FileChange] | None:
        """The *suffix files (and symlink/submodule entries) under `path` that differ between
        two commits, or None when `base` is not in the mirror (then use list_files)."""
        repo, head_sha = self._commit(remote, head)
        base_sha = find_commit(repo, base)
        if base_sha is None:
            return None
        with self._reading(remote):
            return trees.changed_files(repo, base_sha, head_sha, path, suffix)

    def commit_signature(self, remote: Remote, sha: str) -> CommitSignature:
        """The commit's own signature and signed payload, read from the mirror (see
        signatures.commit_signature; verify.verify_commit judges them). RevisionNotFound when
        the commit is not in the mirror; Unverified ("too_large") for a commit object over
        1 MiB."""
        repo, full = self._commit(remote, sha)
        with self._reading(remote):
            return signatures.commit_signature(repo, full)

    def read_blob(self, remote: Remote, blob: str) -> bytes:
        """A blob named by one of the mirror's trees (list_files, changed_files); one over
        MAX_FILE_BYTES is refused from its object header, before it is inflated."""
        return self._read_blob(self._repo(remote), remote, blob)

    @contextlib.contextmanager
    def blob_reader(self, remote: Remote) -> Iterator[Callable[[str], bytes]]:
        """Read many blobs through one Repository: opening the mirror costs far more than
        reading a small blob. The reader belongs to the calling thread alone."""
        repo = self._repo(remote)
        yield lambda blob: self._read_blob(repo, remote, blob)

    def _read_blob(self, repo: pygit2.Repository | None, remote: Remote, blob: str) -> bytes:
        if repo is None or not is_full_sha(blob):
            raise GitError(f"blob {blob!r} not found in the mirror of {redact_url(remote.url)}")
        with self._reading(remote):
            # Missing although a tree named it: the mirror is damaged.
            size = repo.odb.read_header(pygit2.Oid(hex=blob))[1]
            if size > MAX_FILE_BYTES:
                raise StepFileError(
                    f"blob {blob[:12]} is {size} bytes, over the limit of {MAX_FILE_BYTES}"
                )
            obj = repo[blob]
        if not isinstance(obj, pygit2.Blob):
            raise GitError(
                f"object {blob!r} in the mirror of {redact_url(remote.url)} is not a blob"
            )
        return obj.data

    # -- writing: a commit on top of another, and a push that never forces (the export) --------

    def commit_files(
        self,
        remote: Remote,
        parent: str,
        files: Mapping[str, bytes | None],
        message: str,
        author: tuple[str, str],
    ) -> str | None:
        """A new commit in the mirror: `parent`'s tree with `files` written (bytes) or removed
        (None), built in memory; no ref moves and nothing is checked out. None when the tree
        would not change, so there is never an empty commit."""
        repo, parent_sha = self._commit(remote, parent)
        with self._reading(remote):
            return commits.build_commit(repo, parent_sha, files, message, author)

    def push(self, remote: Remote, commit: str, branch: str) -> None:
        """Set refs/heads/<branch> on the remote to `commit`, a commit in the mirror.

        Never forced: when the branch has moved on to commits that `commit` does not contain,
        the remote keeps them and this raises Conflict. Observed as op "push", retried and
        redacted like a fetch."""
        path = self.mirror_path(remote)
        sha = self.resolve_commit(remote, commit)
        with self._lock(path):
            repo = open_mirror(path)
            source = pushing.name_commit(repo, sha)
        pushing.push_commit(self._network, remote, repo, path, source, branch)

    def mirror_path(self, remote: Remote) -> Path:
        # One mirror per remote key, as the scheduler polls one remote per key.
        return self._mirrors / f"{hashlib.sha256(remote.key.encode()).hexdigest()[:24]}.git"

    # -- mirrors ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _local(self, op: str) -> Iterator[None]:
        """A mirror this host cannot open or create counts as the operation's local error."""
        try:
            yield
        except LocalFailure:
            self._network.local_failure(op)
            raise

    def _lock(self, path: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(path, threading.Lock())

    def _repo(self, remote: Remote) -> pygit2.Repository | None:
        """A fresh Repository object on the mirror, None when there is no mirror yet.

        pygit2 objects are never shared between threads: each call opens its own."""
        path = self.mirror_path(remote)
        if not path.exists():
            return None
        with self._lock(path):
            return open_mirror(path)

    def _commit(self, remote: Remote, rev: str) -> tuple[pygit2.Repository, str]:
        repo = self._repo(remote)
        found = find_commit(repo, rev) if repo is not None else None
        if repo is None or found is None:
            raise RevisionNotFound(
                f"commit {rev!r} not found in the mirror of {redact_url(remote.url)}"
            )
        return repo, found

    @contextlib.contextmanager
    def _reading(self, remote: Remote) -> Iterator[None]:
        """An object the mirror's own trees name cannot be read: report it, and have the next
        fetch rebuild the mirror."""
        try:
            yield
        except (pygit2.GitError, KeyError) as e:
            path = self.mirror_path(remote)
            with self._guard:
                self._suspect.add(path)
            log.warning(
                "mirror read failed, will rebuild", extra=fields(path=str(path), error=str(e))
            )
            raise GitError(
                f"read mirror of {redact_url(remote.url)}: {scrub(str(e), remote)}"
            ) from e


def _printable(text: str) -> str:
    """Control characters (a terminal's escapes among them) shown as `?`."""
    return "".join(c if c.isprintable() else "?" for c in text)
