"""Who may do what, to which workspaces: the rule, once, for API tokens and console roles.

Pure. An `Access` is a list of grants; a grant is a set of scopes over a list of workspace
patterns: an id glob (`prod`, `team-a-*`; fnmatch's `*`, `?` and `[...]`, case-sensitive as ids
are) or `tag:NAME`. An API token is one grant; a console user holds one per role of theirs, so
one person may read prod and sync only dev.

On a workspace, the scopes are those of every grant that matches it. A workspace its holder may
not `read` is not there for them (404: its existence is not told); one they may read but not act
on as asked is refused (403). Scopes that are not about one workspace (`read` of the replicas
list, `audit`) are held when any grant holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

ALL: tuple[str, ...] = ("*",)
TAG = "tag:"


def matches(pattern: str, ws_id: str, tags: Sequence[str]) -> bool:
    if pattern.startswith(TAG):
        return pattern[len(TAG) :] in tags
    return fnmatchcase(ws_id, pattern)


@dataclass(frozen=True, slots=True)
class Grant:
    scopes: frozenset[str]
    workspaces: tuple[str, ...] = ALL

    def covers(self, ws_id: str, tags: Sequence[str]) -> bool:
        return any(matches(pattern, ws_id, tags) for pattern in self.workspaces)


@dataclass(frozen=True, slots=True)
class Access:
    grants: tuple[Grant, ...]

    @classmethod
    def of(cls, scopes: Iterable[str], workspaces: Iterable[str] = ALL) -> Access:
        return cls((Grant(frozenset(scopes), tuple(workspaces)),))

    def scopes_on(self, ws_id: str, tags: Sequence[str]) -> frozenset[str]:
        held: frozenset[str] = frozenset()
        for grant in self.grants:
            if grant.covers(ws_id, tags):
                held |= grant.scopes
        return held

    def allows(self, scope: str, ws_id: str, tags: Sequence[str]) -> bool:
        return scope in self.scopes_on(ws_id, tags)

    def sees(self, ws_id: str, tags: Sequence[str]) -> bool:
        """Whether the workspace is there for its holder at all: they may read it."""
        return self.allows("read", ws_id, tags)

    def held_scopes(self) -> frozenset[str]:
        """Every scope held on some workspace."""
        return frozenset().union(*(grant.scopes for grant in self.grants))

    def anywhere(self, scope: str) -> bool:
        """A scope held on some workspace (or, for `audit`, at all)."""
        return any(scope in grant.scopes for grant in self.grants)


NO_ACCESS = Access(())
# The local CLI acts as the host's user, who can read the config and the store anyway.
EVERYTHING = Access.of(("read", "sync", "write", "export", "audit"))


def unmatched(
    patterns: Iterable[str], workspaces: Iterable[tuple[str, Sequence[str]]]
) -> list[str]:
    """The patterns that match none of these (id, tags): worth a warning, likely a typo."""
    known = list(workspaces)
    return [p for p in patterns if not any(matches(p, ws_id, tags) for ws_id, tags in known)]
