"""Which workspaces a push concerns. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass
class Matcher:
    """`match` for one config's targets, worked out once: targets indexed by URL key, and
    the URL forms payloads sent lately, normalized (a busy host's pushes name the same few
    repositories over and over; normalizing was a tenth of the intake's time).

    Same answers as `match(push, targets)`."""

    targets: Sequence[Target]
    memo_size: int = 4096
    _by_key: dict[str, list[tuple[int, Target]]] = field(default_factory=dict, init=False)
    _keys: dict[str, str] = field(default_factory=dict, init=False)
    # URL keys of the repositories some target follows a folder of.
    _in_folders: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        for index, target in enumerate(self.targets):
            self._by_key.setdefault(target.url_key, []).append((index, target))
            if _components(target.path):
                self._in_folders.add(target.url_key)

    def files_wanted(self, repo_urls: tuple[str, ...]) -> bool:
        """Whether a push to this repository could match differently by its changed files:
        only when a target follows a folder of it (see `parse`'s files_wanted)."""
        return any(self._key(url) in self._in_folders for url in repo_urls)

    def match(self, push: Push) -> list[str]:
        found: list[tuple[int, Target]] = []
        seen: set[str] = set()
        for url in push.repo_urls:
            key = self._key(url)
            if key and key not in seen:
                seen.add(key)
                found += self._by_key.get(key, ())
        if not found:
            return []
        found.sort(key=lambda pair: pair[0])
        return match(push, [target for _, target in found])

    def _key(self, url: str) -> str:
        key = self._keys.get(url)
        if key is None:
            if len(self._keys) >= self.memo_size:
                self._keys.clear()  # bounded: a flood of made-up URLs costs time, not memory
            key = self._keys[url] = normalize_repo_url(url)
        return key


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
