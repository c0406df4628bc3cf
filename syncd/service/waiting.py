"""Waiting for a revision (`syncd wait WS --revision SHA|HEAD`, `GET .../wait`): the commit
asked for, resolved once, and whether the workspace has applied it (or a descendant of it)
and is healthy, or a run of it failed.

`judge` is pure. `Waiting` is blocking: `target` asks the remote (the branch head, or a sha
checked to be on the branch, fetched into the mirror), `check` reads the store and the mirror;
the API calls them on threads, the local CLI in place. Deploy scripts wait on this:

    git push && syncd --server https://syncd.example.com wait prod --revision HEAD
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from syncd.config import WorkspaceConfig
from syncd.core.errors import SyncdError
from syncd.core.model import Health, Run, RunResult, SyncState
from syncd.core.refs import is_revision
from syncd.service.workspaces import Workspaces
from syncd.sync.resolving import remote_for

__all__ = ["HEAD", "MAX_WAIT_SECONDS", "POLL_SECONDS", "Verdict", "Waiting", "judge"]

HEAD = "HEAD"
# One request to the API holds at most this long; a client waiting longer asks again, with
# the sha the first answer resolved (a proxy's idle timeout is often 60 s or more).
MAX_WAIT_SECONDS = 300
POLL_SECONDS = 0.5  # how often a wait reads the store (cheap: two rows)

Verdict = Literal["applied", "failed", "waiting"]


class BadRevision(SyncdError):
    """`revision` is neither HEAD nor a commit sha (HTTP 422, exit 2)."""


def parse_revision(text: str) -> str:
    """HEAD (any case) or a 4-40 hex digit sha; BadRevision naming what was given."""
    if text.strip().upper() == HEAD:
        return HEAD
    if not is_revision(text):
        shown = text[:60] + ("…" if len(text) > 60 else "")
        raise BadRevision(
            f"revision {shown!r} is neither HEAD nor a commit sha (4 to 40 hex digits)"
        )
    return text.lower()


def judge(
    target: str,
    state: SyncState,
    last: Run | None,
    health: Health,
    contains: Callable[[str], bool],
) -> Verdict:
    """`applied` when the applied commit is `target` or descends from it (`contains`) and the
    workspace is Healthy; `failed` when the last run, of that commit or a descendant, failed,
    or such a commit is marked failed for good; else `waiting`. A dry run applies nothing and
    fails nothing here."""
    applied = state.last_applied_revision
    if applied is not None and contains(applied) and health is Health.HEALTHY:
        return "applied"
    if (
        last is not None
        and last.result is RunResult.FAILED
        and not last.dry_run
        and last.revision is not None
        and contains(last.revision)
    ):
        return "failed"
    if state.failed_revision is not None and contains(state.failed_revision):
        return "failed"
    return "waiting"


class Waiting:
    """The waits of one process, over its workspaces' store and mirrors."""

    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces

    def target(self, ws: WorkspaceConfig, revision: str) -> str:
        """The full sha to wait for, in the mirror afterwards: the branch head now (HEAD), or
        the commit given, which must be on the workspace's branch (RevisionNotOnBranch, or
        RevisionNotFound, naming it). Talks to the remote."""
        engine = self.workspaces.engine
        asked = parse_revision(revision)
        return engine.resolve(ws, None if asked == HEAD else asked)

    def check(self, ws: WorkspaceConfig, target: str) -> dict[str, Any]:
        """Where the workspace stands against `target` now (reads the store and the mirror)."""
        service = self.workspaces
        state, last = service.state(ws)
        health = service.keeper.current(ws, state, last).health
        git, remote = service.engine.git, remote_for(ws)

        def contains(commit: str) -> bool:
            return commit == target or git.is_ancestor(remote, target, commit)

        verdict = judge(target, state, last, health, contains)
        return wait_view(ws, target, verdict, state, last, health)


async def hold(
    check: Callable[[], Awaitable[dict[str, Any]]],
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """`check()` every POLL_SECONDS until its result is not `waiting` or `seconds` have
    passed (at least one check; bounded by the time, and by MAX_WAIT_SECONDS)."""
    deadline = clock() + min(max(0.0, seconds), MAX_WAIT_SECONDS)
    while True:
        found = await check()
        left = deadline - clock()
        if found["result"] != "waiting" or left <= 0:
            return found
        await asyncio.sleep(min(POLL_SECONDS, left))


def wait_view(
    ws: WorkspaceConfig,
    target: str,
    verdict: Verdict,
    state: SyncState,
    last: Run | None,
    health: Health,
) -> dict[str, Any]:
    """The answer of `GET .../wait` (and what `syncd wait --json` prints)."""
    return {
        "workspace": ws.id,
        "revision": target,
        "result": verdict,
        "applied_revision": state.last_applied_revision,
        "status": str(state.status),
        "health": str(health),
        "last_run": last.to_dict() if last is not None else None,
    }
