"""The scheduler's queue: where sync requests wait until they run, and who runs them.

One interface (`RunQueue`), two implementations, chosen once when the scheduler is built:
`LocalQueue` (`syncd.runs.local_queue`: this process's memory; SQLite, one process) and
`SharedQueue` (`syncd.runs.shared_queue`: rows in PostgreSQL that any replica may run). Both
place a new request by the one merge rule (`syncd.runs.merge`). A queue runs what it takes
through its scheduler (`Runner`), which bounds parallelism, logs each run and retries it.

Interfaces only, and the one log line both queues write for a request they drop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from syncd.core.model import Trigger
from syncd.ops.logs import fields
from syncd.runs.requests import Request, Ticket

if TYPE_CHECKING:  # the engine (and git) only for the annotations
    from syncd.sync.engine import Outcome

__all__ = ["RunQueue", "Runner", "dropped"]

# The scheduler's logger: these lines were always the scheduler's, and log filters name it.
log = logging.getLogger("syncd.scheduler")


class Runner(Protocol):
    """What a queue asks of the scheduler it serves."""

    @property
    def accepting(self) -> bool:
        """False once the scheduler stops: nothing new is taken or started."""
        ...

    def admit(self, ws_id: str) -> None:
        """ShuttingDown while stopping, NotFound for a workspace the config does not name."""
        ...

    async def run_one(self, ws_id: str, req: Request) -> Outcome:
        """Run one request now (within the scheduler's parallelism)."""
        ...

    def after_run(self, ws_id: str, req: Request, outcome: Outcome) -> None:
        """A run ended: after a transient failure the scheduler retries it later."""
        ...

    def after_crash(self, ws_id: str, req: Request) -> None:
        """A run crashed before recording anything: retried later, as a transient failure."""
        ...


class RunQueue(Protocol):
    """Where a scheduler's requests wait, and the runs it serves from them."""

    async def start(self) -> None:
        """Begin serving (the shared queue starts the coordinator and its claim loop)."""
        ...

    async def submit(
        self,
        ws_id: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        *,
        actor: str | None = None,
    ) -> Ticket:
        """Queue an admitted request, or join the waiting one of its kind (the merge rule).
        QueueFull when it cannot wait (the bounds; a database that does not answer)."""
        ...

    def submit_quietly(self, ws_id: str, trigger: Trigger, head: str | None) -> None:
        """A request no one waits for (a timer, a poll): admitted and queued, or dropped
        with a log line, never raised."""
        ...

    async def submit_after_quiet(self, ws_id: str, trigger: Trigger, quiet: float) -> None:
        """A request no one waits for, due after a quiet moment of `quiet` seconds."""
        ...

    def stop(self) -> list[asyncio.Task[None]]:
        """Take and start nothing more; drop what waits here (its callers hear
        ShuttingDown). The tasks of the runs in flight, for the scheduler to wait on."""
        ...

    def busy(self) -> list[str]:
        """The workspaces this process is running (or, shared, holds)."""
        ...

    def forget(self, known: set[str]) -> None:
        """Drop what is kept for workspaces the config no longer names (not their runs)."""
        ...


def dropped(ws_id: str, trigger: Trigger, e: Exception) -> None:
    log.info("request dropped", extra=fields(workspace=ws_id, trigger=str(trigger), reason=str(e)))
