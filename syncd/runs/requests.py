"""What the scheduler queues and hands back: a request, its ticket, a workspace's slot, and the
two refusals (queue full, shutting down)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from syncd.core.errors import SyncdError
from syncd.core.model import Trigger
from syncd.runs.replicas import MAX_QUEUED_PER_WORKSPACE

if TYPE_CHECKING:  # the engine (and git) only for the annotations
    from syncd.sync.engine import Outcome

__all__ = ["MAX_QUEUED_PER_WORKSPACE", "QueueFull", "Request", "ShuttingDown", "Slot", "Ticket"]


class QueueFull(SyncdError):
    """Too many requests are waiting: try again later (HTTP 503 with Retry-After)."""


class ShuttingDown(SyncdError):
    """syncd is stopping and takes no new runs."""


@dataclass
class Request:
    trigger: Trigger
    revision: str | None = None
    dry_run: bool = False
    head: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    waiters: list[asyncio.Future[Outcome]] = field(default_factory=list)
    # Claimed before by a replica that has gone or was cut off (or froze): its run takes the
    # workspace's lease over at once instead of waiting for it to expire.
    take_over: bool = False

    @property
    def ordinary(self) -> bool:
        return self.revision is None and not self.dry_run

    def absorbs(self, other: Request) -> bool:
        return (self.revision, self.dry_run) == (other.revision, other.dry_run)


@dataclass(frozen=True)
class Ticket:
    workspace: str
    run_id: str
    coalesced: bool
    future: asyncio.Future[Outcome]


@dataclass
class Slot:
    """A workspace's queue (its head is the run in flight), its worker and its timers."""

    queue: deque[Request] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    failures: int = 0
    retry: asyncio.TimerHandle | None = None
    drift_timer: asyncio.TimerHandle | None = None
