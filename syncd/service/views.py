"""The JSON shapes users see, shared by the API and the CLI's --json, so both say the same."""

from __future__ import annotations

import re
from typing import Any

from syncd.config import WorkspaceConfig
from syncd.core.model import HealthRecord, Plan, Run, SyncState, automation_suspended
from syncd.core.times import rfc3339
from syncd.core.urls import redact_url
from syncd.runs.replicas import ReplicaInfo
from syncd.sync.engine import Outcome, Reading
from syncd.sync.gate import Block
from syncd.sync.health import derived
from syncd.sync.previewing import Preview

# The commit a preview may name (the API's `?revision=`, `syncd diff --revision`, the console's
# page): a full or abbreviated sha as a pull request's page or `git log` shows it.
PREVIEW_REVISION = re.compile(r"[0-9a-fA-F]{7,40}")


def source_view(ws: WorkspaceConfig) -> dict[str, Any]:
    return {
        "url": redact_url(ws.source.url),
        "branch": ws.source.branch,
        "path": ws.source.path,
    }


def workspace_view(
    ws: WorkspaceConfig,
    state: SyncState,
    last_run: Run | None,
    health: HealthRecord | None = None,
    signed_by: str | None = None,
    blocked: Block | None = None,
) -> dict[str, Any]:
    """`signed_by`: whose verified signature the applied revision carries (`verify`);
    `blocked`: what holds an automatic workspace back now (a window, a promotion), if any."""
    health = health or derived(ws, state, last_run)
    return {
        "id": ws.id,
        "name": ws.name,
        "tags": list(ws.tags),
        "mode": str(ws.mode),
        "status": str(state.status),
        "health": health.to_dict(),
        "suspended": automation_suspended(ws.mode, state),
        "pinned_revision": state.pinned_revision,
        "source": source_view(ws),
        "poll_interval": ws.poll_interval,
        "last_applied_revision": state.last_applied_revision,
        "signed_by": signed_by,
        "last_seen_revision": state.last_seen_revision,
        "failed_revision": state.failed_revision,
        "drift": state.drift,
        "last_run": last_run.to_dict() if last_run else None,
        "blocked": blocked.to_dict() if blocked else None,
    }


def diff_view(ws: WorkspaceConfig, reading: Reading) -> dict[str, Any]:
    return {"workspace": ws.id, "revision": reading.revision, **reading.plan.to_dict()}


def preview_view(ws: WorkspaceConfig, preview: Preview) -> dict[str, Any]:
    """A commit's plan (`GET .../preview?revision=`, `syncd diff --revision`): `/diff`'s shape
    and whether it would apply, why not, and whose signature the commit carries. A commit
    that could not be read has no plan: empty lists, 0 unchanged."""
    return {
        "workspace": ws.id,
        "revision": preview.revision,
        "would_apply": preview.would_apply,
        "refused": preview.refused,
        "signed_by": preview.signed_by,
        **(preview.plan or Plan()).to_dict(),
    }


def replica_view(replica: ReplicaInfo) -> dict[str, Any]:
    """One replica: alive when its heartbeat is recent; `holds` the workspaces it runs."""
    return {
        "id": replica.id,
        "host": replica.host,
        "pid": replica.pid,
        "started_at": rfc3339(replica.started_at),
        "last_seen": rfc3339(replica.last_seen),
        "alive": replica.alive,
        "holds": list(replica.holds),
        "this": replica.this,
    }


def sync_result_view(ws: WorkspaceConfig, outcome: Outcome) -> dict[str, Any]:
    """A finished sync: its run, and whether automation is now suspended (a pinned sync of
    an automatic workspace suspends it) at which pinned revision."""
    state = outcome.state
    return {
        **outcome.run.to_dict(),
        "suspended": automation_suspended(ws.mode, state),
        "pinned_revision": state.pinned_revision,
    }
