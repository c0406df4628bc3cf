"""The domain's plain values: steps, plans, runs, sync state. No I/O here."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from syncd.core.times import rfc3339, rfc3339_or_none

# Stateless: encode() keeps nothing between calls.
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# What that encoder writes a str with (ensure_ascii=False): json's C function where it exists.
_json_string = json.encoder.encode_basestring

# Git hosts whose push webhooks syncd reads; config and webhooks both speak of these.
WEBHOOK_PROVIDERS = (
    "github",
    "gitlab",
    "gitea",
    "bitbucket",
    "bitbucket-server",
    "azure-devops",
    "generic",
)


class Mode(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class Status(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    """Beside the sync status, as Argo CD keeps them apart: can syncd do its work here?"""

    HEALTHY = "Healthy"
    DEGRADED = "Degraded"  # the source cannot be read, or the last run failed
    SUSPENDED = "Suspended"  # automation applies nothing by itself (suspended, or pinned)


class Trigger(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"
    MANUAL = "manual"
    DRIFT = "drift"
    STARTUP = "startup"


class RunResult(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PLANNED = "planned"


class Origin(StrEnum):
    GIT = "git"
    OUTSIDE = "outside"


@dataclass(frozen=True, slots=True)
class StepContent:
    """What a step does: the part of a step that syncd compares."""

    if_: str
    do: str
    enabled: bool = True
    valid: bool = True

    def to_dict(self) -> dict[str, Any]:
        # Key order is part of the contract: the hash is taken over this text.
        return {"if": self.if_, "do": self.do, "enabled": self.enabled, "valid": self.valid}

    def canonical_json(self) -> str:
        """json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False), the text the
        hash is taken over. Put together from json's own string encoder when the fields have
        their types (an initial apply of 10,000 steps serializes 10,000 contents; json.dumps
        builds an encoder per call), else by the encoder itself: the same text either way."""
        if (
            type(self.if_) is str
            and type(self.do) is str
            and type(self.enabled) is bool
            and type(self.valid) is bool
        ):
            return (
                f'{{"if":{_json_string(self.if_)},"do":{_json_string(self.do)},'
                f'"enabled":{"true" if self.enabled else "false"},'
                f'"valid":{"true" if self.valid else "false"}}}'
            )
        return _CANONICAL.encode(self.to_dict())

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepContent:
        return cls(
            if_=d["if"], do=d["do"], enabled=d.get("enabled", True), valid=d.get("valid", True)
        )


@dataclass(frozen=True, slots=True)
class Step:
    """A step as git has it at some commit."""

    name: str
    content: StepContent
    path: str  # the file's path in the repository
    blob: str = ""  # the file's git blob id; lets an incremental sync skip unchanged files


@dataclass(frozen=True, slots=True)
class LiveStep:
    """A step as the workspace holds it."""

    id: str
    name: str
    content: StepContent
    version: int
    content_hash: str
    updated_at: float  # unix seconds
    origin: Origin

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "content": self.content.to_dict(),
            "enabled": self.content.enabled,
            "valid": self.content.valid,
            "version": self.version,
            "content_hash": self.content_hash,
            "updated_at": rfc3339(self.updated_at),
            "origin": str(self.origin),
        }


Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class StepChange:
    action: Action
    name: str
    before: StepContent | None  # None for create
    after: StepContent | None  # None for delete

    @property
    def diff(self) -> str:
        """The unified diff of if/do, made when asked: a 10,000-step apply never needs it."""
        return unified_diff(self.name, self.before, self.after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "name": self.name,
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict() if self.after else None,
            "diff": self.diff,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    creates: tuple[StepChange, ...] = ()
    updates: tuple[StepChange, ...] = ()
    deletes: tuple[StepChange, ...] = ()
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    @property
    def changes(self) -> tuple[StepChange, ...]:
        return self.creates + self.updates + self.deletes

    def to_dict(self) -> dict[str, Any]:
        return {
            "create": [c.to_dict() for c in self.creates],
            "update": [c.to_dict() for c in self.updates],
            "delete": [c.to_dict() for c in self.deletes],
            "unchanged": self.unchanged,
        }


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One check after an apply (`checks:`), as the run keeps it."""

    name: str
    result: str  # ok | failed
    detail: str
    duration: float  # seconds, its tries included

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "result": self.result,
            "detail": self.detail,
            "duration": round(self.duration, 3),
        }


