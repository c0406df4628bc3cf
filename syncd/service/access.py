"""The access rule (syncd.core.access) applied to a caller and a workspace: one home for the
API's routes, the console's pages and the service's actions, so that every entry point answers
a workspace outside a caller's reach the same way (404, as if it did not exist) and one the
caller may read but not act on as asked the same way (403)."""

from __future__ import annotations

from collections.abc import Iterable

from syncd.config import WorkspaceConfig
from syncd.core.errors import Forbidden, NotFound
from syncd.service.audit import Actor

# The scope each action of syncd.service.actions needs on its workspace.
ACTION_SCOPES = {
    "sync": "sync",
    "suspend": "sync",
    "resume": "sync",
    "step.put": "write",
    "step.delete": "write",
    "export": "export",
}


def require(actor: Actor, scope: str, ws: WorkspaceConfig) -> WorkspaceConfig:
    """`ws`, when the actor may `scope` it; NotFound (the message a missing workspace gets)
    when they may not even read it, Forbidden when they may read it only."""
    access = actor.access
    if not access.sees(ws.id, ws.tags):
        raise NotFound(f"no workspace {ws.id[:100]!r}")
    if not access.allows(scope, ws.id, ws.tags):
        raise Forbidden(f"{actor.name!r} lacks the {scope!r} scope on workspace {ws.id!r}")
    return ws


def visible(actor: Actor, workspaces: Iterable[WorkspaceConfig]) -> list[WorkspaceConfig]:
    """The workspaces the actor may read, in the order given."""
    return [ws for ws in workspaces if actor.access.sees(ws.id, ws.tags)]


def sees(actor: Actor, ws: WorkspaceConfig) -> bool:
    return actor.access.sees(ws.id, ws.tags)
