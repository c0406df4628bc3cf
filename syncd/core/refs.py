"""Git's naming rules, one home each: branch names, ref prefixes, the zero id, file modes.

Pure: config, webhook payloads, the pull layout, git and export all ask here.
"""

from __future__ import annotations

import re

HEADS = "refs/heads/"

# Tree entry modes, as git writes them.
MODE_FILE = 0o100644
MODE_EXECUTABLE = 0o100755
MODE_TREE = 0o040000
MODE_SYMLINK = 0o120000
MODE_SUBMODULE = 0o160000  # a "gitlink": a commit of another repository

# What git's check-ref-format refuses anywhere in a branch name: control characters, space
# and ~^:?*[\ .
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SHA = re.compile(r"[0-9a-f]{40}")


def branch_problem(branch: str) -> str | None:
    """Why `branch` is not a short name `git check-ref-format --branch` accepts, or None."""
    if branch.startswith("refs/") or branch == "HEAD":
        return "a short branch name, not 'HEAD' or 'refs/...'"
    return ref_name_problem(branch)


def ref_name_problem(branch: str) -> str | None:
    """Why `refs/heads/<branch>` is not a ref name git accepts, or None."""
    if not branch or len(branch) > 255:
        return "it must be 1 to 255 characters"
    if _BAD_CHARS.search(branch) or not branch.isprintable():
        return "no spaces, control characters or any of ~^:?*[\\"
    if ".." in branch or "@{" in branch or "//" in branch or branch == "@":
        return "no '..', '@{' or '//', and not '@'"
    if branch.startswith(("-", "/")) or branch.endswith(("/", ".")):
        return "no leading '-' or '/', no trailing '/' or '.'"
    if any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")):
        return "no part starting with '.' or ending with '.lock'"
    return None


def short_branch(name: str) -> str:
    """A branch as users may write it ("main" or "refs/heads/main") -> "main"."""
    return name.removeprefix(HEADS)


def head_ref(branch: str) -> str:
    """ "main" -> "refs/heads/main"."""
    return HEADS + short_branch(branch)


def branch_of(ref: str) -> str | None:
    """ "refs/heads/main" -> "main"; None for tags, other refs and names git would refuse."""
    if not ref.startswith(HEADS):
        return None
    name = ref[len(HEADS) :]
    # A leading '-' is legal in a ref, only not as a short name on a command line.
    return name if ref_name_problem(name.lstrip("-") or name) is None else None


def is_zero(sha: str | None) -> bool:
    """The all-zero id providers send for the missing side of a created or deleted ref."""
    return bool(sha) and not (sha or "").strip("0")


def is_full_sha(value: str) -> bool:
    return _SHA.fullmatch(value) is not None


def is_revision(value: str) -> bool:
    """A commit a person may name to sync to: 4 to 40 hex digits (a full or abbreviated sha)."""
    return 4 <= len(value) <= 40 and all(c in "0123456789abcdefABCDEF" for c in value)
