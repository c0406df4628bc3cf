"""Stateful fakes of the engine's seams (`Store`, `GitReader`), and builders for unit tests.

The fakes keep state in dicts and behave like the real thing (`SqliteStore`, `GitSource`), so
tests assert on what the store holds and what git has, never on which calls were made.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from syncd.config import (
    Config,
    DeleteLimit,
    GitConfig,
    NotificationsConfig,
    ServerConfig,
    SourceConfig,
    StoreConfig,
    WebhookConfig,
    WorkspaceConfig,
)
from syncd.config.types import VerifyConfig
from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.core.errors import GitError, PathNotFound, RevisionNotFound, StepFileError
from syncd.core.model import (
    CheckOutcome,
    HealthRecord,
    LiveStep,
    Mode,
    Origin,
    Plan,
    Run,
    RunResult,
    Status,
    Step,
    StepContent,
    SyncState,
)
from syncd.core.steps import SUFFIX, render_step_file, step_file_name
from syncd.git import FileChange, Remote, TreeEntry
from syncd.git.signatures import CommitSignature
from syncd.store import ApplyBase, IndexUpdate, Store, StoreError
from syncd.store.leases import check_lease, check_new_run, take_params
from syncd.store.protocol import DELIVERY_TTL, LEASE_TTL, Lease
from syncd.store.rows import check_applied, check_versions, new_step_ids
from syncd.sync.engine import GitReader

# -- the store -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRow:
    """A live step as the store keeps it; `deleted` marks a step deleted outside git (a
    tombstone, kept so the next sync knows to bring it back)."""

    step: LiveStep
    deleted: bool = False


@dataclass(slots=True)
class Tables:
    """Everything a store holds. Runs keep their insertion order, as SQLite's rowid does."""

    workspaces: dict[str, SyncState] = field(default_factory=dict)
    steps: dict[str, dict[str, StepRow]] = field(default_factory=dict)  # ws -> name -> row
    git_files: dict[str, dict[str, Step]] = field(default_factory=dict)  # ws -> path -> step
    runs: dict[str, Run] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    health: dict[str, HealthRecord] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], float] = field(default_factory=dict)  # -> seen at
    leases: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # holder, fence, until
    audit: list[AuditEntry] = field(default_factory=list)  # oldest first; ids 1, 2, ...

    def copy(self) -> Tables:
        """A copy that shares nothing mutable with this one (Run and SyncState are mutable)."""
        return Tables(
            workspaces={k: replace(v) for k, v in self.workspaces.items()},
            steps={ws: dict(rows) for ws, rows in self.steps.items()},
            git_files={ws: dict(files) for ws, files in self.git_files.items()},
            runs={k: replace(v) for k, v in self.runs.items()},
            meta=dict(self.meta),
            health=dict(self.health),
            deliveries=dict(self.deliveries),
            leases=dict(self.leases),
            audit=list(self.audit),  # entries are frozen
        )


