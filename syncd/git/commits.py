"""Building a commit in memory, for the export: a parent's tree with some files written or
removed. Nothing is checked out and no ref moves."""

from __future__ import annotations

from collections.abc import Mapping

import pygit2
from pygit2.enums import FileMode

from syncd.core.errors import GitError, StepFileError
from syncd.core.refs import MODE_TREE

_Edits = dict[str, "bytes | _Edits | None"]


def build_commit(
    repo: pygit2.Repository,
    parent_sha: str,
    files: Mapping[str, bytes | None],
    message: str,
    author: tuple[str, str],
) -> str | None:
    """A new commit on `parent_sha` with `files` written (bytes) or removed (None); None when
    the tree would not change, so there is never an empty commit. Refuses an unsafe path
    before it writes any object."""
    edits = _nest(files)
    base = repo[parent_sha].peel(pygit2.Commit)
    tree = _edit_tree(repo, base.tree, edits, "") or repo.TreeBuilder().write()
    if tree == base.tree.id:
        return None
    who = pygit2.Signature(*author)
    return str(repo.create_commit(None, who, who, message, tree, [base.id]))


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
        is_tree = existing is not None and int(existing.filemode) == MODE_TREE
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
