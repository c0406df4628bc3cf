"""Reading a commit's tree: the files under a folder, and what changed between two commits.

Trees and object headers only, never a blob: the engine checks names, modes and sizes before it
reads any content. Calls raise pygit2's errors for an unreadable object; the caller reports
them against its mirror.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pygit2
from pygit2.enums import DeltaStatus

from syncd.core.errors import PathNotFound, StepFileError
from syncd.core.refs import MODE_FILE, MODE_SUBMODULE, MODE_SYMLINK, MODE_TREE


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
    mode: int = MODE_FILE  # the new mode; the old one for a deletion
    size: int = 0  # the new blob's size, from its object header; 0 when deleted


def list_files(repo: pygit2.Repository, sha: str, path: str, suffix: str) -> list[TreeEntry]:
    """Every *suffix blob under `path` at commit `sha` (recursively), plus every symlink and
    submodule entry there whatever its name, sorted by path."""
    tree = _subtree(repo, sha, path)
    entries = [
        TreeEntry(entry_path, str(oid), mode, _size(repo, oid, mode))
        for entry_path, oid, mode in _walk(repo, tree, _clean(path))
        if mode in (MODE_SYMLINK, MODE_SUBMODULE) or entry_path.endswith(suffix)
    ]
    return sorted(entries, key=lambda e: e.path)


def changed_files(
    repo: pygit2.Repository, base_sha: str, head_sha: str, path: str, suffix: str
) -> list[FileChange]:
    """The *suffix files (and symlink/submodule entries) under `path` that differ between two
    commits, sorted by path."""
    prefix = _clean(path)
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
    changes = [_change(repo, delta, prefix) for delta in diff.deltas]
    return sorted(
        (c for c in changes if c.mode in (MODE_SYMLINK, MODE_SUBMODULE) or c.path.endswith(suffix)),
        key=lambda c: c.path,
    )


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
            if mode == MODE_TREE:
                stack.append((repo[entry.id].peel(pygit2.Tree), name))
            else:
                yield name, entry.id, mode


def _size(repo: pygit2.Repository, oid: pygit2.Oid, mode: int) -> int:
    if mode == MODE_SUBMODULE:
        return 0  # the commit lives in another repository
    return repo.odb.read_header(oid)[1]


def _change(repo: pygit2.Repository, delta: pygit2.DiffDelta, prefix: str) -> FileChange:
    def full(p: str) -> str:
        return f"{prefix}/{p}" if prefix else p

    if delta.status == DeltaStatus.DELETED:
        return FileChange("deleted", full(delta.old_file.path), None, int(delta.old_file.mode))
    new = delta.new_file
    status: Literal["added", "modified"] = (
        "added" if delta.status == DeltaStatus.ADDED else "modified"
    )
    # The size from the object header: a blob is never inflated to learn it is too big.
    size = _size(repo, new.id, int(new.mode))
    return FileChange(status, full(new.path), str(new.id), int(new.mode), size)