class FakeStore:
    """`Store` in memory, with `SqliteStore`'s semantics: it runs in the store contract suite
    with SQLite and PostgreSQL (tests/integration/test_store*.py).

    `apply` builds the whole new state aside and swaps it in at the end, so it is all or
    nothing; set `fail_next_apply` to make the next apply raise just before the swap (a failed
    commit), which must leave the store exactly as it was.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.fail_next_apply: Exception | None = None
        # Set: every audit write raises it (a store that cannot take the audit's entries).
        self.fail_audit: Exception | None = None
        self.closed = False
        self._tables = Tables()
        # Engine runs call the store from worker threads, as they call SqliteStore.
        self._lock = threading.RLock()

    def snapshot(self) -> Tables:
        """A copy of everything held, to compare before and after."""
        with self._lock:
            return self._tables.copy()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.closed = True

    # -- sync state --------------------------------------------------------------------------

    def state(self, ws: str) -> SyncState:
        with self._lock:
            found = self._tables.workspaces.get(ws)
        return replace(found) if found is not None else SyncState(workspace=ws)

    def save_state(self, state: SyncState) -> None:
        with self._lock:
            _save_state(self._tables, state)

    def set_suspended(self, ws: str, suspended: bool, audit: AuditEntry | None = None) -> None:
        with self._lock:
            self._append_audit(audit)  # first: a refused entry leaves the change undone
            state = self._tables.workspaces.setdefault(ws, SyncState(ws))
            state.suspended = suspended

    # -- health ------------------------------------------------------------------------------

    def health(self, ws: str) -> HealthRecord | None:
        with self._lock:
            return self._tables.health.get(ws)

    def save_health(self, record: HealthRecord) -> None:
        with self._lock:
            self._tables.health[record.workspace] = record

    def workspace_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._tables.workspaces)

    def states(self, ids: Collection[str]) -> dict[str, SyncState]:
        return {ws: self.state(ws) for ws in ids}

    def healths(self, ids: Collection[str]) -> dict[str, HealthRecord]:
        with self._lock:
            return {ws: self._tables.health[ws] for ws in ids if ws in self._tables.health}

    # -- live steps --------------------------------------------------------------------------

    def live_steps(self, ws: str, names: Collection[str] | None = None) -> dict[str, LiveStep]:
        with self._lock:
            rows = self._tables.steps.get(ws, {})
            wanted = sorted(rows) if names is None else sorted(set(names) & rows.keys())
            return {n: rows[n].step for n in wanted if not rows[n].deleted}

    def live_count(self, ws: str) -> int:
        with self._lock:
            return sum(not r.deleted for r in self._tables.steps.get(ws, {}).values())

    def drifted_names(self, ws: str) -> set[str]:
        # Tombstones count: a step deleted outside git has drifted too.
        with self._lock:
            rows = self._tables.steps.get(ws, {})
            return {n for n, r in rows.items() if r.step.origin is Origin.OUTSIDE}

    def put_outside(
        self, ws: str, name: str, content: StepContent, audit: AuditEntry | None = None
    ) -> LiveStep:
        with self._lock:
            self._append_audit(audit)
            rows = self._tables.steps.setdefault(ws, {})
            old = rows.get(name)
            # A tombstone keeps its id: the step comes back as the same step.
            step_id, version = (old.step.id, old.step.version + 1) if old else (_new_id(), 1)
            step = LiveStep(
                step_id,
                name,
                content,
                version,
                content.content_hash(),
                self.clock(),
                Origin.OUTSIDE,
            )
            rows[name] = StepRow(step)
            self._mark_out_of_sync(ws)
            return step

    def delete_outside(self, ws: str, name: str, audit: AuditEntry | None = None) -> bool:
        with self._lock:
            rows = self._tables.steps.get(ws, {})
            old = rows.get(name)
            if old is None or old.deleted:
                return False
            self._append_audit(audit)
            step = replace(
                old.step,
                origin=Origin.OUTSIDE,
                updated_at=self.clock(),
                version=old.step.version + 1,
            )
            rows[name] = StepRow(step, deleted=True)
            self._mark_out_of_sync(ws)
            return True

    def _mark_out_of_sync(self, ws: str) -> None:
        state = self._tables.workspaces.setdefault(ws, SyncState(ws))
        state.status = Status.OUT_OF_SYNC
        state.drift += 1

    # -- git's files as of the last applied commit -------------------------------------------

    def index_files(self, ws: str, paths: Collection[str] | None = None) -> dict[str, Step]:
        with self._lock:
            files = self._tables.git_files.get(ws, {})
            if paths is None:
                return dict(files)
            return {p: files[p] for p in paths if p in files}

    def index_by_name(self, ws: str, names: Collection[str]) -> dict[str, list[Step]]:
        wanted = set(names)
        out: dict[str, list[Step]] = {}
        with self._lock:
            for step in self._tables.git_files.get(ws, {}).values():
                if step.name in wanted:
                    out.setdefault(step.name, []).append(step)
        return out

    def index_count(self, ws: str) -> int:
        with self._lock:
            return len(self._tables.git_files.get(ws, {}))

    # -- applying and recording --------------------------------------------------------------

    # -- writers' leases (as syncd.store.leases) --------------------------------------------

    def take_lease(
        self, ws: str, holder: str, ttl: float = LEASE_TTL, force: bool = False
    ) -> Lease | None:
        take_params(ws, holder, ttl, force)  # ValueError without a holder, as the stores
        with self._lock:
            now = self.clock()
            held, fence, until = self._tables.leases.get(ws, ("", 0, 0.0))
            if not (force or not held or held == holder or until <= now):
                return None
            self._tables.leases[ws] = (holder, fence + 1, now + ttl)
            return Lease(ws, holder, fence + 1)

    def renew_leases(self, leases: Collection[Lease], ttl: float = LEASE_TTL) -> list[Lease]:
        with self._lock:
            lost = []
            for lease in leases:
                held, fence, _until = self._tables.leases.get(lease.workspace, ("", 0, 0.0))
                if (held, fence) == (lease.holder, lease.fence):
                    self._tables.leases[lease.workspace] = (held, fence, self.clock() + ttl)
                else:
                    lost.append(lease)
            return lost

    def lease_holder(self, ws: str) -> str | None:
        with self._lock:
            held, _fence, until = self._tables.leases.get(ws, ("", 0, 0.0))
            return held if held and until > self.clock() else None

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            held, fence, _until = self._tables.leases.get(lease.workspace, ("", 0, 0.0))
            if (held, fence) == (lease.holder, lease.fence):
                self._tables.leases[lease.workspace] = ("", fence, 0.0)

    def _check_write(self, lease: Lease | None, run: Run) -> None:
        if lease is not None:
            row = self._tables.leases.get(lease.workspace)
            check_lease(lease, None if row is None else (row[0], row[1]))
        check_new_run(run.id, run.workspace, run.id in self._tables.runs)

    def apply(
        self,
        plan: Plan,
        index: IndexUpdate,
        run: Run,
        state: SyncState,
        base: ApplyBase,
        lease: Lease | None = None,
    ) -> SyncState:
        ws, now = state.workspace, self.clock()
        with self._lock:
            self._check_write(lease, run)
            self._check_base(ws, base)
            new = self._tables.copy()
            rows = new.steps.setdefault(ws, {})
            for change in plan.creates + plan.updates:
                assert change.after is not None
                old = rows.get(change.name)
                step_id, version = (old.step.id, old.step.version) if old else (_new_id(), 0)
                rows[change.name] = StepRow(
                    LiveStep(
                        step_id,
                        change.name,
                        change.after,
                        version + 1,
                        change.after.content_hash(),
                        now,
                        Origin.GIT,
                    )
                )
            for change in plan.deletes:
                rows.pop(change.name, None)
            # The steps the plan covered are now as git has them: tombstones go, marks clear.
            for name in base.versions:
                row = rows.get(name)
                if row is None:
                    continue
                if row.deleted:
                    del rows[name]
                elif row.step.origin is Origin.OUTSIDE:
                    rows[name] = StepRow(replace(row.step, origin=Origin.GIT))
            left = sum(r.step.origin is Origin.OUTSIDE for r in rows.values())
            if left:  # edited outside git while the sync ran: not synced yet
                state = replace(state, status=Status.OUT_OF_SYNC, drift=left)
            files = new.git_files.setdefault(ws, {})
            if index.replace_all:
                files.clear()
            for path in () if index.replace_all else index.removes:
                files.pop(path, None)
            files.update((s.path, s) for s in index.upserts)
            _insert_run(new, run)
            _save_state(new, state)
            # The moment a real store commits: a failure here must leave everything as it was.
            failure, self.fail_next_apply = self.fail_next_apply, None
            if failure is not None:
                raise failure
            self._tables = new
            return replace(state)

    def _check_base(self, ws: str, base: ApplyBase) -> None:
        # The stores' own checks, so that a conflict reads as theirs.
        found = self._tables.workspaces.get(ws)
        check_applied(ws, base, found.last_applied_revision if found is not None else None)
        rows = self._tables.steps.get(ws, {})
        live = {n: r.step.version for n in base.versions if (r := rows.get(n)) and not r.deleted}
        check_versions(ws, base, live)

    def problem(self) -> str | None:
        return "the fake store is closed" if self.closed else None

    def record_run(self, run: Run, state: SyncState, lease: Lease | None = None) -> None:
        with self._lock:
            self._check_write(lease, run)
            _insert_run(self._tables, run)
            _save_state(self._tables, state)

    def fail_run(self, ws: str, run_id: str, error: str, finished_at: float) -> None:
        with self._lock:
            run = self._tables.runs.get(run_id)
            if run is None or run.workspace != ws:
                return
            run.result, run.error, run.finished_at = RunResult.FAILED, error, finished_at
            state = self._tables.workspaces.get(ws)
            if state is not None:
                state.failed_revision = run.revision

    def set_run_checks(self, ws: str, run_id: str, checks: tuple[CheckOutcome, ...]) -> None:
        with self._lock:
            run = self._tables.runs.get(run_id)
            if run is not None and run.workspace == ws:
                run.checks = checks

    def runs(self, ws: str, limit: int = 50) -> list[Run]:
        with self._lock:
            # Newest first; among equal start times the last inserted first (SQLite's rowid).
            mine = [r for r in reversed(self._tables.runs.values()) if r.workspace == ws]
        mine.sort(key=lambda r: r.started_at, reverse=True)
        return [replace(r) for r in mine[:limit]]

    def run(self, run_id: str) -> Run | None:
        with self._lock:
            found = self._tables.runs.get(run_id)
        return replace(found) if found is not None else None

    def runs_by_id(self, run_ids: Collection[str]) -> dict[str, Run]:
        found = {run_id: self.run(run_id) for run_id in run_ids}
        return {run_id: run for run_id, run in found.items() if run is not None}

    def last_successes(self, ids: Collection[str]) -> dict[str, float]:
        found = {ws: self.last_success_at(ws) for ws in ids}
        return {ws: when for ws, when in found.items() if when is not None}

    def last_success_at(self, ws: str) -> float | None:
        with self._lock:
            done = [
                r.finished_at
                for r in self._tables.runs.values()
                if r.workspace == ws
                and r.result is RunResult.SUCCEEDED
                and r.finished_at is not None
            ]
        return max(done, default=None)

    def runs_finished_since(self, since: float, until: float, limit: int = 10_000) -> list[Run]:
        with self._lock:
            done = [
                r
                for r in self._tables.runs.values()
                if r.finished_at is not None and since < r.finished_at <= until
            ]
        done.sort(key=lambda r: r.finished_at or 0.0)
        return [replace(r) for r in done[:limit]]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            return self._tables.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._tables.meta[key] = value

    def remember_delivery(
        self, provider: str, delivery: str, now: float, ttl: float = DELIVERY_TTL
    ) -> bool:
        with self._lock:
            seen = self._tables.deliveries
            for key in [k for k, at in seen.items() if at <= now - ttl]:
                del seen[key]
            if (provider, delivery) in seen:
                return False
            seen[(provider, delivery)] = now
            return True

    def forget_delivery(self, provider: str, delivery: str) -> None:
        with self._lock:
            self._tables.deliveries.pop((provider, delivery), None)

    # -- the audit -----------------------------------------------------------------------------

    def record_audit(self, entry: AuditEntry) -> None:
        with self._lock:
            self._append_audit(entry)

    def _append_audit(self, entry: AuditEntry | None) -> None:
        """Under the lock (with the change it describes, when there is one)."""
        if entry is None:
            return
        if self.fail_audit is not None:
            raise self.fail_audit
        held = self._tables.audit
        # One above the largest id held, as SQLite's INTEGER PRIMARY KEY (pruning removes
        # the oldest entries, so the count is no id).
        held.append(replace(entry.bounded(), id=(held[-1].id or 0) + 1 if held else 1))

    def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        with self._lock:
            found = [e for e in reversed(self._tables.audit) if query.matches(e)]
        return found[: query.limit]

    # -- history pruning: syncd.store.history's rule over the dicts -------------------------

    def prune_runs(
        self, ws: str, keep_runs: int | None, older_than: float | None, limit: int
    ) -> int:
        if keep_runs is not None and keep_runs < 1:
            raise ValueError(f"keep_runs must be at least 1, got {keep_runs}")
        with self._lock:
            # Oldest first; among equal start times the first inserted first (SQLite's rowid).
            mine = [r for r in self._tables.runs.values() if r.workspace == ws]
            mine.sort(key=lambda r: r.started_at)
            state = self._tables.workspaces.get(ws)
            succeeded = [r for r in mine if r.result is RunResult.SUCCEEDED]
            applied = [r for r in succeeded if not r.dry_run]
            keep = {state.last_run_id if state else None}
            keep |= {found[-1].id for found in (succeeded, applied) if found}
            by_count = mine[: max(0, len(mine) - keep_runs)] if keep_runs is not None else []
            by_age = [r for r in mine if older_than is not None and r.started_at < older_than]
            going = {r.id for r in by_count + by_age if r.id not in keep}
            batch = [r.id for r in mine if r.id in going][: max(0, limit)]
            for run_id in batch:
                del self._tables.runs[run_id]
        return len(batch)

    def prune_audit(self, older_than: float, limit: int) -> int:
        with self._lock:
            held = self._tables.audit
            going = sorted((e for e in held if e.at < older_than), key=lambda e: e.at)
            gone = {id(e) for e in going[: max(0, limit)]}
            self._tables.audit = [e for e in held if id(e) not in gone]
        return len(gone)


def base_of(store: Store, ws: str, names: set[str]) -> ApplyBase:
    """The base a plan over `names` (and every drifted step) of `ws` was read from: the store
    now, as the engine's read phase takes it."""
    live = store.live_steps(ws)
    covered = names | store.drifted_names(ws)
    versions = {n: live[n].version if n in live else None for n in covered}
    return ApplyBase(store.state(ws).last_applied_revision, versions)


