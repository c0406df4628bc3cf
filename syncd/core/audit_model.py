"""The audit's plain values: one entry (who did what, when, to which workspace, how it ended)
and one question asked of the stored entries. Pure: the store keeps them, the service writes
them, the API, the CLI and the console read them.

Every text field is bounded here, once, whatever writes it: a workspace id comes from a URL
path (an unknown one is audited too, as refused), and an error's message can be long.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from syncd.core.times import rfc3339

MAX_DETAIL = 2000  # characters of `detail` kept (an error's message, cut)
MAX_FIELD = 200  # characters of the other text fields kept
MAX_LIMIT = 1000  # entries one query answers at most
# The actions entries are written for (the metric's label values; others are counted too).
ACTIONS = (
    "sync",
    "suspend",
    "resume",
    "step.put",
    "step.delete",
    "export",
    "sign_in",
    "sign_out",
    "config_reload",
    "rollback",  # syncd's own, after a failed check (a person's rollback is a `sync`)
)


def cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited action. `id` is the store's (rising with each entry written; None before
    it is stored); `at` unix seconds; `result` the word `syncd.service.answers.verdict` gives
    (ok, refused, error); `status` the HTTP status its caller was answered with (or would
    have been: the local CLI's)."""

    at: float
    actor: str
    via: str  # api | console | local | daemon (a config reload)
    action: str
    result: str
    status: int
    workspace: str | None = None
    revision: str | None = None
    step: str | None = None
    detail: str | None = None
    id: int | None = None

    def bounded(self) -> AuditEntry:
        """This entry with every text field cut to what the store keeps."""
        return replace(
            self,
            actor=cut(self.actor, MAX_FIELD) or "",
            via=cut(self.via, MAX_FIELD) or "",
            action=cut(self.action, MAX_FIELD) or "",
            result=cut(self.result, MAX_FIELD) or "",
            workspace=cut(self.workspace, MAX_FIELD),
            revision=cut(self.revision, MAX_FIELD),
            step=cut(self.step, MAX_FIELD),
            detail=cut(self.detail, MAX_DETAIL),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": rfc3339(self.at),
            "actor": self.actor,
            "via": self.via,
            "action": self.action,
            "workspace": self.workspace,
            "revision": self.revision,
            "step": self.step,
            "result": self.result,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which entries, newest first: of one workspace and one actor (exact; None: any), at or
    after `since` (unix seconds), with an id below `before_id` (the cursor of the page
    before), at most `limit` (1 to MAX_LIMIT: ValueError otherwise)."""

    workspace: str | None = None
    actor: str | None = None
    since: float | None = None
    before_id: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}, got {self.limit!r}")
        if self.before_id is not None and self.before_id < 1:
            raise ValueError(f"before_id must be 1 or more, got {self.before_id!r}")

    def matches(self, entry: AuditEntry) -> bool:
        """Whether a stored entry answers this query (the FakeStore's filter; the SQL stores
        say the same in their WHERE)."""
        return (
            (self.workspace is None or entry.workspace == self.workspace)
            and (self.actor is None or entry.actor == self.actor)
            and (self.since is None or entry.at >= self.since)
            and (self.before_id is None or (entry.id or 0) < self.before_id)
        )
