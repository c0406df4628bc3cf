"""One sync of one workspace, phase by phase: resolve, fetch, read, plan, guard, apply or record.

Like git-sync's sync function: each phase is one commented call and the first error ends the
run. The engine never retries (see `syncd.retry` for who does). A failed run applies nothing:
the apply phase is one store transaction.

The engine sees git and the store only through the `GitReader` and `Store` protocols, so its
unit tests run against stateful fakes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

from syncd.config import WorkspaceConfig
from syncd.errors import (
    PathNotFound,
    PlanRefused,
    RevisionNotFound,
    RevisionNotOnBranch,
    StepFileError,
    SyncdError,
)
from syncd.git import FileChange, Remote, TreeEntry
from syncd.logs import fields
from syncd.model import (
    LiveStep,
    Mode,
    Plan,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
    Trigger,
    automation_suspended,
)
from syncd.plan import compute_plan, empty_refused, guard_plan
from syncd.steps import (
    MAX_STEPS,
    FileEntry,
    Problems,
    check_count,
    duplicate_problem,
    duplicate_problems,
    entry_problem,
)
from syncd.store import ApplyBase, ApplyConflict, IndexUpdate, Store, StoreError
from syncd.urls import normalize_repo_url

log = logging.getLogger("syncd.engine")

# Errors that another attempt at the same commit cannot fix: the commit itself is bad.
PERMANENT_ERRORS = (StepFileError, PlanRefused, RevisionNotFound)
# A plan whose base moved before its apply is read and planned again, this many times in all.
APPLY_ATTEMPTS = 3

Progress = Callable[[str], None]


class GitReader(Protocol):
    """What a sync needs of git: heads, fetches, and reading trees and blobs of a mirror."""

    def heads(self, remote: Remote) -> dict[str, str]: ...
    def resolve(self, remote: Remote, branch: str) -> str: ...
    def fetch(self, remote: Remote, branch: str, want: str | None = None) -> str: ...
    def resolve_commit(self, remote: Remote, rev: str) -> str: ...
    def list_files(self, remote: Remote, commit: str, path: str) -> list[TreeEntry]: ...
    def changed_files(
        self, remote: Remote, base: str, head: str, path: str
    ) -> list[FileChange] | None: ...
    def blob_reader(self, remote: Remote) -> AbstractContextManager[Callable[[str], bytes]]: ...
    def branches_containing(self, remote: Remote, commit: str) -> list[str]: ...


class SyncObserver(Protocol):
    """Told about every finished run (metrics, notifications)."""

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Observers:
    """Several observers told as one, in order (health before metrics)."""

    observers: tuple[SyncObserver, ...]

    def run_finished(
        self, ws: WorkspaceConfig, run: Run, plan: Plan | None, state: SyncState, seconds: float
    ) -> None:
        for observer in self.observers:
            try:
                observer.run_finished(ws, run, plan, state, seconds)
            except Exception:  # the run is recorded: one observer's failure must not undo that
                log.exception("observer failed", extra=fields(workspace=ws.id, run=run.id))


@dataclass(frozen=True, slots=True)
class Reading:
    """What the read and plan phases found at one commit."""

    revision: str
    plan: Plan
    index: IndexUpdate
    live_total: int
    incremental: bool
    blobs_read: int
    base: ApplyBase  # what the plan was read from: an apply writes only over exactly that


@dataclass(frozen=True, slots=True)
class Outcome:
    run: Run
    plan: Plan | None
    state: SyncState


def remote_for(ws: WorkspaceConfig) -> Remote:
    src = ws.source
    password = src.password.reveal() if src.password else None
    return Remote(url=src.url, username=src.username, password=password, ca_file=src.ca_file)


def source_key(ws: WorkspaceConfig) -> str:
    return f"{normalize_repo_url(ws.source.url)}|{ws.source.path.strip('/')}"


class Engine:
    def __init__(
        self,
        store: Store,
        git: GitReader,
        observer: SyncObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.git = git
        self.observer = observer
        self.clock = clock
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
    ) -> Outcome:
        """Run one sync and record it. Never raises for a failed sync: the run says why.

        `head` is the branch head when the caller has just learned it (a poll), which saves
        an ls-remote; `run_id` lets a scheduler hand out the id before the run starts.
        """
        with self._lock(ws.id):
            started = self.clock()
            run = Run(
                run_id or uuid.uuid4().hex,
                ws.id,
                trigger,
                None,
                RunResult.PLANNED,
                started,
                dry_run=dry_run,
            )
            state = SyncState(ws.id)
            reading: Reading | None = None
            try:
                state = self.store.state(ws.id)
                # 1-2. resolve the commit (branch head or pinned revision) and fetch it
                run.revision = self.resolve(ws, revision, progress, head=head)
                # 6. apply (automatic mode not suspended, or a manual trigger) or only record
                #    the plan
                automatic = ws.mode is Mode.AUTOMATIC and not automation_suspended(ws.mode, state)
                apply = not dry_run and (automatic or trigger is Trigger.MANUAL)
                pinned = revision is not None
                for attempt in range(1, APPLY_ATTEMPTS + 1):
                    # 3-4. read the steps at that commit and plan against the live ones
                    reading = self.read_at(ws, run.revision, progress)
                    # 5. guard: refuse an empty result unless allowed, and mass deletes over a
                    #    limit
                    guard_plan(reading.plan, reading.live_total, ws.allow_empty, ws.max_deletes)
                    # 6. another writer got there first: read and plan again over its state
                    try:
                        state = self._finish(ws, run, reading, state, apply, progress, pinned)
                        break
                    except ApplyConflict as e:
                        if attempt == APPLY_ATTEMPTS:
                            raise
                        log.info(
                            "apply conflict, planning again",
                            extra=fields(workspace=ws.id, error=str(e)),
                        )
                        state = self.store.state(ws.id)
            except SyncdError as e:
                state = self._fail(run, reading, state, e)
            except OSError as e:  # a local file: the disk is full, a folder is not writable
                state = self._fail(run, reading, state, StoreError(_os_error(e)))
            # 7. tell metrics and notifications
            if self.observer is not None:
                plan = reading.plan if reading else None
                self.observer.run_finished(ws, run, plan, state, self.clock() - started)
            return Outcome(run, reading.plan if reading else None, state)

    def resolve(
        self,
        ws: WorkspaceConfig,
        revision: str | None = None,
        progress: Progress | None = None,
        head: str | None = None,
    ) -> str:
        """The commit to sync to, present in the mirror afterwards."""
        remote = remote_for(ws)
        say = progress or (lambda _msg: None)
        # 1. resolve: the branch head by ls-remote, unless pinned or just learned by a poll
        say(f"resolving {ws.source.branch}")
        if revision is None and head is None:
            head = self.git.resolve(remote, ws.source.branch)
        elif revision is not None:
            head = None
        # 2. fetch: nothing when the mirror already has the commit
        fetched = False
        if head is not None or not self._has(remote, revision):
            say("fetching")
            self.git.fetch(remote, ws.source.branch, want=head)
            fetched = True
        if head is not None:
            return head
        commit = self.git.resolve_commit(remote, revision or "")
        # A pinned commit must be on the workspace's branch, not only somewhere in the mirror
        # (which other workspaces' branches share); the branch may have moved: fetch it once.
        if not self._on_branch(remote, ws.source.branch, commit):
            if not fetched:
                self.git.fetch(remote, ws.source.branch)
            if not self._on_branch(remote, ws.source.branch, commit):
                raise self._not_on_branch(remote, ws.source.branch, commit)
        return commit

    def _on_branch(self, remote: Remote, branch: str, commit: str) -> bool:
        return branch in self.git.branches_containing(remote, commit)

    def _not_on_branch(self, remote: Remote, branch: str, commit: str) -> RevisionNotOnBranch:
        others = sorted(self.git.branches_containing(remote, commit))
        where = f"it is on {', '.join(repr(b) for b in others)}" if others else "on no known branch"
        return RevisionNotOnBranch(
            f"commit {commit[:12]} is not on branch {branch!r} ({where}); a pinned revision must"
            f" be reachable from the workspace's branch"
        )

    def read_at(
        self, ws: WorkspaceConfig, commit: str, progress: Progress | None = None
    ) -> Reading:
        """Read the steps at a commit and plan against the live ones, changing nothing."""
        remote = remote_for(ws)
        say = progress or (lambda _msg: None)
        state = self.store.state(ws.id)
        base = state.last_applied_revision
        if base is not None and base != commit and state.source_key == source_key(ws):
            reading = self._read_incremental(ws, remote, base, commit, say)
            if reading is not None:
                return reading
        return self._read_full(ws, remote, base, commit, say)

    def record_source_failure(
        self, ws: WorkspaceConfig, trigger: Trigger, error: SyncdError
    ) -> Outcome:
        """Record a source that cannot be read (a poll's ls-remote failed) as the failed run
        that a sync would have recorded at its first phase, and tell the observers."""
        with self._lock(ws.id):
            started = self.clock()
            run = Run(uuid.uuid4().hex, ws.id, trigger, None, RunResult.FAILED, started)
            state = self._fail(run, None, self.store.state(ws.id), error)
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

    def preview(self, ws: WorkspaceConfig, revision: str | None = None) -> Reading:
        """The plan now (the `diff` of a workspace), recording nothing. It takes no workspace
        lock: it writes nothing, and a diff waiting on a slow remote must not hold up a sync (or
        wait for one). The mirror has a lock of its own for fetches."""
        return self.read_at(ws, self.resolve(ws, revision))

    def _has(self, remote: Remote, revision: str | None) -> bool:
        if revision is None:
            return False
        try:
            self.git.resolve_commit(remote, revision)
        except SyncdError:
            return False
        return True

    # -- reading -----------------------------------------------------------------------------

    def _read_full(
        self, ws: WorkspaceConfig, remote: Remote, base: str | None, commit: str, say: Progress
    ) -> Reading:
        try:
            entries = self.git.list_files(remote, commit, ws.source.path)
        except PathNotFound as e:
            # A folder that held every step and is gone is an empty result: the guard's rule
            # (refused unless allow_empty; max_deletes still applies to the plan).
            live_total = self.store.live_count(ws.id)
            if not (ws.allow_empty or live_total):
                raise
            if not ws.allow_empty:
                raise empty_refused(live_total, f"{e}: that") from e
            entries = []
        check_count(len(entries))
        # A file whose blob the store already holds parsed needs no reading. A bad file does
        # not stop the reading: the run names every bad file at once.
        known = self.store.index_files(ws.id)
        problems = Problems()
        steps: list[Step] = []
        read = 0
        with self.git.blob_reader(remote) as read_blob:
            for entry in entries:
                if problems.add(entry_problem(FileEntry(entry.path, entry.mode, entry.size))):
                    continue
                cached = known.get(entry.path)
                if cached is not None and cached.blob == entry.blob:
                    steps.append(cached)
                    continue
                step = problems.parse(entry.path, entry.blob, read_blob)
                if step is not None:
                    steps.append(step)
                read += 1
                if read % 1000 == 0:
                    say(f"read {read} of {len(entries)} step files")
        for problem in duplicate_problems(steps):
            problems.add(problem)
        problems.raise_if_any()
        # Drifted names first: one edited after this read is left to the next sync, marked.
        drifted = self.store.drifted_names(ws.id)
        live = self.store.live_steps(ws.id)
        plan = compute_plan(
            {s.name: s.content for s in steps}, {n: s.content for n, s in live.items()}
        )
        index = IndexUpdate(replace_all=True, upserts=tuple(steps))
        base_of = _base(base, plan, drifted, live)
        return Reading(commit, plan, index, len(live), False, read, base_of)

    def _read_incremental(
        self, ws: WorkspaceConfig, remote: Remote, base: str, commit: str, say: Progress
    ) -> Reading | None:
        """Read only the files that changed since the last applied commit; None to read all."""
        changes = self.git.changed_files(remote, base, commit, ws.source.path)
        if changes is None:  # the base commit is gone (force-push, rebuilt mirror)
            return None
        present = [c for c in changes if c.status != "deleted"]
        check_count(len(present))
        touched = {c.path for c in changes}
        say(f"reading {len(present)} changed step files")
        problems = Problems()
        new_steps: list[Step] = []
        with self.git.blob_reader(remote) as read_blob:
            for c in present:
                # The size from the object header: a huge blob is never inflated.
                if problems.add(entry_problem(FileEntry(c.path, c.mode, c.size))):
                    continue
                step = problems.parse(c.path, c.blob or "", read_blob)
                if step is not None:
                    new_steps.append(step)
        for problem in duplicate_problems(new_steps):
            problems.add(problem)
        for problem in self._duplicates_in_index(ws, new_steps, touched):
            problems.add(problem)
        problems.raise_if_any()
        # Only now: a path that is not UTF-8 (a problem above) cannot be looked up in the store.
        before = self.store.index_files(ws.id, touched)
        total = self.store.index_count(ws.id) - len(before) + len(new_steps)
        if total == 0:
            return None  # let the full read name a missing path, or plan the empty export
        if total > MAX_STEPS:
            raise StepFileError(f"{total} step files, over the limit of {MAX_STEPS}")
        # The plan's scope: every name the commit touched, and every step edited outside git.
        new_by_name = {s.name: s.content for s in new_steps}
        scope = set(new_by_name) | {s.name for s in before.values()}
        drifted = self.store.drifted_names(ws.id)
        scope |= drifted
        desired: dict[str, StepContent] = dict(new_by_name)
        for name, steps in self.store.index_by_name(ws.id, scope - set(new_by_name)).items():
            for s in steps:
                if s.path not in touched:
                    desired[name] = s.content
        live_steps = self.store.live_steps(ws.id, scope)
        live = {n: s.content for n, s in live_steps.items()}
        outside_scope = total - len(desired)
        plan = compute_plan(desired, live, unchanged_elsewhere=outside_scope)
        removes = tuple(c.path for c in changes if c.status == "deleted")
        index = IndexUpdate(upserts=tuple(new_steps), removes=removes)
        live_total = self.store.live_count(ws.id)
        base_of = _base(base, plan, drifted, live_steps)
        return Reading(commit, plan, index, live_total, True, len(new_steps), base_of)

    def _duplicates_in_index(
        self, ws: WorkspaceConfig, new_steps: list[Step], touched: set[str]
    ) -> list[str]:
        """The new steps whose names a file the commit did not touch already defines."""
        others = self.store.index_by_name(ws.id, {s.name for s in new_steps})
        return [
            duplicate_problem(other.path, s)
            for s in new_steps
            for other in others.get(s.name, [])
            if other.path not in touched
        ]

    # -- recording -----------------------------------------------------------------------------

    def _finish(
        self,
        ws: WorkspaceConfig,
        run: Run,
        reading: Reading,
        state: SyncState,
        apply: bool,
        say: Progress | None,
        pinned: bool = False,
    ) -> SyncState:
        plan = reading.plan
        # A pinned sync is measured against the branch head, not against itself: a rollback
        # leaves the workspace OutOfSync (and an automatic one suspended).
        head = self._branch_head(ws) if apply and pinned else reading.revision
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
            new_state = replace(
                state,
                status=Status.SYNCED if head == reading.revision else Status.OUT_OF_SYNC,
                last_applied_revision=reading.revision,
                last_seen_revision=head or reading.revision,
                last_run_id=run.id,
                failed_revision=None,
                drift=0,
                source_key=source_key(ws),
                pinned_revision=reading.revision if pinned else None,
            )
            return self.store.apply(plan, reading.index, run, new_state, reading.base)
        run.result = RunResult.PLANNED
        new_state = replace(
            state,
            status=Status.SYNCED if plan.empty else Status.OUT_OF_SYNC,
            last_seen_revision=reading.revision,
            last_run_id=run.id,
            failed_revision=None,
            drift=len(plan.changes),
        )
        self.store.record_run(run, new_state)
        return new_state

    def _branch_head(self, ws: WorkspaceConfig) -> str | None:
        """The branch head now; None when the remote cannot tell (the pin stays OutOfSync)."""
        try:
            return self.git.resolve(remote_for(ws), ws.source.branch)
        except SyncdError:
            return None

    def _fail(
        self, run: Run, reading: Reading | None, state: SyncState, error: SyncdError
    ) -> SyncState:
        run.result = RunResult.FAILED
        run.error = str(error)
        run.finished_at = self.clock()
        permanent = isinstance(error, PERMANENT_ERRORS)
        seen = run.revision or state.last_seen_revision
        status = state.status
        if run.revision and run.revision != state.last_applied_revision:
            status = Status.OUT_OF_SYNC
        new_state = replace(
            state,
            status=status,
            last_seen_revision=seen,
            last_run_id=run.id,
            failed_revision=run.revision if permanent and run.revision else None,
        )
        try:
            self.store.record_run(run, new_state)
        except StoreError as e:
            # The store cannot even record the failure: the run still reaches the observer
            # (metrics) and the scheduler's loop, which retries it.
            log.error(
                "run not recorded", extra=fields(workspace=run.workspace, run=run.id, error=str(e))
            )
        return new_state

    def _lock(self, ws_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(ws_id, threading.Lock())


def _base(
    revision: str | None, plan: Plan, drifted: set[str], live: dict[str, LiveStep]
) -> ApplyBase:
    """The base of a plan: the applied revision, and the live version of every step the plan
    covers (its changes, and the steps marked as edited outside git it saw)."""
    names = {c.name for c in plan.changes} | drifted
    return ApplyBase(revision, {n: live[n].version if n in live else None for n in names})


def _os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e}"