def _insert_run(tables: Tables, run: Run) -> None:
    # What the runs table's NOT NULL columns refuse, the stores refuse (in the transaction).
    for column in ("id", "workspace", "trigger", "result", "started_at"):
        if getattr(run, column) is None:
            raise StoreError(f"the fake store: NOT NULL constraint failed: runs.{column}")
    tables.runs[run.id] = replace(run)


def _save_state(tables: Tables, state: SyncState) -> None:
    # As SqliteStore: saving a state leaves `suspended` as `set_suspended` last wrote it.
    old = tables.workspaces.get(state.workspace)
    tables.workspaces[state.workspace] = replace(state, suspended=bool(old and old.suspended))


def _new_id() -> str:
    return next(new_step_ids(1))


# -- git -------------------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]{4,40}")  # a full or abbreviated sha, as GitSource takes
_REGULAR = 0o100644


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    parent: str | None
    files: Mapping[str, str]  # path from the repository root -> blob id
    message: str = "a commit"
    author: str = "Test <test@example.com>"
    payload: bytes = b""  # what a signature signs (the fake's sha is taken over it)
    signature: bytes | None = None
    time: int = 0


class FakeGit:
    """`GitReader` over one in-memory repository: the remote, and the mirror a fetch fills.

    As with `GitSource`, reading (resolve_commit, list_files, changed_files, blobs) sees only
    commits fetched into the mirror. `fetches` counts fetches that went to the remote (a fetch
    of a commit the mirror already has goes nowhere), `blobs_read` counts blobs read,
    `signatures_read` commit signatures read. Set `outage` to make every network operation
    raise it, until it is cleared.
    """

    def __init__(self) -> None:
        self.branches: dict[str, str] = {}
        self.commits: dict[str, Commit] = {}
        self.blobs: dict[str, bytes] = {}
        self.mirror: set[str] = set()  # shas of the commits fetched
        self.fetches = 0
        self.blobs_read = 0
        self.signatures_read = 0
        self.outage: Exception | None = None
        self._numbers = itertools.count(1)
        self._lock = threading.RLock()

    # -- writing the remote (tests) ----------------------------------------------------------

    def commit(
        self,
        files: Mapping[str, bytes | str | None],
        branch: str = "main",
        message: str = "a commit",
        author: str = "Test <test@example.com>",
        sign: Callable[[bytes], bytes] | None = None,
    ) -> str:
        """A new commit on `branch` (created if new): the branch's files, with `files` written
        over them; a None value deletes that path. `sign` makes the commit's signature from its
        payload (unsigned without). Returns the commit's sha."""
        with self._lock:
            parent = self.branches.get(branch)
            tree = dict(self.commits[parent].files) if parent else {}
            for path, data in files.items():
                if data is None:
                    tree.pop(path, None)
                    continue
                raw = data.encode("utf-8") if isinstance(data, str) else data
                blob = _blob_id(raw)
                self.blobs[blob] = raw
                tree[path] = blob
            seed = f"{parent}|{sorted(tree.items())}|{next(self._numbers)}"
            sha = hashlib.sha1(seed.encode("utf-8")).hexdigest()
            payload = f"{seed}\n\n{message}".encode()
            signature = sign(payload) if sign is not None else None
            self.commits[sha] = Commit(
                sha, parent, tree, message, author, payload, signature, int(time.time())
            )
            self.branches[branch] = sha
            return sha

    # -- network operations ------------------------------------------------------------------

    def heads(self, remote: Remote) -> dict[str, str]:
        with self._lock:
            self._network()
            return dict(self.branches)

    def resolve(self, remote: Remote, branch: str) -> str:
        sha = self.heads(remote).get(branch)
        if sha is None:
            raise RevisionNotFound(f"branch {branch!r} not found on {remote.url}")
        return sha

    def fetch(self, remote: Remote, branch: str, want: str | None = None) -> str:
        with self._lock:
            if want is not None and (found := self._find(want)) is not None:
                return found  # already in the mirror: no network at all
            self._network()
            self.fetches += 1
            head = self.branches.get(branch)
            if head is None:
                raise RevisionNotFound(f"branch {branch!r} not found on {remote.url}")
            self.mirror.update(self._ancestry(head))
            if want is None:
                return head
            found = self._find(want)
            if found is None:
                raise RevisionNotFound(f"commit {want!r} not found on branch {branch!r}")
            return found

    def _network(self) -> None:
        if self.outage is not None:
            raise self.outage

    def branches_containing(self, remote: Remote, commit: str) -> list[str]:
        sha = self.resolve_commit(remote, commit)
        with self._lock:
            return sorted(b for b, head in self.branches.items() if sha in self._ancestry(head))

    def is_ancestor(self, remote: Remote, ancestor: str, descendant: str) -> bool:
        old, new = self._find(ancestor), self._find(descendant)
        if old is None or new is None or old == new:
            return False
        with self._lock:
            return old in self._ancestry(new)

    def _ancestry(self, sha: str | None) -> Iterator[str]:
        while sha is not None:
            yield sha
            sha = self.commits[sha].parent

    # -- reading the mirror ------------------------------------------------------------------

    def resolve_commit(self, remote: Remote, rev: str) -> str:
        found = self._find(rev)
        if found is None:
            raise RevisionNotFound(f"commit {rev!r} not found in the mirror of {remote.url}")
        return found

    def commit_summary(self, remote: Remote, sha: str) -> tuple[str, str]:
        found = self.commits[self.resolve_commit(remote, sha)]
        return found.message.split("\n", 1)[0][:200], found.author[:200]

    def commit_signature(self, remote: Remote, sha: str) -> CommitSignature:
        found = self.commits[self.resolve_commit(remote, sha)]
        with self._lock:
            self.signatures_read += 1
        return CommitSignature(found.signature, found.payload, found.time)

    def list_files(self, remote: Remote, commit: str, path: str) -> list[TreeEntry]:
        sha = self.resolve_commit(remote, commit)
        files = self._subtree(sha, path)
        if files is None:
            raise PathNotFound(f"path {path!r} not found at commit {sha[:12]}")
        return [
            TreeEntry(p, blob, _REGULAR, len(self.blobs[blob]))
            for p, blob in sorted(files.items())
            if p.endswith(SUFFIX)
        ]

    def changed_files(
        self, remote: Remote, base: str, head: str, path: str
    ) -> list[FileChange] | None:
        head_sha = self.resolve_commit(remote, head)
        base_sha = self._find(base)
        if base_sha is None:
            return None  # the base is not in the mirror: the caller reads everything
        old, new = self._subtree(base_sha, path), self._subtree(head_sha, path)
        if old is None and new is None:
            raise PathNotFound(f"path {path!r} not found at commit {head_sha[:12]}")
        old, new = old or {}, new or {}
        changes: list[FileChange] = []
        for p in sorted(old.keys() | new.keys()):
            if not p.endswith(SUFFIX) or old.get(p) == new.get(p):
                continue
            if p not in old:
                changes.append(FileChange("added", p, new[p], _REGULAR, len(self.blobs[new[p]])))
            elif p not in new:
                changes.append(FileChange("deleted", p, None))
            else:
                changes.append(FileChange("modified", p, new[p], _REGULAR, len(self.blobs[new[p]])))
        return changes

    @contextmanager
    def blob_reader(self, remote: Remote) -> Iterator[Callable[[str], bytes]]:
        def read(blob: str) -> bytes:
            with self._lock:
                fetched = (self.commits[sha].files.values() for sha in self.mirror)
                if not any(blob in files for files in fetched):
                    raise GitError(f"blob {blob!r} not found in the mirror of {remote.url}")
                self.blobs_read += 1
                return self.blobs[blob]

        yield read

    def _find(self, rev: str) -> str | None:
        """The full sha of a fetched commit named by a full or unambiguous abbreviated sha."""
        if not _HEX.fullmatch(rev):
            return None
        with self._lock:
            found = [sha for sha in self.mirror if sha.startswith(rev.lower())]
        return found[0] if len(found) == 1 else None

    def _subtree(self, sha: str, path: str) -> dict[str, str] | None:
        """The files under `path` at a commit, or None when git has no folder there."""
        files = self.commits[sha].files
        folder = path.strip("/")
        if folder in ("", "."):
            return dict(files)
        if folder in files:
            raise StepFileError(f"path {path!r} is not a directory at commit {sha[:12]}")
        under = {p: b for p, b in files.items() if p.startswith(folder + "/")}
        return under or None  # git keeps no empty folders


