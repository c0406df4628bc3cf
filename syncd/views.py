"""The JSON shapes users see, shared by the API and the CLI's --json, so both say the same."""

from __future__ import annotations

from typing import Any

from syncd.config import WorkspaceConfig
from syncd.engine import Reading
from syncd.model import Run, SyncState
from syncd.urls import redact_url


def source_view(ws: WorkspaceConfig) -> dict[str, Any]:
    return {
        "url": redact_url(ws.source.url),
        "branch": ws.source.branch,
        "path": ws.source.path,
    }


def workspace_view(ws: WorkspaceConfig, state: SyncState, last_run: Run | None) -> dict[str, Any]:
    return {
        "id": ws.id,
        "name": ws.name,
        "tags": list(ws.tags),
        "mode": str(ws.mode),
        "status": str(state.status),
        "source": source_view(ws),
        "poll_interval": ws.poll_interval,
        "last_applied_revision": state.last_applied_revision,
        "last_seen_revision": state.last_seen_revision,
        "failed_revision": state.failed_revision,
        "drift": state.drift,
        "last_run": last_run.to_dict() if last_run else None,
    }


def diff_view(ws: WorkspaceConfig, reading: Reading) -> dict[str, Any]:
    return {"workspace": ws.id, "revision": reading.revision, **reading.plan.to_dict()}
