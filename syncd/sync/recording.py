"""The record phase of a sync, as pure functions: the workspace's state that a run leaves
behind when it applied its plan, only planned it, or failed.

Pure: nothing here reads the clock, git or the store. The engine writes the state these return,
with the run, in one store call (see `Engine._finish` and `Engine._fail`).
"""

from __future__ import annotations

from dataclasses import replace

from syncd.config import WorkspaceConfig
from syncd.core.errors import (
    GitError,
    PlanRefused,
    RevisionNotFound,
    StepFileError,
    SyncdError,
)
from syncd.core.model import Run, Status, SyncState
from syncd.git.signatures import Unverified
from syncd.sync.reading import Reading, source_key
from syncd.sync.verifying import permanent as permanent_refusal

# Errors that another attempt at the same commit cannot fix: the commit itself is bad. So is
# a commit `verify` refuses, unless the verifying process only ran out of time (`permanent`).
PERMANENT_ERRORS = (StepFileError, PlanRefused, RevisionNotFound)


def permanent(error: SyncdError) -> bool:
    """Whether the failed run's commit waits for a new one (neither retried nor polled again)."""
    if isinstance(error, Unverified):
        return permanent_refusal(error)
    return isinstance(error, PERMANENT_ERRORS)


def applied_state(
    state: SyncState,
    ws: WorkspaceConfig,
    run_id: str,
    reading: Reading,
    head: str | None,
    pinned: bool,
) -> SyncState:
    """After applying `reading` at its commit. `head` is the branch head it is measured
    against (None when the remote could not tell): a pin other than the head is OutOfSync."""
    return replace(
        state,
        status=Status.SYNCED if head == reading.revision else Status.OUT_OF_SYNC,
        last_applied_revision=reading.revision,
        last_seen_revision=head or reading.revision,
        last_run_id=run_id,
        failed_revision=None,
        drift=0,
        source_key=source_key(ws),
        pinned_revision=reading.revision if pinned else None,
    )


def planned_state(state: SyncState, run_id: str, reading: Reading) -> SyncState:
    """After only planning (a dry run, or a workspace that applies nothing by itself): the plan's
    size is the drift."""
    plan = reading.plan
    return replace(
        state,
        status=Status.SYNCED if plan.empty else Status.OUT_OF_SYNC,
        last_seen_revision=reading.revision,
        last_run_id=run_id,
        failed_revision=None,
        drift=len(plan.changes),
    )


def failed_state(state: SyncState, run: Run, error: SyncdError) -> SyncState:
    """After a failed run. A permanent error marks its commit failed (neither retried nor
    polled again: it waits for a new commit); a transient one leaves it to the retries.

    A remote that could not be read (no commit resolved or fetched) leaves the comparison
    Unknown, as Argo CD says of a comparison error: the branch may have moved meanwhile. The
    next read of the remote compares again (a poll syncs an Unknown workspace)."""
    failed_for_good = permanent(error)
    seen = run.revision or state.last_seen_revision
    status = state.status
    if run.revision and run.revision != state.last_applied_revision:
        status = Status.OUT_OF_SYNC
    elif run.revision is None and isinstance(error, GitError) and not failed_for_good:
        status = Status.UNKNOWN
    return replace(
        state,
        status=status,
        last_seen_revision=seen,
        last_run_id=run.id,
        failed_revision=run.revision if failed_for_good and run.revision else None,
    )
