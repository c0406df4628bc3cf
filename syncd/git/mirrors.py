"""The bare mirrors' health: open or rebuild one, check its refs, find a commit, repack.

A mirror is a cache: whatever cannot be read is deleted and fetched again.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pygit2

from syncd.core.errors import LocalFailure
from syncd.git.failures import is_local_os_failure
from syncd.ops.logs import fields

log = logging.getLogger(__name__)

MAX_MIRROR_PACKS = 16  # each fetch adds a pack; past this many the mirror is repacked into one
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")  # a full or abbreviated sha


class CorruptMirror(Exception):
    """The mirror's object store or refs cannot be read: delete it and fetch again."""


def open_mirror(path: Path) -> pygit2.Repository:
    """The bare repository at `path`, created when missing, rebuilt when unreadable.
    LocalFailure when the state directory cannot take it (read-only, full, not a folder)."""
    try:
        return _open_mirror(path)
    except OSError as e:
        raise local_failure(path, e.strerror or str(e)) from e
    except pygit2.GitError as e:
        if is_local_os_failure(str(e)):
            raise local_failure(path, str(e)) from e
        raise


def local_failure(path: Path, reason: str) -> LocalFailure:
    """The state directory (the mirrors' folder's parent) named, and the OS's reason."""
    return LocalFailure(f"cannot write to the state directory {path.parent.parent}: {reason}")


def _open_mirror(path: Path) -> pygit2.Repository:
    if path.exists():
        try:
            repo = pygit2.Repository(str(path))
            if repo.is_bare:
                return repo
            reason = "not a bare repository"
        except pygit2.GitError as e:
            reason = str(e)
        log.warning("mirror unreadable, rebuilding", extra=fields(path=str(path), error=reason))
        wipe(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return pygit2.init_repository(str(path), bare=True)


def wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def pack_count(path: Path) -> int:
    """How many packs the mirror at `path` holds (one more per fetch until it is repacked)."""
    return sum(1 for _ in (path / "objects" / "pack").glob("pack-*.pack"))


def compact(repo: pygit2.Repository, path: Path) -> None:
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
    log.info("mirror repacked", extra=fields(path=str(path), packs=len(packs)))


def check_refs(repo: pygit2.Repository) -> None:
    """Every branch in the mirror must lead to a readable commit and tree. Only branches: the
    pull request heads fetched for plans (refs/pull/N/head, one per pull request, kept) are
    checked when fetched, and must not make every later fetch slower."""
    try:
        for name in repo.references:
            if not name.startswith("refs/heads/"):
                continue
            target = repo.references[name].resolve().target
            check_commit(repo, str(target))
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise CorruptMirror(str(e)) from e


def check_commit(repo: pygit2.Repository, sha: str) -> str:
    """The full sha of a readable commit with a readable tree; CorruptMirror otherwise."""
    try:
        commit = repo[sha].peel(pygit2.Commit)
        _ = commit.tree.id
        return str(commit.id)
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise CorruptMirror(f"commit {sha[:12]} unreadable: {e}") from e


def find_commit(repo: pygit2.Repository | None, rev: str) -> str | None:
    """The full sha of the commit `rev` (a full or abbreviated sha) names, None if none."""
    if repo is None or not _HEX.fullmatch(rev):
        return None
    try:
        obj = repo.get(rev)
        return str(obj.peel(pygit2.Commit).id) if obj is not None else None
    except (pygit2.GitError, KeyError, ValueError):
        # Not there, ambiguous, or not a commit.
        return None
