"""Rows <-> objects, new step ids, and the base check of an optimistic apply: the rules both
stores (and the FakeStore of the tests) share.

Each store keeps its own SQL; what a row means, what a statement's parameters are, and how a
conflict is worded live here once, so that SQLite and PostgreSQL cannot drift apart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from syncd.core.model import (
    CheckOutcome,
    Health,
    HealthRecord,
    LiveStep,
    Origin,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
    Trigger,
)
from syncd.store.protocol import ApplyBase, ApplyConflict

# What `state_from_row` and `health_from_row` read, in order.
STATE_COLUMNS = (
    "status, last_applied_revision, last_seen_revision, last_run_id, failed_revision, drift,"
    " source_key, pinned_revision, suspended"
)
HEALTH_COLUMNS = "health, since, error, failures, source_failing"
RUN_COLUMNS = (
    "id, workspace, trigger, revision, result, created, updated, deleted, started_at,"
    " finished_at, error, dry_run, actor, message, author, signed_by, checks"
)
RUN_PLACEHOLDERS = len(RUN_COLUMNS.split(","))


def run_from_row(r: Sequence[Any]) -> Run:
    return Run(
        id=str(r[0]),
        workspace=str(r[1]),
        trigger=Trigger(r[2]),
        revision=r[3] if isinstance(r[3], str) else None,
        result=RunResult(r[4]),
        created=int(r[5]),
        updated=int(r[6]),
        deleted=int(r[7]),
        started_at=float(r[8]),
        finished_at=None if r[9] is None else float(r[9]),
        error=r[10] if isinstance(r[10], str) else None,
        dry_run=bool(r[11]),
        actor=_text(r[12]),
        message=_text(r[13]),
        author=_text(r[14]),
        signed_by=_text(r[15]),
        checks=checks_from_text(r[16]),
    )


def checks_text(checks: tuple[CheckOutcome, ...]) -> str | None:
    """A run's checks as the store keeps them: JSON, or NULL when none ran."""
    return json.dumps([c.to_dict() for c in checks]) if checks else None


