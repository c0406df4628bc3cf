"""What the scheduler queues and hands back: a request, its ticket, and the two refusals
(queue full, shutting down). Their one address: import them from here."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from syncd.core.errors import SyncdError
from syncd.core.model import Trigger
from syncd.runs.merge import Terms

if TYPE_CHECKING:  # the engine (and git) only for the annotations
    from syncd.sync.engine import Outcome

__all__ = ["QueueFull", "Request", "ShuttingDown", "Ticket"]


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
    # Who asked: a token's name, `local:<user>`; None for a trigger's own request (the run
    # then names its trigger).
    actor: str | None = None

    @property
    def terms(self) -> Terms:
        """What it asks for, as the merge rule (`syncd.runs.merge`) reads it."""
        return Terms(self.trigger, self.revision, self.dry_run, self.head, self.actor)


@dataclass(frozen=True)
class Ticket:
    workspace: str
    run_id: str
    coalesced: bool
    future: asyncio.Future[Outcome]
