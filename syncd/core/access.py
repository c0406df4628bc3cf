"""Who may do what, to which workspaces: the rule, once, for API tokens and console roles.

Pure. An `Access` is a set of scopes and a list of workspace patterns: an id glob (`prod`,
`team-a-*`; fnmatch's `*`, `?` and `[...]`, case-sensitive as ids are) or `tag:NAME`. A
workspace the patterns do not match is not there for its holder (404: its existence is not
told); one they match but whose scope is missing is refused (403).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

ALL = ("*",)
TAG = "tag:"


@dataclass(frozen=True, slots=True)
class Access:
    scopes: frozenset[str]
    workspaces: tuple[str, ...] = ALL

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def sees(self, ws_id: str, tags: Sequence[str]) -> bool:
        """Whether the workspace is within reach at all (any scope)."""
        return any(matches(pattern, ws_id, tags) for pattern in self.workspaces)

    def union(self, other: Access) -> Access:
        """What a person holding both has (a console user in two groups with a role each)."""
        return Access(
            self.scopes | other.scopes, tuple(dict.fromkeys(self.workspaces + other.workspaces))
        )


NO_ACCESS = Access(frozenset(), ())


def matches(pattern: str, ws_id: str, tags: Sequence[str]) -> bool:
    if pattern.startswith(TAG):
        return pattern[len(TAG) :] in tags
    return fnmatchcase(ws_id, pattern)


def unmatched(
    patterns: Iterable[str], workspaces: Iterable[tuple[str, Sequence[str]]]
) -> list[str]:
    """The patterns that match none of these (id, tags): worth a warning, likely a typo."""
    known = list(workspaces)
    return [p for p in patterns if not any(matches(p, ws_id, tags) for ws_id, tags in known)]
