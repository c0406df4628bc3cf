"""The coordination the scheduler needs between replicas, and its one-process implementation.

A shared coordinator (`shared` is True) keeps sync requests in the database, durable before
they are answered and placed by the merge rule (`syncd.runs.merge`); a replica runs a
workspace's requests only while it holds that workspace (one holder at a time), and polls a
remote only when it is that remote's turn. The local one says "not shared": the scheduler then
keeps its queue in memory (`syncd.runs.local_queue`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from syncd.core.model import Trigger
from syncd.runs.merge import MAX_QUEUED_PER_WORKSPACE


@dataclass(frozen=True, slots=True)
class Submitted:
    """A request recorded: the run that will serve it, and whether it joined a queued one."""

    run_id: str
    coalesced: bool


@dataclass(frozen=True, slots=True)
class Claimed:
    """A request this replica now runs (it holds the workspace)."""

    id: int
    workspace: str
    trigger: Trigger
    revision: str | None
    dry_run: bool
    head: str | None
    run_id: str
    # Claimed before by another replica, which has gone, was cut off or froze; its run may
    # have been recorded already, and its lease is taken over at once.
    taken_over: bool
    actor: str | None = None  # who asked (a token's name, `local:<user>`), if anyone


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One replica as the API shows it."""

    id: str
    host: str
    pid: int
    started_at: float
    last_seen: float
    alive: bool
    holds: Sequence[str] = ()
    this: bool = False


def new_replica_id() -> str:
    """host-pid-random: readable in logs, unique across restarts of the same pid."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Coordinator(Protocol):
    """What the scheduler asks of the replicas' coordination."""

    replica_id: str
    # True: requests go through the database and any replica may run them.
    shared: bool

    async def start(self, wake: Callable[[], None], finished: Callable[[str], None]) -> None:
        """Begin: `wake` is called when requests may be waiting, `finished(run_id)` when
        another replica finished a run."""
        ...

    async def stop(self) -> None: ...

    def submit(
        self,
        ws: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        run_id: str,
        delay: float = 0.0,
        max_waiting: int = MAX_QUEUED_PER_WORKSPACE,
        actor: str | None = None,
    ) -> Submitted | None:
        """Record a request durably (blocking, one short transaction); None when the
        workspace already has `max_waiting` requests waiting. StoreError when it cannot."""
        ...

    async def pending(self) -> list[str]:
        """Workspaces with a request due, oldest first."""
        ...

    async def acquire(self, ws: str) -> bool:
        """Hold the workspace if no replica does; True when this replica now holds it."""
        ...

    async def release(self, ws: str) -> None: ...

    async def claim(self, ws: str) -> Claimed | None:
        """The next due request of a workspace this replica holds."""
        ...

    async def finish(self, claimed: Claimed) -> None:
        """The request was served: forget it, and tell the other replicas."""
        ...

    async def poll_turn(self, remote: str, interval: float) -> bool:
        """Whether this replica polls `remote` this cycle."""
        ...

    def held(self) -> list[str]: ...

    async def replicas(self) -> list[ReplicaInfo]: ...

    def alive(self) -> int:
        """Replicas whose heartbeat was fresh at this replica's last heartbeat (this one
        included); no database call, for the `syncd_replicas_alive` gauge."""
        ...

    def problem(self) -> str | None:
        """Why this replica cannot coordinate now (its database connection is lost), or None."""
        ...


@dataclass
class LocalCoordinator:
    """One process: nothing is shared, every poll is this process's turn."""

    replica_id: str = field(default_factory=new_replica_id)
    shared: bool = False
    started_at: float = field(default_factory=time.time)
    holds: Callable[[], list[str]] = list

    async def start(self, wake: Callable[[], None], finished: Callable[[str], None]) -> None:
        return None

    async def stop(self) -> None:
        return None

    def submit(
        self,
        ws: str,
        trigger: Trigger,
        revision: str | None,
        dry_run: bool,
        head: str | None,
        run_id: str,
        delay: float = 0.0,
        max_waiting: int = MAX_QUEUED_PER_WORKSPACE,
        actor: str | None = None,
    ) -> Submitted | None:
        raise NotImplementedError("the in-process scheduler queues requests itself")

    async def pending(self) -> list[str]:
        return []

    async def acquire(self, ws: str) -> bool:
        return True

    async def release(self, ws: str) -> None:
        return None

    async def claim(self, ws: str) -> Claimed | None:
        return None

    async def finish(self, claimed: Claimed) -> None:
        return None

    async def poll_turn(self, remote: str, interval: float) -> bool:
        return True

    def held(self) -> list[str]:
        return self.holds()

    async def replicas(self) -> list[ReplicaInfo]:
        now = time.time()
        host, pid = socket.gethostname(), os.getpid()
        holds = tuple(self.holds())
        return [ReplicaInfo(self.replica_id, host, pid, self.started_at, now, True, holds, True)]

    def alive(self) -> int:
        return 1

    def problem(self) -> str | None:
        return None
