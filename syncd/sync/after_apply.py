"""After an automatic workspace applied changes: its `checks`, and, when one still fails, the
run made `failed` and (with `on_check_failure: rollback`) a sync pinned to the revision applied
before, which pins the workspace and so suspends its automation, as a person's rollback does.

Run on the worker thread of the run that applied, after the engine recorded it and let go of
the workspace's lease: the checks may take minutes, and the rollback is a run of its own (with
its own lease). Only an apply by the workspace's own automation or a sync to the branch head is
checked: a pinned sync (a rollback, this one's too) is what a person or syncd chose to go back
to, and checking it could roll back forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, runtime_checkable

from syncd.config import WorkspaceConfig
from syncd.core.audit_model import AuditEntry
from syncd.core.model import Mode, Run, RunResult, Trigger
from syncd.ops.logs import fields, scrub
from syncd.sync.checks import CheckResult, run_checks
from syncd.sync.engine import Engine, Outcome, SyncObserver

log = logging.getLogger("syncd.checks")
audit_log = logging.getLogger("syncd.audit")

DAEMON = "syncd"  # who acts when no person asked (as a config reload by the daemon)
PREVIOUS_RUNS = 200  # runs looked through for the revision applied before


@runtime_checkable
class CheckObserver(Protocol):
    """Told each check's result (metrics: `syncd_checks_total`)."""

    def check_finished(self, ws_id: str, check: str, result: str) -> None: ...


@runtime_checkable
class AmendObserver(Protocol):
    """Told that a run it heard of as finished was failed afterwards by a check (a commit
    status at the git host turns from success to failure)."""

    def run_amended(self, ws: WorkspaceConfig, run: Run) -> None: ...


@runtime_checkable
class AuditCounter(Protocol):
    def audit_written(self, action: str) -> None: ...


def should_check(ws: WorkspaceConfig, outcome: Outcome, revision: str | None) -> bool:
    """An automatic workspace's run that applied changes: succeeded, not a dry run, not pinned
    (`revision`: the request's), recorded by this writer."""
    run = outcome.run
    return (
        bool(ws.checks)
        and ws.mode is Mode.AUTOMATIC
        and revision is None
        and not outcome.fenced
        and not run.dry_run
        and run.result is RunResult.SUCCEEDED
        and run.created + run.updated + run.deleted > 0
    )


