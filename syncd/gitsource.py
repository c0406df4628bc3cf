"""Git over https, through pygit2: ls-remote, fetch into shared bare mirrors, read trees and blobs.

This is the only module that imports pygit2. Its calls block; callers run them in threads.

One bare mirror per (remote URL, username) lives under `state_dir/mirrors/`, shared by every
workspace on that remote. The mirror's config never holds a URL with credentials: every network
call goes through an in-memory anonymous remote, and the password reaches libgit2 only through
the credentials callback. Transient failures (refused, reset, timeout, 5xx) are retried with
capped, jittered exponential backoff; authentication, TLS and not-found failures are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import pygit2
import tenacity
from pygit2.enums import DeltaStatus, FetchPrune, FileMode

from syncd.errors import (
    AuthError,
    Conflict,
    GitError,
    PathNotFound,
    RevisionNotFound,
    StepFileError,
    TransientGitError,
)
from syncd.urls import normalize_repo_url, redact_url

log = logging.getLogger(__name__)

GitObserver = Callable[[str, str, float], None]
"""Called once per network attempt: (op: ls_remote|fetch|push, result: ok|error, seconds)."""

T = TypeVar("T")

_LINK = int(FileMode.LINK)  # 0o120000
_GITLINK = int(FileMode.COMMIT)  # 0o160000, a submodule entry
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")  # a full or abbreviated sha
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Remote:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blob: str
    mode: int
    size: int


@dataclass(frozen=True)
class FileChange:
    status: Literal["added", "modified", "deleted"]
    path: str
    blob: str | None  # None when deleted
    mode: int = 0o100644  # the new mode; the old one for a deletion


class _CorruptMirror(Exception):
    """The mirror's object store or refs cannot be read: delete it and fetch again."""