class GatedGit(FakeGit):
    """A FakeGit whose fetches wait until the test opens `gate`: runs stay in flight, and
    `active`/`peak` say how many are in flight now and at most."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.active = 0
        self.peak = 0
        self._count_lock = threading.Lock()

    def fetch(self, remote: Remote, branch: str, want: str | None = None) -> str:
        with self._count_lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            self.gate.wait(5)
            return super().fetch(remote, branch, want)
        finally:
            with self._count_lock:
                self.active -= 1


def _blob_id(data: bytes) -> str:
    # git's own blob id, so ids look and compare like the real ones.
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


# -- builders --------------------------------------------------------------------------------

STEPS_PATH = "export/steps"


def step_files(
    steps: Mapping[str, str | None], folder: str = STEPS_PATH
) -> dict[str, bytes | None]:
    """Step files for FakeGit.commit: {name: do} with `if` "true"; a None value deletes it."""
    return {
        f"{folder}/{step_file_name(name)}": None
        if do is None
        else render_step_file(name, StepContent("true", do))
        for name, do in steps.items()
    }


def workspace(
    ws_id: str = "ws",
    mode: Mode = Mode.AUTOMATIC,
    path: str = STEPS_PATH,
    allow_empty: bool = False,
    branch: str = "main",
    poll_interval: float = 0.0,
    max_deletes: DeleteLimit | None = None,
    verify: VerifyConfig | None = None,
) -> WorkspaceConfig:
    return WorkspaceConfig(
        id=ws_id,
        name=f"workspace {ws_id}",
        tags=(),
        mode=mode,
        source=SourceConfig(url="https://git.example/org/steps.git", branch=branch, path=path),
        poll_interval=poll_interval,
        allow_empty=allow_empty,
        notify=(),
        file=Path("syncd.yaml"),
        max_deletes=max_deletes,
        verify=verify,
    )


def config(
    *workspaces: WorkspaceConfig, webhooks: Mapping[str, WebhookConfig] | None = None
) -> Config:
    """A whole config around some workspaces, built without reading a file."""
    return Config(
        path=Path("syncd.yaml"),
        files=(Path("syncd.yaml"),),
        server=ServerConfig(),
        state_dir=Path("state"),
        store=StoreConfig("sqlite:///state/syncd.db"),
        tokens=(),
        webhooks=dict(webhooks or {}),
        notifications=NotificationsConfig(),
        git=GitConfig(),
        workspaces=workspaces,
    )


def _conforms(store: FakeStore, git: FakeGit) -> tuple[Store, GitReader]:
    """Never called: mypy checks here that the fakes keep up with the protocols."""
    return store, git
