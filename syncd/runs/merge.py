"""The one rule by which a new sync request joins a waiting one. Pure: no I/O, no clock.

Both queues follow it: the in-process one (`syncd.runs.local_queue`) and the shared one in
PostgreSQL (`syncd.runs.replicas.pg_requests`, which reads the waiting rows, asks `merge` and
writes its answer back). `tests/integration/test_request_merge.py` runs one table of cases
against this function and against the PostgreSQL queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from syncd.core.model import Trigger

__all__ = ["FULL", "MAX_QUEUED_PER_WORKSPACE", "QUEUE", "Join", "Placement", "Terms", "merge"]

# A workspace's queue holds ordinary requests in one entry; pinned revisions and dry runs
# that differ from each other need entries of their own, up to this many. One bound for the
# in-process queue and the shared one.
MAX_QUEUED_PER_WORKSPACE = 4


@dataclass(frozen=True, slots=True)
class Terms:
    """What a request asks for, as far as merging goes."""

    trigger: Trigger
    revision: str | None = None  # a pinned commit, or None for the branch's head
    dry_run: bool = False
    head: str | None = None  # the branch head its asker saw, if it said
    # Who asked (a token's name, `local:<user>`); None for a trigger's own request. Not part
    # of the kind: a person's request joins a webhook's, and the run says who asked.
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """The new request joins the waiting one at `index`, whose terms become `terms`: its
    asker is answered by that request's run."""

    index: int
    terms: Terms


QUEUE: Literal["queue"] = "queue"  # it waits as a request of its own
FULL: Literal["full"] = "full"  # refused: the workspace has as many waiting as it may

Placement = Join | Literal["queue", "full"]


def merge(
    waiting: Sequence[Terms], new: Terms, max_waiting: int = MAX_QUEUED_PER_WORKSPACE
) -> Placement:
    """Where a new request goes, given the workspace's requests waiting, oldest first.

    The rule, whole:
    - `waiting` are the requests not yet started. The run in flight is never joined: a
      request made while a run is in flight may carry news that run did not see.
    - A new request joins the newest waiting one of its kind, the same `(revision,
      dry_run)`: any number of pushes while a run is in flight collapse into one queued run,
      while a pinned revision or a dry run is never served by a run that is not one.
    - Joining keeps the waiting request's trigger, except that a manual request makes it
      manual (a person asked: the run says so, and it applies even in manual mode).
    - Joining keeps the head the waiting request was told only if the new one was told the
      same; otherwise the run resolves the branch's head itself.
    - Joining keeps the waiting request's actor, except that a manual request's actor (the
      person who asked) replaces it, as its trigger does.
    - In the shared queue a request may be due later (an outside edit's quiet moment): the
      joined request is due at the earlier of the two times.
    - A request that joins none waits as one of its own, unless `max_waiting` already wait
      (`FULL`: the caller hears 503, try again later). Lanes exist only for configured
      workspaces, so this bounds the whole queue too.
    """
    for index in range(len(waiting) - 1, -1, -1):
        old = waiting[index]
        if (old.revision, old.dry_run) == (new.revision, new.dry_run):
            manual = new.trigger is Trigger.MANUAL
            trigger = Trigger.MANUAL if manual else old.trigger
            head = old.head if old.head == new.head else None
            actor = new.actor if manual and new.actor else old.actor
            return Join(index, replace(old, trigger=trigger, head=head, actor=actor))
    if len(waiting) >= max_waiting:
        return FULL
    return QUEUE