def checks_from_text(value: Any) -> tuple[CheckOutcome, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(
        CheckOutcome(str(c["name"]), str(c["result"]), str(c["detail"]), float(c["duration"]))
        for c in json.loads(value)
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def run_params(run: Run) -> tuple[Any, ...]:
    """A run's values in RUN_COLUMNS order. dry_run is a bool: PostgreSQL's column is BOOLEAN,
    and SQLite stores a bool as 1 or 0."""
    return (
        run.id,
        run.workspace,
        run.trigger.value,
        run.revision,
        run.result.value,
        run.created,
        run.updated,
        run.deleted,
        run.started_at,
        run.finished_at,
        run.error,
        bool(run.dry_run),
        run.actor,
        run.message,
        run.author,
        run.signed_by,
        checks_text(run.checks),
    )


def state_from_row(ws: str, row: Sequence[Any] | None) -> SyncState:
    """From (status, last_applied_revision, last_seen_revision, last_run_id, failed_revision,
    drift, source_key, pinned_revision, suspended); a workspace never saved has the default."""
    if row is None:
        return SyncState(workspace=ws)
    return SyncState(
        ws, Status(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8])
    )


def state_params(s: SyncState) -> tuple[Any, ...]:
    """(id, status, last_applied_revision, last_seen_revision, last_run_id, failed_revision,
    drift, source_key, pinned_revision, updated_at), updated now."""
    return (
        s.workspace,
        s.status.value,
        s.last_applied_revision,
        s.last_seen_revision,
        s.last_run_id,
        s.failed_revision,
        s.drift,
        s.source_key,
        s.pinned_revision,
        time.time(),
    )


def upsert_state_sql(mark: str) -> str:
    """The statement that saves a state from `state_params`, both stores' SQL but for the
    parameter mark (? or %s); `suspended` is not a state's to change, and stays."""
    return (
        "INSERT INTO workspaces (id, status, last_applied_revision, last_seen_revision,"
        " last_run_id, failed_revision, drift, source_key, pinned_revision, updated_at)"
        f" VALUES ({','.join([mark] * 10)})"
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
        " last_applied_revision = excluded.last_applied_revision,"
        " last_seen_revision = excluded.last_seen_revision, last_run_id = excluded.last_run_id,"
        " failed_revision = excluded.failed_revision, drift = excluded.drift,"
        " source_key = excluded.source_key, pinned_revision = excluded.pinned_revision,"
        " updated_at = excluded.updated_at"
    )


def health_from_row(ws: str, row: Sequence[Any] | None) -> HealthRecord | None:
    """From (health, since, error, failures, source_failing); None when never recorded."""
    if row is None:
        return None
    return HealthRecord(
        ws,
        Health(row[0]),
        None if row[1] is None else float(row[1]),
        row[2] if isinstance(row[2], str) else None,
        int(row[3]),
        bool(row[4]),
    )


def health_params(record: HealthRecord) -> tuple[Any, ...]:
    """(workspace, health, since, error, failures, source_failing)."""
    return (
        record.workspace,
        record.health.value,
        record.since,
        record.error,
        record.failures,
        bool(record.source_failing),
    )


def live_step_from_row(r: Sequence[Any]) -> LiveStep:
    """From (id, name, content, version, content_hash, updated_at, origin)."""
    content = StepContent.from_dict(json.loads(str(r[2])))
    return LiveStep(
        id=str(r[0]),
        name=str(r[1]),
        content=content,
        version=int(r[3]),
        content_hash=str(r[4]),
        updated_at=float(r[5]),
        origin=Origin(r[6]),
    )


def index_step_from_row(r: Sequence[Any]) -> Step:
    """From (path, name, blob, content) of git's files."""
    content = StepContent.from_dict(json.loads(str(r[3])))
    return Step(name=str(r[1]), content=content, path=str(r[0]), blob=str(r[2]))


def index_params(
    ws: str, steps: Sequence[Step], texts: Mapping[StepContent, str]
) -> list[tuple[str, str, str, str, str]]:
    """(workspace, path, name, blob, content) of git's files; a content already serialized for
    the steps' rows is not serialized again."""
    return [
        (ws, s.path, s.name, s.blob, texts.get(s.content) or s.content.canonical_json())
        for s in steps
    ]


def new_step_ids(count: int) -> Iterator[str]:
    """`count` fresh step ids, each what uuid.uuid4().hex gives, from one read of the random
    source: building a UUID object per step was a fifth of an initial apply's time."""
    raw = os.urandom(16 * count)
    for i in range(0, 16 * count, 16):
        n = int.from_bytes(raw[i : i + 16], "big")
        # RFC 4122 variant and version 4, as uuid.UUID(bytes=..., version=4) sets them.
        n = (n & ~(0xC000 << 48)) | (0x8000 << 48)
        n = (n & ~(0xF000 << 64)) | (4 << 76)
        yield f"{n:032x}"


def check_applied(ws: str, base: ApplyBase, applied: str | None) -> None:
    """ApplyConflict unless the applied revision is still the one the plan was read at."""
    if applied != base.revision:
        raise ApplyConflict(
            f"workspace {ws}: applied revision moved from {_short(base.revision)} to"
            f" {_short(applied)} since the plan was read"
        )


def check_versions(ws: str, base: ApplyBase, now: Mapping[str, int]) -> None:
    """ApplyConflict unless each step of the base still has the version the plan read (`now`:
    the live versions of the base's steps that are not deleted)."""
    moved = sorted(n for n in base.versions if now.get(n) != base.versions[n])
    if moved:
        shown = ", ".join(repr(n) for n in moved[:5]) + (" ..." if len(moved) > 5 else "")
        raise ApplyConflict(f"workspace {ws}: steps changed since the plan was read: {shown}")


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "none"
