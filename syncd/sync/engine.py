"""One sync of one workspace, phase by phase: resolve, fetch, read, plan, guard, apply or record.

Like git-sync's sync function: each phase is one commented call and the first error ends the
run. The engine never retries (see `syncd.core.retry` for who does). A failed run applies
nothing: the apply phase is one store transaction.

Not pure: the engine drives git and the store, and holds each workspace's writer lease for a
run. It sees them only through the `GitReader` and `Store` protocols, so its unit tests run
against stateful fakes. The phases live beside it: resolve and fetch in `syncd.sync.resolving`,
a `verify` workspace's signature check in `syncd.sync.verifying`, read and plan in
`syncd.sync.reading`, the state a run records in `syncd.sync.recording` (pure); what a run hands
back and whom it tells in `syncd.sync.outcome`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from syncd.config import WorkspaceConfig
from syncd.core.errors import SyncdError
from syncd.core.model import (
    Mode,
    Run,
    RunResult,
    SyncState,
    Trigger,
    automation_suspended,
)
from syncd.core.plan import guard_plan
from syncd.ops.logs import fields
from syncd.store import ApplyConflict, Fenced, Lease, Store, StoreError
from syncd.sync import previewing, resolving
from syncd.sync.gate import Block, DeliveryGate
from syncd.sync.outcome import Observers, Outcome, StartObserver, SyncObserver
from syncd.sync.parsed_steps import ParsedSteps
from syncd.sync.previewing import Preview
from syncd.sync.reading import Progress, Reader, Reading, source_key
from syncd.sync.recording import PERMANENT_ERRORS, applied_state, failed_state, planned_state
from syncd.sync.resolving import GitReader, KeepsMirrors, remote_for
from syncd.sync.verifying import Verifier
from syncd.sync.writer_leases import WorkspaceBusy, WriterLeases, new_holder

# The names other modules import from here stay importable here after the split.
__all__ = [
    "APPLY_ATTEMPTS",
    "PERMANENT_ERRORS",
    "Engine",
    "GitReader",
    "Observers",
    "Outcome",
    "Progress",
    "Reading",
    "SyncObserver",
    "remote_for",
    "source_key",
]

log = logging.getLogger("syncd.engine")

# A plan whose base moved before its apply is read and planned again, this many times in all.
APPLY_ATTEMPTS = 3


class Engine:
    def __init__(
        self,
        store: Store,
        git: GitReader,
        observer: SyncObserver | None = None,
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.store = store
        self.git = git
        self.verifier = verifier or Verifier()  # `verify` workspaces' signature checks
        self.observer = observer
        self.clock = clock
        # This process's leases on the workspaces it syncs (the store is read at each use).
        self.leases = WriterLeases(lambda: self.store, holder or new_holder("syncd"))
        self.parsed = ParsedSteps()  # step files by blob, shared by the workspaces of a remote
        # An automatic workspace's windows and promotion, asked before it applies by itself.
        self.gate = DeliveryGate(lambda: self.store, git, clock)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def sync(
        self,
        ws: WorkspaceConfig,
        trigger: Trigger,
        revision: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        run_id: str | None = None,
        head: str | None = None,
        take_over: bool = False,
        actor: str | None = None,
    ) -> Outcome:
        """Run one sync and record it. Never raises for a failed sync: the run says why.

        `head` is the branch head when the caller has just learned it (a poll), which saves
        an ls-remote; `run_id` lets a scheduler hand out the id before the run starts;
        `take_over` takes the workspace's lease at once from a writer known to be gone (a
        replica's request claimed by one that died, was cut off or froze): that writer is
        fenced. `actor` is who asked (a token's name, `local:<user>`); without one the run
        names its trigger.

        The run holds the workspace's lease from before it resolves the commit until it has
        recorded itself, and every write checks it (see `syncd.store.leases`): no other writer
        applies in between, and a writer that lost the lease writes nothing.
        """
        # The repack after the workspace's lock is let go: the next run of it does not wait.
        with self._upkeep(), self._lock(ws.id):
            started = self.clock()
            run = Run(
                run_id or uuid.uuid4().hex,
                ws.id,
                trigger,
                None,
                RunResult.PLANNED,
                started,
                dry_run=dry_run,
                actor=actor or str(trigger),
            )
            state = SyncState(ws.id)
            reading: Reading | None = None
            fenced = False  # another writer has (or had) the workspace: not this run's news
            try:
                with self.leases.hold(ws.id, force=take_over) as lease:
                    if run_id is not None and (done := self.store.run(run_id)) is not None:
                        # Taken over from a writer that had recorded it already: served.
                        return Outcome(done, None, self.store.state(ws.id))
                    state, reading = self._run(ws, run, state, revision, progress, head, lease)
            except SyncdError as e:
                # Nothing can be recorded: another writer took the workspace over (Fenced) or
                # kept it past the wait (WorkspaceBusy), or the store failed before the lease
                # was taken. The scheduler, or the writer that holds it, runs the request.
                fenced = isinstance(e, Fenced | WorkspaceBusy)
                self._mark_failed(run, e)
                event = "sync fenced" if isinstance(e, Fenced) else "sync not started"
                log.warning(event, extra=fields(workspace=ws.id, run=run.id, error=str(e)))
            # 7. tell metrics and notifications, unless another writer's run is the one that
            #    counts (its health and counts are the workspace's, not this run's)
            if self.observer is not None and not fenced:
                plan = reading.plan if reading else None
                self.observer.run_finished(ws, run, plan, state, self.clock() - started)
            return Outcome(run, reading.plan if reading else None, state, fenced)

    def _run(
        self,
        ws: WorkspaceConfig,
        run: Run,
        state: SyncState,
        revision: str | None,
        progress: Progress | None,
        head: str | None,
        lease: Lease,
    ) -> tuple[SyncState, Reading | None]:
        """The phases, under the workspace's lease. A failure is recorded here, with the lease
        (Fenced goes up: a writer that lost the workspace records nothing)."""
        reading: Reading | None = None
        try:
            state = self.store.state(ws.id)
            # 1-2. resolve the commit (branch head or pinned revision) and fetch it
            if head is not None and resolving.behind(
                self.git, ws, head, state.last_applied_revision
            ):
                head = None  # a stale hint: ask the remote again (see resolving.behind)
            run.revision = self.resolve(ws, revision, progress, head=head)
            run.message, run.author = self.summary(ws, run.revision)
            if isinstance(self.observer, StartObserver):
                self.observer.run_started(ws, run)  # a commit status `pending`, off this path
            # 2b. verify: with `verify`, the commit must carry a trusted signature (else the run
            #     fails here, before anything is read or applied)
            run.signed_by = self.verify(ws, run.revision, progress)
            # 6. apply (automatic mode not suspended, or a manual trigger) or only record
            #    the plan
            automatic = ws.mode is Mode.AUTOMATIC and not automation_suspended(ws.mode, state)
            apply = not run.dry_run and (automatic or run.trigger is Trigger.MANUAL)
            # 5b. the gate: a closed window or promotion holds back what applies by itself (a
            #     person's sync is not held: a window that refuses those refuses them earlier)
            gated = apply and run.trigger is not Trigger.MANUAL and bool(ws.windows or ws.promotion)
            pinned = revision is not None
            for attempt in range(1, APPLY_ATTEMPTS + 1):
                # 3-4. read the steps at that commit and plan against the live ones
                reading = self.read_at(ws, run.revision, progress)
                # 5. guard: refuse an empty result unless allowed, and mass deletes over a
                #    limit
                guard_plan(reading.plan, reading.live_total, ws.allow_empty, ws.max_deletes)
                block: Block | None = None
                if gated and not reading.plan.empty:
                    block = self.gate.check(ws, run.revision, state.last_applied_revision)
                try:
                    state = self._finish(
                        ws, run, reading, state, apply and block is None, progress, pinned, lease
                    )
                    if not run.dry_run:
                        self.gate.decided(ws.id, block, self.observer)
                    return state, reading
                except ApplyConflict as e:
                    # The workspace moved (an edit outside git, or a writer whose lease this
                    # one outlived): plan again over its state, and at the branch head as it is
                    # now, never at the commit resolved before (it may be older than what was
                    # applied meanwhile). A pin is planned again at the pin.
                    if attempt == APPLY_ATTEMPTS:
                        raise
                    log.info(
                        "apply conflict, planning again",
                        extra=fields(workspace=ws.id, error=str(e)),
                    )
                    state = self.store.state(ws.id)
                    if not pinned and (now := self.resolve(ws, None, progress)) != run.revision:
                        # The new head has its own signer, or none: a refusal of it must
                        # not carry the old commit's.
                        run.revision, run.signed_by = now, None
                        run.signed_by = self.verify(ws, now, progress)
                        run.message, run.author = self.summary(ws, now)
            raise AssertionError("unreachable: the last attempt returns or raises")
        except Fenced:
            raise
        except SyncdError as e:
            return self._fail(run, reading, state, e, lease), reading
        except OSError as e:
            return self._fail(run, reading, state, StoreError(_os_error(e)), lease), reading

    def resolve(
        self,
        ws: WorkspaceConfig,
        revision: str | None = None,
        progress: Progress | None = None,
        head: str | None = None,
    ) -> str:
        """The commit to sync to, present in the mirror afterwards (phases 1-2)."""
        return resolving.resolve(self.git, ws, revision, progress, head)

    def verify(
        self, ws: WorkspaceConfig, commit: str, progress: Progress | None = None
    ) -> str | None:
        """Who signed `commit` (fetched), when the workspace has `verify`; `Unverified` when
        its signature is missing, bad or not by a listed key. None without `verify`."""
        if ws.verify is not None and progress is not None:
            progress("verifying the commit's signature")
        return self.verifier.check(self.git, ws, commit)

    def summary(self, ws: WorkspaceConfig, commit: str) -> tuple[str | None, str | None]:
        """The commit's message (first line) and author, for the run; (None, None) when the
        mirror cannot tell (a run is not failed for want of its description)."""
        try:
            return self.git.commit_summary(remote_for(ws), commit)
        except SyncdError as e:
            log.info("commit not described", extra=fields(workspace=ws.id, error=str(e)))
            return None, None

    def read_at(
        self, ws: WorkspaceConfig, commit: str, progress: Progress | None = None
    ) -> Reading:
        """Read the steps at a commit and plan against the live ones, changing nothing."""
        say = progress or (lambda _msg: None)
        return Reader(self.store, self.git, self.parsed).read(ws, remote_for(ws), commit, say)

    def record_source_failure(
        self, ws: WorkspaceConfig, trigger: Trigger, error: SyncdError
    ) -> Outcome:
        """Record a source that cannot be read (a poll's ls-remote failed) as the failed run
        that a sync would have recorded at its first phase, and tell the observers. Not
        recorded while another writer holds the workspace (its run records the source)."""
        with self._lock(ws.id):
            started = self.clock()
            run = Run(uuid.uuid4().hex, ws.id, trigger, None, RunResult.FAILED, started)
            run.actor = str(trigger)
            self._mark_failed(run, error)  # as told, even if it cannot be recorded
            state = SyncState(ws.id)
            try:
                with self.leases.hold(ws.id, wait=0.0) as lease:
                    state = self._fail(run, None, self.store.state(ws.id), error, lease)
            except StoreError as e:
                log.error(
                    "run not recorded", extra=fields(workspace=ws.id, run=run.id, error=str(e))
                )
            if self.observer is not None:
                self.observer.run_finished(ws, run, None, state, self.clock() - started)
            return Outcome(run, None, state)

    def branch_heads(self, ws: WorkspaceConfig) -> dict[str, str]:
        """Every branch head of the workspace's remote: one ls-remote (a poll)."""
        return self.git.heads(remote_for(ws))

    def prefetch(self, ws: WorkspaceConfig, head: str) -> None:
        """Fetch the workspace's branch into the shared mirror up to `head` (a startup
        comparison fetches once per remote; the runs then find the commit there)."""
        self.git.fetch(remote_for(ws), ws.source.branch, want=head)

    def preview_commit(self, ws: WorkspaceConfig, revision: str) -> Preview:
        """What `revision` (in the mirror: a branch's commit, or a pull request's head fetched
        by `GitReader.fetch_ref`) would do to the workspace now; see `syncd.sync.previewing`.
        RevisionNotFound when no such commit is known."""
        commit = resolving.present(self.git, ws, revision)

        def verify(ws: WorkspaceConfig, commit: str) -> str | None:
            return self.verifier.check(self.git, ws, commit, quiet=True)

        return previewing.preview(ws, commit, verify, self.read_at)

    def preview(self, ws: WorkspaceConfig, revision: str | None = None) -> Reading:
        """The plan now (the `diff` of a workspace), recording nothing. It takes no workspace
        lock: it writes nothing, and a diff waiting on a slow remote must not hold up a sync (or
        wait for one). The mirror has a lock of its own for fetches."""
        return self.read_at(ws, self.resolve(ws, revision))

    # -- recording: the state comes from syncd.sync.recording; the writes are here -------------

    def _finish(
        self,
        ws: WorkspaceConfig,
        run: Run,
        reading: Reading,
        state: SyncState,
        apply: bool,
        say: Progress | None,
        pinned: bool,
        lease: Lease,
    ) -> SyncState:
        plan = reading.plan
        # A pinned sync is measured against the branch head, not against itself: a rollback
        # leaves the workspace OutOfSync (and an automatic one suspended).
        head = resolving.branch_head(self.git, ws) if apply and pinned else reading.revision
        run.finished_at = self.clock()
        # A planned or dry run records the counts of its plan too: what it would have changed.
        run.created, run.updated, run.deleted = (
            len(plan.creates),
            len(plan.updates),
            len(plan.deletes),
        )
        if apply:
            if say:
                say(f"applying {len(plan.changes)} changes")
            run.result = RunResult.SUCCEEDED
            new_state = applied_state(state, ws, run.id, reading, head, pinned)
            return self.store.apply(plan, reading.index, run, new_state, reading.base, lease)
        run.result = RunResult.PLANNED
        new_state = planned_state(state, run.id, reading)
        self.store.record_run(run, new_state, lease)
        return new_state

    def _fail(
        self,
        run: Run,
        reading: Reading | None,
        state: SyncState,
        error: SyncdError,
        lease: Lease,
    ) -> SyncState:
        self._mark_failed(run, error)
        new_state = failed_state(state, run, error)
        try:
            self.store.record_run(run, new_state, lease)
        except Fenced:
            raise
        except StoreError as e:
            # The store cannot even record the failure: the run still reaches the observer
            # (metrics) and the scheduler's loop, which retries it.
            log.error(
                "run not recorded", extra=fields(workspace=run.workspace, run=run.id, error=str(e))
            )
        return new_state

    def _mark_failed(self, run: Run, error: SyncdError) -> None:
        run.result, run.error, run.finished_at = RunResult.FAILED, str(error), self.clock()

    @contextmanager
    def _upkeep(self) -> Iterator[None]:
        """The mirrors' upkeep (a repack) once a run has recorded itself and told its observers:
        never between a push's webhook and its apply."""
        try:
            yield
        finally:
            if isinstance(self.git, KeepsMirrors):
                self.git.tidy()

    def _lock(self, ws_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(ws_id, threading.Lock())


def _os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e}"
