"""Which workspaces a push, or a pull request, concerns. Pure.

A pull request concerns the workspaces that follow its base branch of its base repository:
it is matched as a push of that branch whose changed files are unknown (a workspace that
follows a folder still matches; planning finds out whether the folder changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from syncd.core.refs import short_branch
from syncd.core.urls import normalize_repo_url
from syncd.webhooks.payloads import Push
from syncd.webhooks.pulls import PullRequest


@dataclass(frozen=True, slots=True)
class Target:
    """What a workspace follows: the normalized source URL, a branch and a folder."""

    workspace_id: str
    url_key: str  # normalize_repo_url(source.url)
    branch: str
    path: str  # "export/steps"; "" or "." for the whole repository


def match(push: Push | PullRequest, targets: Sequence[Target]) -> list[str]:
    """Ids of the workspaces a push concerns, in the order of targets, each once.

    Same repository (after normalizing every URL form the payload gave), one of the pushed
    branches, and, when the payload lists every changed file, a file under the target's path.
    A pull request: its base repository and base branch, files unknown.
    """
    if isinstance(push, PullRequest):
        push = as_push(push)
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


def as_push(pull: PullRequest) -> Push:
    """What a pull request asks of matching: a push of its base branch, files unknown."""
    return Push(pull.provider, pull.repo_urls, (pull.base,), None, pull.delivery)


class _Named(NamedTuple):
    """The targets a push's URLs name, in the order of the config, and whether any of them
    follows a folder (so that the push's changed files matter)."""

    targets: tuple[Target, ...]
    in_folders: bool


@dataclass
class Matcher:
    """`match` for one config's targets, worked out once: targets indexed by URL key, and
    the targets that the URL forms payloads sent lately name (a busy host's pushes name the
    same few repositories over and over, in the same forms; normalizing was a tenth of the
    intake's time).

    Same answers as `match(push, targets)`."""

    targets: Sequence[Target]
    memo_size: int = 4096
    _by_key: dict[str, list[tuple[int, Target]]] = field(default_factory=dict, init=False)
    _named: dict[tuple[str, ...], _Named] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for index, target in enumerate(self.targets):
            self._by_key.setdefault(target.url_key, []).append((index, target))

    def files_wanted(self, repo_urls: tuple[str, ...]) -> bool:
        """Whether a push to this repository could match differently by its changed files:
        only when a target follows a folder of it (see `parse`'s files_wanted)."""
        return self._named_by(repo_urls).in_folders

    def match(self, push: Push | PullRequest) -> list[str]:
        """`match(push, targets)`; a pull request is looked up by its base repository's URLs."""
        named = self._named_by(push.repo_urls).targets
        return match(push, named) if named else []

    def _named_by(self, repo_urls: tuple[str, ...]) -> _Named:
        named = self._named.get(repo_urls)
        if named is None:
            if len(self._named) >= self.memo_size:
                self._named.clear()  # bounded: a flood of made-up URLs costs time, not memory
            named = self._named[repo_urls] = self._look_up(repo_urls)
        return named

    def _look_up(self, repo_urls: tuple[str, ...]) -> _Named:
        found: list[tuple[int, Target]] = []
        seen: set[str] = set()
        for url in repo_urls:
            key = normalize_repo_url(url)
            if key and key not in seen:
                seen.add(key)
                found += self._by_key.get(key, ())
        found.sort(key=lambda pair: pair[0])
        targets = tuple(target for _, target in found)
        return _Named(targets, any(_components(target.path) for target in targets))


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
