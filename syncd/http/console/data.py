"""What the console's pages show, read through the workspace use cases: a workspace's data
and its drift (on the bounded remote-read threads). The live stream of rows is in streams.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from syncd.app import Parts
from syncd.config import WorkspaceConfig
from syncd.core.errors import SyncdError
from syncd.core.model import Plan
from syncd.core.times import parse_time
from syncd.http.console import pages


def workspace_data(parts: Parts, ws: WorkspaceConfig) -> dict[str, Any]:
    """What a workspace's page shows from the store, read in one worker thread."""
    service = parts.workspaces
    return {
        "view": service.overview(ws),
        "health": service.health(ws),
        "steps": sorted(service.steps(ws), key=lambda s: s.name),
        "runs": service.runs(ws, 50),
        "applied_runs": service.applied_revisions(ws),
    }


async def drift(parts: Parts, ws: WorkspaceConfig) -> dict[str, Any]:
    """The page's diff. It talks to the remote: on the bounded remote-read threads, as the
    API's diff does, so that pages of a slow remote cannot starve every other request."""
    try:
        reading = await parts.remote_reads.run(parts.workspaces.preview, ws)
    except SyncdError as e:  # Busy too: the rest of the page still shows
        return {"changes": [], "hidden_changes": 0, "plan_revision": None, "drift_error": str(e)}
    changes, hidden_changes = pages.plan_changes(reading.plan)
    return {
        "changes": changes,
        "hidden_changes": hidden_changes,
        "plan_revision": reading.revision,
        "drift_error": None,
    }


async def preview_data(parts: Parts, ws: WorkspaceConfig, revision: str) -> dict[str, Any]:
    """A commit's plan for the preview page, read as the API's preview reads it: on the
    bounded remote-read threads (it may fetch). Its errors are the page's (the error page)."""
    found = await parts.remote_reads.run(parts.workspaces.preview_revision, ws, revision)
    plan = found.plan or Plan()
    changes, hidden_changes = pages.plan_changes(plan)
    return {
        "preview": found,
        "changes": changes,
        "hidden_changes": hidden_changes,
        "created": len(plan.creates),
        "updated": len(plan.updates),
        "deleted": len(plan.deletes),
        "unchanged": plan.unchanged,
    }


def datetime_text(when: object) -> str:
    """A time of a view (RFC 3339, or unix seconds) as the pages show it."""
    try:
        seconds = parse_time(when)
    except ValueError:
        return str(when)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