class GitSource:
    def __init__(
        self,
        state_dir: Path,
        timeout: float = 30.0,
        observer: GitObserver | None = None,
        retry_attempts: int = 4,
        retry_max_wait: float = 10.0,
    ) -> None:
        self._state_dir = Path(state_dir)
        self._mirrors = self._state_dir / "mirrors"
        self._timeout_ms = max(1, int(timeout * 1000))
        self._observer = observer
        self._attempts = max(1, retry_attempts)
        self._max_wait = retry_max_wait
        self._guard = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}
        self._suspect: set[Path] = set()  # mirrors a read found unreadable: rebuild on next fetch

    # -- network operations ----------------------------------------------------------------

    def heads(self, remote: Remote) -> dict[str, str]:
        """Every branch on the remote and its sha, from one ls-remote: {"main": sha, ...}."""
        path = self.mirror_path(remote)
        with self._lock(path):
            repo = self._open(path)  # created on first use: ls-remote needs a repository
        anon = repo.remotes.create_anonymous(_fetch_url(remote))
        advertised = self._network("ls_remote", remote, lambda cb: anon.list_heads(callbacks=cb))
        return {
            h.name.removeprefix("refs/heads/"): str(h.oid)
            for h in advertised
            if h.name and h.name.startswith("refs/heads/")
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
        path = self.mirror_path(remote)
        with self._lock(path):
            for rebuilt in (False, True):
                try:
                    return self._fetch_locked(remote, path, branch, want)
                except _CorruptMirror as e:
                    if rebuilt:
                        raise GitError(
                            f"fetch {redact_url(remote.url)}: mirror unusable: {e}"
                        ) from e
                    log.warning("mirror corrupt, rebuilding path=%s error=%s", path, e)
                    _wipe(path)
        raise AssertionError("unreachable")

    def _fetch_locked(self, remote: Remote, path: Path, branch: str, want: str | None) -> str:
        repo = self._open(path)
        with self._guard:
            suspect = path in self._suspect
            self._suspect.discard(path)
        if suspect:
            raise _CorruptMirror("a read found objects missing or unreadable")
        _check_refs(repo)
        if want is not None and (found := _find_commit(repo, want)) is not None:
            return found  # already here: no network at all
        refspec = f"+refs/heads/{branch}:refs/heads/{branch}"
        anon = repo.remotes.create_anonymous(_fetch_url(remote))
        # PRUNE drops the local branch when the remote no longer has it.
        self._network(
            "fetch", remote, lambda cb: anon.fetch([refspec], callbacks=cb, prune=FetchPrune.PRUNE)
        )
        _compact(repo, path)
        ref = repo.references.get(f"refs/heads/{branch}")
        if ref is None:
            raise RevisionNotFound(f"branch {branch!r} not found on {redact_url(remote.url)}")
        head = _check_commit(repo, str(ref.target))
        if want is None:
            return head
        found = _find_commit(repo, want)
        if found is None:
            raise RevisionNotFound(
                f"commit {want!r} not found on branch {branch!r} of {redact_url(remote.url)}"
            )
        return found

    # -- reading the mirror ----------------------------------------------------------------

    def has_commit(self, remote: Remote, sha: str) -> bool:
        repo = self._repo(remote)
        return repo is not None and _find_commit(repo, sha) is not None

    def resolve_commit(self, remote: Remote, rev: str) -> str:
        """The full sha of a commit in the mirror, given a full or abbreviated sha."""
        repo = self._repo(remote)
        found = _find_commit(repo, rev) if repo is not None else None
        if found is None:
            raise RevisionNotFound(
                f"commit {rev!r} not found in the mirror of {redact_url(remote.url)}"
            )
        return found

    def list_files(
        self, remote: Remote, commit: str, path: str, suffix: str = ".step.json"
    ) -> list[TreeEntry]:
        """Every *suffix blob under `path` (recursively), plus every symlink and submodule entry
        there whatever its name. Reads trees and object headers only, never a blob."""
        repo, sha = self._commit(remote, commit)
        with self._reading(remote):
            tree = _subtree(repo, sha, path)
            entries = [
                TreeEntry(entry_path, str(oid), mode, _size(repo, oid, mode))
                for entry_path, oid, mode in _walk(repo, tree, _clean(path))
                if mode in (_LINK, _GITLINK) or entry_path.endswith(suffix)
            ]
        return sorted(entries, key=lambda e: e.path)

    def changed_files(
        self, remote: Remote, base: str, head: str, path: str, suffix: str = ".step.json"
    ) -> list[FileChange] | None:
        """The *suffix files (and symlink/submodule entries) under `path` that differ between
        two commits, or None when `base` is not in the mirror (then use list_files)."""
        repo, head_sha = self._commit(remote, head)
        base_sha = _find_commit(repo, base)
        if base_sha is None:
            return None
        prefix = _clean(path)
        with self._reading(remote):
            # git keeps no empty folders: a folder that appears has every file added, one that
            # disappears has every file deleted. Missing at both ends is an error, as in list_files.
            old = _subtree_or_none(repo, base_sha, path)
            new = _subtree_or_none(repo, head_sha, path)
            if new is not None and old is not None:
                diff = old.diff_to_tree(new)
            elif new is not None:
                diff = new.diff_to_tree(swap=True)
            elif old is not None:
                diff = old.diff_to_tree()
            else:
                _subtree(repo, head_sha, path)  # raises the same StepFileError as list_files
                raise AssertionError("unreachable")
            changes = [_change(delta, prefix) for delta in diff.deltas]
        return sorted(
            (c for c in changes if c.mode in (_LINK, _GITLINK) or c.path.endswith(suffix)),
            key=lambda c: c.path,
        )

    def read_blob(self, remote: Remote, blob: str) -> bytes:
        """A blob named by one of the mirror's trees (list_files, changed_files)."""
        return self._read_blob(self._repo(remote), remote, blob)

    @contextlib.contextmanager
    def blob_reader(self, remote: Remote) -> Iterator[Callable[[str], bytes]]:
        """Read many blobs through one Repository: opening the mirror costs far more than
        reading a small blob. The reader belongs to the calling thread alone."""
        repo = self._repo(remote)
        yield lambda blob: self._read_blob(repo, remote, blob)

    def _read_blob(self, repo: pygit2.Repository | None, remote: Remote, blob: str) -> bytes:
        if repo is None or not _SHA.fullmatch(blob):
            raise GitError(f"blob {blob!r} not found in the mirror of {redact_url(remote.url)}")
        with self._reading(remote):
            # Missing although a tree named it: the mirror is damaged.
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
        edits = _nest(files)
        with self._reading(remote):
            base = repo[parent_sha].peel(pygit2.Commit)
            tree = _edit_tree(repo, base.tree, edits, "") or repo.TreeBuilder().write()
            if tree == base.tree.id:
                return None
            who = pygit2.Signature(*author)
            return str(repo.create_commit(None, who, who, message, tree, [base.id]))

    def push(self, remote: Remote, commit: str, branch: str) -> None:
        """Set refs/heads/<branch> on the remote to `commit`, a commit in the mirror.

        Never forced: when the branch has moved on to commits that `commit` does not contain,
        the remote keeps them and this raises Conflict. Observed as op "push", retried and
        redacted like a fetch."""
        path = self.mirror_path(remote)
        # libgit2 pushes refs, not bare commits: a private ref names the commit meanwhile.
        source = f"refs/syncd/push/{uuid.uuid4().hex}"
        sha = self.resolve_commit(remote, commit)
        with self._lock(path):
            repo = self._open(path)
            repo.references.create(source, sha)
        target = f"refs/heads/{branch}"
        try:
            anon = repo.remotes.create_anonymous(_fetch_url(remote))

            def call(cb: pygit2.RemoteCallbacks) -> None:
                anon.push([f"{source}:{target}"], callbacks=cb)
                refused = getattr(cb, "refused", {}).get(target)
                if refused is not None:  # the server said no: a hook, or it moved meanwhile
                    raise pygit2.GitError(f"the remote refused to update {target}: {refused}")

            self._network("push", remote, call)
        except GitError as e:
            if _NOT_FAST_FORWARD.search(str(e)):
                raise Conflict(
                    f"push {redact_url(remote.url)}: branch {branch!r} has commits that the "
                    "export does not contain; nothing was pushed (syncd never force-pushes)"
                ) from e
            raise
        finally:
            with contextlib.suppress(pygit2.GitError, KeyError):
                repo.references.delete(source)

    def mirror_path(self, remote: Remote) -> Path:
        # Keyed like the scheduler's poll groups: the same repository spelled differently
        # (trailing slash, .git, host case, default port) shares one mirror.
        user, _ = _credentials(remote)
        name = normalize_repo_url(remote.url) or redact_url(remote.url)
        key = hashlib.sha256(f"{name}|{user or ''}".encode()).hexdigest()[:24]
        return self._mirrors / f"{key}.git"

    # -- mirrors ---------------------------------------------------------------------------

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
            return self._open(path)

    def _open(self, path: Path) -> pygit2.Repository:
        if path.exists():
            try:
                repo = pygit2.Repository(str(path))
                if repo.is_bare:
                    return repo
                reason = "not a bare repository"
            except pygit2.GitError as e:
                reason = str(e)
            log.warning("mirror unreadable, rebuilding path=%s error=%s", path, reason)
            _wipe(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return pygit2.init_repository(str(path), bare=True)

    def _commit(self, remote: Remote, rev: str) -> tuple[pygit2.Repository, str]:
        repo = self._repo(remote)
        found = _find_commit(repo, rev) if repo is not None else None
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
            log.warning("mirror read failed, will rebuild path=%s error=%s", path, e)
            raise GitError(
                f"read mirror of {redact_url(remote.url)}: {_scrub(str(e), remote)}"
            ) from e

    # -- one network operation, with trust, timeouts, credentials, retries -----------------

    def _network(self, op: str, remote: Remote, call: Callable[[pygit2.RemoteCallbacks], T]) -> T:
        if urlsplit(remote.url).scheme.lower() != "https":
            raise GitError(f"{op} {redact_url(remote.url)}: only https remotes are supported")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=min(0.5, self._max_wait),
                max=self._max_wait,
                jitter=min(1.0, self._max_wait),
            ),
            retry=tenacity.retry_if_exception_type(TransientGitError),
            before_sleep=lambda state: log.info(
                "git retry op=%s url=%s attempt=%d error=%s",
                op,
                redact_url(remote.url),
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        try:
            result: T = retrying(self._attempt, op, remote, call)
        except TransientGitError as e:
            raise TransientGitError(f"{e} (gave up after {self._attempts} attempts)") from e
        return result

    def _attempt(self, op: str, remote: Remote, call: Callable[[pygit2.RemoteCallbacks], T]) -> T:
        bundle = _LIBGIT2.prepare(self._state_dir, remote.ca_file, self._timeout_ms)
        callbacks = _Callbacks(op, remote)
        started = time.monotonic()
        try:
            result = call(callbacks)
        except AuthError:
            self._observe(op, "error", started)
            raise
        except (pygit2.GitError, ValueError) as e:
            elapsed = time.monotonic() - started
            self._observe(op, "error", started)
            if op == "fetch" and _is_local(e):
                raise _CorruptMirror(str(e)) from e
            raise _classify(op, remote, e, bundle, self._timeout_ms / 1000, elapsed) from e
        self._observe(op, "ok", started)
        return result

    def _observe(self, op: str, result: str, started: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(op, result, time.monotonic() - started)
        except Exception:
            log.exception("git observer failed op=%s", op)


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, op: str, remote: Remote) -> None:
        super().__init__()
        self._op = op
        self._remote = remote
        self._calls = 0
        self.refused: dict[str, str] = {}  # ref -> the remote's reason, from a push

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.UserPass:
        # libgit2 asks again, for ever, each time the server answers 401: a second call within
        # one operation means the remote rejected what we sent.
        self._calls += 1
        where = f"{self._op} {redact_url(self._remote.url)}"
        user, password = _credentials(self._remote)
        if user is None or password is None:
            raise AuthError(f"{where}: the remote requires credentials and none are configured")
        if self._calls > 1:
            raise AuthError(f"{where}: the remote rejected the credentials of user {user!r}")
        return pygit2.UserPass(user, password)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        # libgit2 reports success only through a missing message: keep the refusals.
        if message:
            self.refused[refname] = _scrub(message, self._remote)


class _Libgit2Settings:
    """libgit2's trust store and timeouts are process-wide: one registry of CA files for the
    whole process, one combined bundle, changed only under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._extra: dict[str, bytes] = {}  # sha256 of a ca_file's content -> content
        self._applied: tuple[str, ...] | None = None
        self._bundle: Path | None = None
        self._timeout_ms: int | None = None

    def prepare(self, state_dir: Path, ca_file: Path | None, timeout_ms: int) -> Path:
        pem = _read_ca_file(ca_file) if ca_file is not None else None
        with self._lock:
            if pem is not None:
                self._extra.setdefault(hashlib.sha256(pem).hexdigest(), pem)
            wanted = tuple(self._extra)
            if wanted != self._applied or self._bundle is None or not self._bundle.exists():
                self._bundle = self._write_bundle(state_dir)
                pygit2.settings.set_ssl_cert_locations(str(self._bundle), None)
                self._applied = wanted
            if timeout_ms != self._timeout_ms:
                pygit2.settings.server_connect_timeout = timeout_ms
                pygit2.settings.server_timeout = timeout_ms
                self._timeout_ms = timeout_ms
            return self._bundle

    def _write_bundle(self, state_dir: Path) -> Path:
        parts = []
        if (default := _default_cafile()) is not None:
            parts.append(default.read_bytes())
        parts.extend(self._extra.values())
        state_dir.mkdir(parents=True, exist_ok=True)
        bundle = state_dir / "ca-bundle.pem"
        tmp = bundle.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(b"\n".join(p.rstrip(b"\n") + b"\n" for p in parts))
        os.replace(tmp, bundle)
        log.info("ca bundle written path=%s extra_cas=%d", bundle, len(self._extra))
        return bundle


_LIBGIT2 = _Libgit2Settings()


# -- helpers ---------------------------------------------------------------------------------


def _default_cafile() -> Path | None:
    env = os.environ.get("SSL_CERT_FILE")
    paths = ssl.get_default_verify_paths()
    for candidate in (env, paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _read_ca_file(ca_file: Path) -> bytes:
    try:
        pem = Path(ca_file).read_bytes()
        # A bare context: the check is only that the file parses as certificates; loading
        # the system store as well would cost tens of milliseconds on every operation.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii"))
    except (OSError, ValueError, ssl.SSLError) as e:
        raise GitError(f"ca_file {str(ca_file)!r} is not a readable PEM bundle: {e}") from e
    return pem


def _credentials(remote: Remote) -> tuple[str | None, str | None]:
    """The configured credentials; user info in the URL only as a fallback (config refuses it,
    but a URL that carries it must still not reach the mirror or a message)."""
    try:
        parts = urlsplit(remote.url)
        in_url = parts.username, parts.password
    except ValueError:
        in_url = None, None
    return remote.username or in_url[0], remote.password or in_url[1]


def _fetch_url(remote: Remote) -> str:
    """The URL libgit2 talks to: the configured one without user info."""
    return redact_url(remote.url)


def _scrub(text: str, remote: Remote) -> str:
    _, password = _credentials(remote)
    return text.replace(password, "***") if password else text


_TRANSIENT = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "connection closed",
    "connection aborted",
    "broken pipe",
    "timed out",
    "timeout",
    "resource temporarily unavailable",
    "ssl error: syscall failure",
    "unexpected eof",
    "early eof",
    "failed to resolve address",
    "network is unreachable",
    "no route to host",
    "failed to receive",
    "failed to send",
    "could not read from remote repository",  # libgit2's network-read error
)


def _classify(
    op: str, remote: Remote, e: BaseException, bundle: Path, timeout: float, elapsed: float = 0.0
) -> GitError:
    where = f"{op} {redact_url(remote.url)}"
    message = _scrub(str(e).strip().strip("'\""), remote)
    lowered = message.lower()
    if isinstance(e, pygit2.CertificateError) or "certificate" in lowered:
        reason = _diagnose_tls(remote, bundle, timeout)
        return GitError(
            f"{where}: TLS certificate rejected ({reason}); trusted are the system bundle and "
            "each configured ca_file"
        )
    status = re.search(r"unexpected http status code: (\d{3})", lowered)
    code = int(status.group(1)) if status else None
    if code in (401, 403) or "authentication replays" in lowered:
        return AuthError(f"{where}: the remote refused access ({message})")
    if code == 404:
        return GitError(f"{where}: repository not found (HTTP 404)")
    if (code is not None and code >= 500) or code in (408, 429):
        return TransientGitError(f"{where}: server error (HTTP {code})")
    if lowered.startswith("ssl error: syscall failure") or "temporarily unavailable" in lowered:
        # libgit2 says the same words for a stall and for a dropped connection: the time the
        # attempt took tells them apart.
        if elapsed >= timeout * 0.9:
            return TransientGitError(f"{where}: timed out: no answer within {timeout:g}s")
        return TransientGitError(f"{where}: the remote closed the connection without an answer")
    if any(marker in lowered for marker in _TRANSIENT):
        return TransientGitError(f"{where}: {message or type(e).__name__}")
    return GitError(f"{where}: {message or type(e).__name__}")


MAX_MIRROR_PACKS = 16  # each fetch adds a pack; past this many the mirror is repacked into one


def _compact(repo: pygit2.Repository, path: Path) -> None:
    """`git gc --auto` for a mirror: libgit2 writes one pack per fetch and never repacks, and
    every pack is an open file for as long as a Repository object lives."""
    packs = sorted((path / "objects" / "pack").glob("pack-*.pack"))
    if len(packs) <= MAX_MIRROR_PACKS:
        return
    repo.pack()  # one new pack holding every object, in objects/pack
    if not set((path / "objects" / "pack").glob("pack-*.pack")) - set(packs):
        return  # no new pack appeared: keep the old ones
    for pack in packs:
        for suffix in (".pack", ".idx", ".rev", ".keep", ".mtimes"):
            pack.with_suffix(suffix).unlink(missing_ok=True)
    log.info("mirror repacked path=%s packs=%d", path, len(packs))


def _is_local(e: BaseException) -> bool:
    """An error from our own object store rather than from the remote."""
    lowered = str(e).lower()
    return isinstance(e, KeyError) or any(
        marker in lowered for marker in ("object not found", "corrupt")
    )


def _diagnose_tls(remote: Remote, bundle: Path, timeout: float) -> str:
    """libgit2 says only "rejected": ask Python's ssl, with the same trust, why."""
    parts = urlsplit(remote.url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        ctx = ssl.create_default_context(cafile=str(bundle))
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=host),
        ):
            return f"the certificate of {host} was not accepted"
    except ssl.SSLCertVerificationError as e:
        return f"{host}: {e.verify_message}"
    except (OSError, ssl.SSLError) as e:
        return f"{host}: {e}"


def _check_refs(repo: pygit2.Repository) -> None:
    """Every branch in the mirror must lead to a readable commit and tree."""
    try:
        for name in repo.references:
            target = repo.references[name].resolve().target
            _check_commit(repo, str(target))
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise _CorruptMirror(str(e)) from e


def _check_commit(repo: pygit2.Repository, sha: str) -> str:
    try:
        commit = repo[sha].peel(pygit2.Commit)
        _ = commit.tree.id
        return str(commit.id)
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise _CorruptMirror(f"commit {sha[:12]} unreadable: {e}") from e


def _find_commit(repo: pygit2.Repository | None, rev: str) -> str | None:
    if repo is None or not _HEX.fullmatch(rev):
        return None
    try:
        obj = repo.get(rev)
        return str(obj.peel(pygit2.Commit).id) if obj is not None else None
    except (pygit2.GitError, KeyError, ValueError):
        # Not there, ambiguous, or not a commit.
        return None


def _clean(path: str) -> str:
    path = path.strip("/")
    return "" if path in ("", ".") else path


def _subtree(repo: pygit2.Repository, sha: str, path: str) -> pygit2.Tree:
    tree = repo[sha].peel(pygit2.Commit).tree
    folder = _clean(path)
    if not folder:
        return tree
    try:
        entry = tree[folder]
    except KeyError:
        raise PathNotFound(f"path {path!r} not found at commit {sha[:12]}") from None
    if not isinstance(entry, pygit2.Tree):
        raise StepFileError(f"path {path!r} is not a directory at commit {sha[:12]}")
    return entry


def _subtree_or_none(repo: pygit2.Repository, sha: str, path: str) -> pygit2.Tree | None:
    try:
        return _subtree(repo, sha, path)
    except StepFileError:
        return None


def _walk(
    repo: pygit2.Repository, tree: pygit2.Tree, prefix: str
) -> Iterator[tuple[str, pygit2.Oid, int]]:
    # A stack, not recursion: git trees may nest deeper than Python's recursion limit.
    stack = [(tree, prefix)]
    while stack:
        tree, prefix = stack.pop()
        for entry in tree:
            name = f"{prefix}/{entry.name}" if prefix else str(entry.name)
            mode = int(entry.filemode)
            if mode == int(FileMode.TREE):
                stack.append((repo[entry.id].peel(pygit2.Tree), name))
            else:
                yield name, entry.id, mode


def _size(repo: pygit2.Repository, oid: pygit2.Oid, mode: int) -> int:
    if mode == _GITLINK:
        return 0  # the commit lives in another repository
    return repo.odb.read_header(oid)[1]


def _change(delta: pygit2.DiffDelta, prefix: str) -> FileChange:
    def full(p: str) -> str:
        return f"{prefix}/{p}" if prefix else p

    if delta.status == DeltaStatus.ADDED:
        return FileChange(
            "added", full(delta.new_file.path), str(delta.new_file.id), int(delta.new_file.mode)
        )
    if delta.status == DeltaStatus.DELETED:
        return FileChange("deleted", full(delta.old_file.path), None, int(delta.old_file.mode))
    return FileChange(
        "modified", full(delta.new_file.path), str(delta.new_file.id), int(delta.new_file.mode)
    )


def _wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- building trees in memory (the export) ---------------------------------------------------

# libgit2's own check, and the reasons a server's receive-pack gives.
_NOT_FAST_FORWARD = re.compile(
    r"non-fast-?forward|not present locally|fetch first|stale info|cannot lock ref", re.I
)
_Edits = dict[str, "bytes | _Edits | None"]


def _nest(files: Mapping[str, bytes | None]) -> _Edits:
    """{"a/b/c": x} -> {"a": {"b": {"c": x}}}; a path that names nothing safe is refused."""
    root: _Edits = {}
    for path, data in files.items():
        parts = path.split("/")
        if any(p in ("", ".", "..") or p.lower() == ".git" or "\x00" in p for p in parts):
            raise GitError(f"refusing to write {path!r}: not a clean relative path")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise GitError(f"refusing to write {path!r}: {part!r} is also a file")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise GitError(f"refusing to write {path!r}: it is also a folder")
        node[parts[-1]] = data
    return root


def _edit_tree(
    repo: pygit2.Repository, tree: pygit2.Tree | None, edits: _Edits, prefix: str
) -> pygit2.Oid | None:
    """The id of `tree` with `edits` applied; None when nothing is left (git keeps no empty
    folders). Entries the edits do not name are kept as they are."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    for name, edit in edits.items():
        where = f"{prefix}{name}"
        existing = builder.get(name)
        is_tree = existing is not None and int(existing.filemode) == int(FileMode.TREE)
        if isinstance(edit, dict):
            if existing is not None and not is_tree:
                raise StepFileError(f"cannot write under {where!r}: it is a file in the branch")
            sub = repo[existing.id].peel(pygit2.Tree) if existing is not None else None
            oid = _edit_tree(repo, sub, edit, f"{where}/")
            if oid is not None:
                builder.insert(name, oid, FileMode.TREE)
            elif existing is not None:
                builder.remove(name)
        elif edit is None:
            if existing is not None and not is_tree:
                builder.remove(name)
        else:
            if is_tree:
                raise StepFileError(f"cannot write {where!r}: it is a folder in the branch")
            builder.insert(name, repo.create_blob(edit), FileMode.BLOB)
    return builder.write() if len(builder) else None