@dataclass(slots=True)
class Run:
    """One sync attempt."""

    id: str
    workspace: str
    trigger: Trigger
    revision: str | None
    result: RunResult
    started_at: float
    finished_at: float | None = None
    created: int = 0
    updated: int = 0
    deleted: int = 0
    error: str | None = None
    dry_run: bool = False
    # Who asked for it: a token's name, `local:<user>`, or the trigger that started it.
    actor: str | None = None
    # The commit it read: its message's first line and its author (`Name <email>`), as git says.
    message: str | None = None
    author: str | None = None
    # Whose signature on the commit was verified (an SSH principal, or an OpenPGP fingerprint
    # with its user id); None when the workspace verifies no signatures.
    signed_by: str | None = None
    # The checks run after its apply (`checks:`), in order; () when none ran.
    checks: tuple[CheckOutcome, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspace": self.workspace,
            "trigger": str(self.trigger),
            "revision": self.revision,
            "result": str(self.result),
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339_or_none(self.finished_at),
            "error": self.error,
            "dry_run": self.dry_run,
            "actor": self.actor,
            "message": self.message,
            "author": self.author,
            "signed_by": self.signed_by,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(slots=True)
class SyncState:
    """Where a workspace stands against git."""

    workspace: str
    status: Status = Status.UNKNOWN
    last_applied_revision: str | None = None
    last_seen_revision: str | None = None
    last_run_id: str | None = None
    # A commit whose sync failed for a permanent reason (a bad step file): not retried until
    # the branch moves on. None when the last failure, if any, was transient.
    failed_revision: str | None = None
    drift: int = 0
    # The remote and folder the applied revision was read from; when the config points the
    # workspace elsewhere, the record of git's files is stale and the next read is a full one.
    source_key: str | None = None
    # The commit a sync was pinned to (`sync --revision`), until a sync to the branch head.
    pinned_revision: str | None = None
    # Suspended by a person (`suspend`): kept by the store apart from the rest, so that a run
    # that read the state before a suspend or a resume does not undo it when it saves.
    suspended: bool = False


def automation_suspended(mode: Mode, state: SyncState) -> bool:
    """Whether a workspace applies nothing by itself: suspended, or an automatic workspace
    pinned to a revision (so that a poll never undoes a rollback silently)."""
    return state.suspended or (mode is Mode.AUTOMATIC and state.pinned_revision is not None)


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """A workspace's health as last assessed, with when it began and the failure streak."""

    workspace: str
    health: Health = Health.HEALTHY
    since: float | None = None  # unix seconds; None when never assessed
    error: str | None = None  # the error that made it Degraded
    failures: int = 0  # failed runs and source reads in a row
    source_failing: bool = False  # the last read of the source failed (not a bad commit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.health),
            "since": rfc3339_or_none(self.since),
            "error": self.error,
            "failures": self.failures,
        }


def unified_diff(name: str, before: StepContent | None, after: StepContent | None) -> str:
    lines = difflib.unified_diff(
        _render(before),
        _render(after),
        fromfile=f"a/{name}" if before else "/dev/null",
        tofile=f"b/{name}" if after else "/dev/null",
        lineterm="",
    )
    return "\n".join(lines)


def _render(content: StepContent | None) -> list[str]:
    if content is None:
        return []
    lines = [f"enabled: {str(content.enabled).lower()}", f"valid: {str(content.valid).lower()}"]
    lines.append("if:")
    lines.extend("  " + line for line in content.if_.splitlines())
    lines.append("do:")
    lines.extend("  " + line for line in content.do.splitlines())
    return lines
