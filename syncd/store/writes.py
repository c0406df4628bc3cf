"""The writes both SQL stores make inside one transaction, written once over a `Dialect`: the
base check of an optimistic apply, an apply's writes, edits made outside git, and the rows an
apply and a run record share. The caller holds the transaction (and, on PostgreSQL, the
workspace's write lock); each function here only runs statements in it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from syncd.core.model import LiveStep, Origin, Plan, Run, Status, StepContent, SyncState
from syncd.store.dialect import C, Dialect
from syncd.store.protocol import ApplyBase, IndexUpdate
from syncd.store.rows import (
    check_applied,
    check_versions,
    index_params,
    new_step_ids,
    run_params,
    state_params,
)


def check_base(d: Dialect[C], db: C, ws: str, base: ApplyBase) -> None:
    """ApplyConflict unless the store still holds the base the plan was read from."""
    row = db.execute(d.sql.applied_revision, (ws,)).fetchone()
    check_applied(ws, base, row[0] if row else None)
    rows = d.select_in(db, d.sql.live_versions_in, (ws,), list(base.versions))
    now = {str(r[0]): int(r[1]) for r in rows}
    check_versions(ws, base, now)


def insert_run(d: Dialect[C], db: C, run: Run) -> None:
    # Inserted, never upserted: a run id is one writer's (syncd.store.leases checks first, and
    # the primary key refuses a second record of it all the same).
    db.execute(d.sql.insert_run, run_params(run))


def upsert_state(d: Dialect[C], db: C, state: SyncState) -> None:
    db.execute(d.sql.upsert_state, state_params(state))


def mark_out_of_sync(d: Dialect[C], db: C, ws: str, now: float) -> None:
    db.execute(d.sql.mark_out_of_sync, (ws, now))


def put_outside(
    d: Dialect[C], db: C, ws: str, name: str, content: StepContent, now: float
) -> LiveStep:
    """An edit made outside git: the step's row (a tombstone's id and version go on, so the
    step comes back as the same step), marked `outside`, and the workspace OutOfSync."""
    old = db.execute(d.sql.step_version, (ws, name)).fetchone()
    step_id, version = (str(old[0]), int(old[1]) + 1) if old else (next(new_step_ids(1)), 1)
    text, digest = content.canonical_json(), content.content_hash()
    db.execute(
        d.sql.upsert_step, (ws, name, step_id, text, digest, version, now, Origin.OUTSIDE.value)
    )
    mark_out_of_sync(d, db, ws, now)
    return LiveStep(step_id, name, content, version, digest, now, Origin.OUTSIDE)


def delete_outside(d: Dialect[C], db: C, ws: str, name: str, now: float) -> bool:
    """A deletion made outside git: the live step becomes a tombstone marked `outside`, and the
    workspace OutOfSync. False when there was no live step by that name."""
    deleted = int(db.execute(d.sql.delete_outside, (now, ws, name)).rowcount) > 0
    if deleted:
        mark_out_of_sync(d, db, ws, now)
    return deleted


def update_index(
    d: Dialect[C], db: C, ws: str, index: IndexUpdate, texts: dict[StepContent, str]
) -> None:
    if index.replace_all:
        db.execute(d.sql.clear_index, (ws,))
    else:
        d.write_in(db, d.sql.remove_files_in, ws, list(index.removes))
    d.executemany(db, d.sql.upsert_file, index_params(ws, index.upserts, texts))


def write_plan(
    d: Dialect[C],
    db: C,
    plan: Plan,
    index: IndexUpdate,
    run: Run,
    state: SyncState,
    base: ApplyBase,
    now: float,
) -> SyncState:
    """An apply's writes, after its lease and base were checked: the plan's steps, the steps
    the base covered, git's index, the run and the state. Returns the state saved."""
    ws = state.workspace
    upserts = plan.creates + plan.updates
    # A workspace's first apply has no rows to look up or clear: one probe instead of a lookup
    # of every name (SQLite: one per 500 names).
    has_steps = db.execute(d.sql.any_step, (ws,)).fetchone() is not None
    old: dict[str, tuple[str, int]] = {}
    if has_steps:
        names = [c.name for c in upserts]
        for r in d.select_in(db, d.sql.step_versions_in, (ws,), names):
            old[str(r[0])] = (str(r[1]), int(r[2]))
    new_ids = new_step_ids(sum(1 for c in upserts if c.name not in old))
    rows = []
    # Each content is serialized once: for the row, its hash and the git index.
    texts: dict[StepContent, str] = {}
    for change in upserts:
        assert change.after is not None
        step_id, version = old.get(change.name) or (next(new_ids), 0)
        text = texts[change.after] = change.after.canonical_json()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        rows.append((ws, change.name, step_id, text, digest, version + 1, now, Origin.GIT.value))
    d.executemany(db, d.sql.upsert_step, rows)
    d.write_in(db, d.sql.delete_steps_in, ws, [c.name for c in plan.deletes])
    if has_steps:
        # The steps the plan covered are now as git has them: their tombstones go and their
        # marks clear; a step edited outside git that the base did not cover keeps its mark.
        # After the plan's writes, not before: those leave no tombstone and no mark on the
        # steps they wrote, so these two touch only the covered steps the plan left as they
        # were (an edit outside git that matches git, a tombstone of a step git deleted too),
        # and no row is written twice.
        covered = list(base.versions)
        d.write_in(db, d.sql.delete_tombstones_in, ws, covered)
        d.write_in(db, d.sql.clear_marks_in, ws, covered)
    update_index(d, db, ws, index, texts)
    insert_run(d, db, run)
    left = int(db.execute(d.sql.drift_left, (ws,)).fetchone()[0])
    if left:  # edited outside git while this sync ran, and not covered: not synced yet
        state = replace(state, status=Status.OUT_OF_SYNC, drift=left)
    upsert_state(d, db, state)
    return state
