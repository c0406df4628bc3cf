"""What the console's pages show, read through the workspace use cases: a workspace's data,
its drift (on the bounded remote-read threads), and the live stream of table rows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from syncd.app import App
from syncd.config import WorkspaceConfig
from syncd.console import pages
from syncd.errors import SyncdError
from syncd.times import parse_time

EVENT_INTERVAL = 1.0  # seconds between looks at the store for a live page
STREAM_SECONDS = 300.0  # a stream ends after this; the browser reconnects on its own


def workspace_data(rt: App, ws: WorkspaceConfig) -> dict[str, Any]:
    """What a workspace's page shows from the store, read in one worker thread."""
    service = rt.workspaces
    return {
        "view": service.overview(ws),
        "health": service.health(ws),
        "steps": sorted(service.steps(ws), key=lambda s: s.name),
        "runs": service.runs(ws, 50),
        "applied_runs": service.applied_revisions(ws),
    }


async def drift(rt: App, ws: WorkspaceConfig) -> dict[str, Any]:
    """The page's diff. It talks to the remote: on the bounded remote-read threads, as the
    API's diff does, so that pages of a slow remote cannot starve every other request."""
    try:
        reading = await rt.remote_reads.run(rt.workspaces.preview, ws)
    except SyncdError as e:  # Busy too: the rest of the page still shows
        return {"changes": [], "hidden_changes": 0, "plan_revision": None, "drift_error": str(e)}
    changes, hidden_changes = pages.plan_changes(reading.plan)
    return {
        "changes": changes,
        "hidden_changes": hidden_changes,
        "plan_revision": reading.revision,
        "drift_error": None,
    }


async def stream(rt: App, token_name: str, only: str | None) -> AsyncIterator[str]:
    """One `workspace` event per workspace whose row changed, looked at every second."""
    yield "retry: 2000\n\n"
    sent: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + STREAM_SECONDS
    while not (rt.closing or rt.stopping) and time.monotonic() < deadline:
        if not any(t.name == token_name and t.allows("read") for t in rt.config.tokens):
            return  # the token was removed or lost `read`: its sessions end, streams too
        chosen = [ws for ws in rt.config.workspaces if only in (None, ws.id)]
        views = await asyncio.to_thread(rt.workspaces.overviews, chosen)
        now = time.time()
        for view in views:
            row = pages.row(view, now)
            compare = {k: v for k, v in row.items() if k != "last_run_age"}
            if sent.get(row["id"]) != compare:
                sent[row["id"]] = compare
                yield f"event: workspace\ndata: {json.dumps(row)}\n\n"
        await asyncio.sleep(EVENT_INTERVAL)


def datetime_text(when: object) -> str:
    """A time of a view (RFC 3339, or unix seconds) as the pages show it."""
    try:
        seconds = parse_time(when)
    except ValueError:
        return str(when)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
