"""Which workspaces a push concerns. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from syncd.refs import short_branch
from syncd.urls import normalize_repo_url
from syncd.webhooks.payloads import Push


@dataclass(frozen=True, slots=True)
class Target:
    """What a workspace follows: the normalized source URL, a branch and a folder."""

    workspace_id: str
    url_key: str  # normalize_repo_url(source.url)
    branch: str
    path: str  # "export/steps"; "" or "." for the whole repository


def match(push: Push, targets: Sequence[Target]) -> list[str]:
    """Ids of the workspaces a push concerns, in the order of targets, each once.

    Same repository (after normalizing every URL form the payload gave), one of the pushed
    branches, and, when the payload lists every changed file, a file under the target's path.
    """
    keys = {k for url in push.repo_urls if (k := normalize_repo_url(url))}
    hits: dict[str, None] = {}
    for target in targets:
        if target.url_key not in keys:
            continue
        if short_branch(target.branch) not in push.branches:
            continue
        if not _concerns(push.paths, target.path):
            continue
        hits[target.workspace_id] = None
    return list(hits)


def _concerns(files: frozenset[str] | None, folder: str) -> bool:
    """Whether changed files touch folder; unknown files might, and the root holds them all."""
    if files is None or not _components(folder):
        return True
    return any(_under(file, folder) for file in files)


def _under(file: str, folder: str) -> bool:
    """Whether file lies in folder, by whole path components ("a/b2" is not under "a/b")."""
    parent = _components(folder)
    return _components(file)[: len(parent)] == parent


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]
