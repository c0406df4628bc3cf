"""What syncd asks of a git host's API: set a commit status, keep one comment on a pull request,
and tell a pull request's head. One `Host` per entry of `providers:`; the clients are in
`syncd.report.hosts`.

A client raises `HostError` and nothing else; its message names the provider entry and what
went wrong (the HTTP status and the host's own message, cut short), never a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from syncd.core.errors import SyncdError


class State(StrEnum):
    """A commit status's state, in the words GitHub uses (each client maps them)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CommitStatus:
    state: State
    context: str  # "syncd/<workspace name>" or "syncd/plan/<workspace name>"
    description: str  # one line; a client cuts it to what its host takes (GitHub: 140)
    target_url: str | None = None


class HostError(SyncdError):
    """The host refused a report or could not be reached. `transient`: worth trying again
    later (a network failure, a timeout, 429 or a 5xx); `retry_after`: seconds the host asked
    to wait, when it said."""

    def __init__(
        self, message: str, transient: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class Host(Protocol):
    """One git host's API, as one `providers:` entry configures it."""

    @property
    def name(self) -> str:
        """The `providers:` entry's name (the metrics' `provider` label)."""
        ...

    @property
    def max_comment(self) -> int:
        """The longest comment body, in characters, this host takes."""
        ...

    async def set_status(self, repository: str, sha: str, status: CommitStatus) -> None:
        """Set (or replace: same context) a status on a commit of `repository` (the path the
        source URL names: `owner/name`, GitLab's `group/sub/project`)."""
        ...

    async def pull_head(self, repository: str, number: int) -> str:
        """The head commit a pull (merge) request has now."""
        ...

    async def upsert_comment(self, repository: str, number: int, marker: str, body: str) -> None:
        """Keep one comment carrying `marker` (an HTML comment, invisible once rendered) on
        the pull request: edit the first comment that holds it, or create it when none does.
        `body` holds `marker` already."""
        ...

    async def aclose(self) -> None: ...
