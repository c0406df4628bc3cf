"""What a sync hands back (`Outcome`) and whom it tells when a run ends (`SyncObserver`).

Data and a fan-out, no I/O of its own: `Observers` only calls the observers it is given, and
those (metrics, health, notifications) do what they do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from syncd.config import WorkspaceConfig
from syncd.core.model import Plan, Run, SyncState
from syncd.ops.logs import fields

# The engine's logger: an observer's failure is logged as the engine's, as it always was.
log = logging.getLogger("syncd.engine")


class SyncObserver(Protocol):
    """Told about every finished run (metrics, notifications)."""

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None: ...


@runtime_checkable
class StartObserver(Protocol):
    """Told when a run knows its commit and starts on it (a commit status `pending`)."""

    def run_started(self, ws: WorkspaceConfig, run: Run) -> None: ...


@dataclass(frozen=True, slots=True)
class Observers:
    """Several observers told as one, in order (health before metrics)."""

    observers: tuple[SyncObserver, ...]

    def run_started(self, ws: WorkspaceConfig, run: Run) -> None:
        """Told to the observers that want to know of a start (those with `run_started`)."""
        for observer in self.observers:
            started = getattr(observer, "run_started", None)
            if started is None:
                continue
            try:
                started(ws, run)
            except Exception:
                log.exception("observer failed", extra=fields(workspace=ws.id, run=run.id))

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None:
        for observer in self.observers:
            try:
                observer.run_finished(ws, run, plan, state, seconds)
            except Exception:  # the run is recorded: one observer's failure must not undo that
                log.exception("observer failed", extra=fields(workspace=ws.id, run=run.id))


@dataclass(frozen=True, slots=True)
class Outcome:
    run: Run
    plan: Plan | None
    state: SyncState
    # The run lost the workspace to another writer and recorded nothing; that writer serves
    # the request (a caller may wait for its record of the same run id).
    fenced: bool = False