def check_applied(
    engine: Engine,
    ws: WorkspaceConfig,
    outcome: Outcome,
    before: str | None = None,
    health: SyncObserver | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Run the workspace's checks after `outcome`'s apply; the outcome as it then stands (its
    run failed when a check failed, with the state after any rollback)."""
    results = run_checks(ws.checks, sleep=sleep)
    for one in _leaves(engine.observer):
        if not isinstance(one, CheckObserver):
            continue
        for result in results:
            try:
                one.check_finished(ws.id, result.name, result.result)
            except Exception:
                log.exception("observer failed", extra=fields(workspace=ws.id))
    failed = next((r for r in results if r.result == "failed"), None)
    # Kept on the run (the API's and the console's `checks`), whatever they found.
    kept = tuple(results)
    run = replace(outcome.run, checks=kept)
    try:
        engine.store.set_run_checks(ws.id, run.id, kept)
    except Exception as e:  # the checks' outcome still decides; their record is what is lost
        log.error("check results not stored", extra=fields(workspace=ws.id, error=str(e)))
    outcome = replace(outcome, run=run)
    log.log(
        logging.WARNING if failed else logging.INFO,
        "checks failed" if failed else "checks passed",
        extra=fields(workspace=ws.id, run=run.id, checks=[r.to_dict() for r in results] or None),
    )
    if failed is None:
        return outcome
    return _fail(engine, ws, run, failed, outcome, health, before)


def _fail(
    engine: Engine,
    ws: WorkspaceConfig,
    run: Run,
    failed: CheckResult,
    outcome: Outcome,
    health: SyncObserver | None,
    before: str | None = None,
) -> Outcome:
    error = scrub(f"check {failed.name}: {failed.detail}")
    # Its end moves to now: a digest that read the run as succeeded reads it again as failed.
    failed_run = replace(run, result=RunResult.FAILED, error=error, finished_at=engine.clock())
    engine.store.fail_run(ws.id, run.id, error, failed_run.finished_at or 0.0)
    state = engine.store.state(ws.id)
    if health is not None:  # Degraded, as after any failed run
        health.run_finished(ws, failed_run, None, state, 0.0)
    for one in _leaves(engine.observer):
        if isinstance(one, AmendObserver):
            try:
                one.run_amended(ws, failed_run)
            except Exception:
                log.exception("observer failed", extra=fields(workspace=ws.id))
    if ws.on_check_failure != "rollback":
        return Outcome(failed_run, outcome.plan, state)
    if state.last_applied_revision != run.revision:
        # Another writer applied a newer commit while the checks ran: that one is live now,
        # and going back from it is not this check's call.
        log.warning(
            "no rollback: a newer commit was applied meanwhile",
            extra=fields(workspace=ws.id, run=run.id, error=error),
        )
        return Outcome(failed_run, outcome.plan, state)
    # What was applied when the run began (it cannot have been pruned), else the newest
    # applied run that began before it.
    previous = before if before and before != run.revision else None
    previous = previous or _applied_before(engine, ws.id, run)
    if previous is None:
        log.warning(
            "no rollback: nothing was applied before",
            extra=fields(workspace=ws.id, run=run.id, error=error),
        )
        return Outcome(failed_run, outcome.plan, state)
    log.warning(
        "rolling back after a failed check",
        extra=fields(workspace=ws.id, run=run.id, revision=previous[:12], error=error),
    )
    back = engine.sync(ws, Trigger.MANUAL, previous, actor=f"{DAEMON}:check {failed.name}")
    _audit(engine, ws.id, previous, back.run, error)
    # The failed revision stays failed (not retried: a new commit, or a person, moves on).
    return Outcome(failed_run, outcome.plan, replace(back.state, failed_revision=run.revision))


def _applied_before(engine: Engine, ws_id: str, run: Run) -> str | None:
    """The revision of the newest applied run before `run` that is not its revision."""
    for earlier in engine.store.runs(ws_id, PREVIOUS_RUNS):
        if (
            earlier.id != run.id
            and earlier.started_at < run.started_at
            and earlier.result is RunResult.SUCCEEDED
            and not earlier.dry_run
            and earlier.revision
            and earlier.revision != run.revision
        ):
            return earlier.revision
    return None


def _audit(engine: Engine, ws_id: str, revision: str, back: Run, why: str) -> None:
    """The rollback's audit entry (its line, and the store's row): syncd did it, by itself."""
    ok = back.result is RunResult.SUCCEEDED
    status = 200 if ok else 500
    detail = why if ok else f"{why}; the rollback failed: {back.error}"
    entry = AuditEntry(
        at=time.time(),
        actor=DAEMON,
        via="daemon",
        action="rollback",
        result="ok" if ok else "error",
        status=status,
        workspace=ws_id,
        revision=revision,
        detail=scrub(detail),
    )
    audit_log.log(
        logging.INFO if ok else logging.WARNING,
        "audit",
        extra=fields(
            token=DAEMON,
            via="daemon",
            action="rollback",
            workspace=ws_id,
            revision=revision,
            result=entry.result,
            status=status,
            detail=entry.detail,
        ),
    )
    try:
        engine.store.record_audit(entry)
    except Exception as e:  # the rollback stands; its log line is written
        log.error("audit entry not stored", extra=fields(workspace=ws_id, error=str(e)))
        return
    for one in _leaves(engine.observer):
        if isinstance(one, AuditCounter):
            one.audit_written("rollback")


def _leaves(observer: object, depth: int = 0) -> list[object]:
    """The engine's observers, one by one (an `Observers` holds others, maybe nested)."""
    inner = getattr(observer, "observers", None)
    if not isinstance(inner, tuple):
        return [] if observer is None else [observer]
    if depth > 4:
        return []
    return [one for each in inner for one in _leaves(each, depth + 1)]
