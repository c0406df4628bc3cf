"""The read and plan phases of a sync: the steps at a commit, planned against the live ones.

A full read lists every step file of the commit; an incremental one reads only the files that
changed since the last applied commit. Either way a bad file does not stop the reading: every
file problem of the commit is collected and the run names them all at once. Nothing here
writes: the plan's `base` says what it was read from, so that an apply writes only over that.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from syncd.config import WorkspaceConfig
from syncd.core.errors import PathNotFound, StepFileError
from syncd.core.model import LiveStep, Plan, Step, StepContent
from syncd.core.plan import compute_plan, empty_refused
from syncd.core.steps import (
    MAX_STEPS,
    FileEntry,
    Problems,
    check_count,
    duplicate_problem,
    duplicate_problems,
    entry_problem,
)
from syncd.core.urls import normalize_repo_url
from syncd.git import FileChange, Remote, TreeEntry
from syncd.store import ApplyBase, IndexUpdate, Store
from syncd.sync.parsed_steps import ParsedSteps

Progress = Callable[[str], None]


class TreeReader(Protocol):
    """What reading needs of git: a commit's files, a diff of two commits, and their blobs."""

    def list_files(self, remote: Remote, commit: str, path: str) -> list[TreeEntry]: ...
    def changed_files(
        self, remote: Remote, base: str, head: str, path: str
    ) -> list[FileChange] | None: ...
    def blob_reader(self, remote: Remote) -> AbstractContextManager[Callable[[str], bytes]]: ...


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


def source_key(ws: WorkspaceConfig) -> str:
    """Where a workspace's steps come from: an incremental read is only valid from a commit
    applied from the same repository and path."""
    return f"{normalize_repo_url(ws.source.url)}|{ws.source.path.strip('/')}"


@dataclass(frozen=True, slots=True)
class Reader:
    store: Store
    git: TreeReader
    parsed: ParsedSteps  # shared by the readings of every workspace (the Engine keeps one)

    def read(self, ws: WorkspaceConfig, remote: Remote, commit: str, say: Progress) -> Reading:
        """Read the steps at a commit and plan against the live ones, changing nothing."""
        state = self.store.state(ws.id)
        base = state.last_applied_revision
        if base is not None and base != commit and state.source_key == source_key(ws):
            reading = self._read_incremental(ws, remote, base, commit, say)
            if reading is not None:
                return reading
        return self._read_full(ws, remote, base, commit, say)

    def _read_full(
        self, ws: WorkspaceConfig, remote: Remote, base: str | None, commit: str, say: Progress
    ) -> Reading:
        if base == commit:  # the applied commit again: steps from this workspace's own index
            steps, read = self._read_steps(ws, remote, commit, say)
        else:
            steps, read = self._steps_at(ws, remote, commit, say)
        # Drifted names first: one edited after this read is left to the next sync, marked.
        drifted = self.store.drifted_names(ws.id)
        live = self.store.live_steps(ws.id)
        plan = compute_plan(
            {s.name: s.content for s in steps}, {n: s.content for n, s in live.items()}
        )
        index = IndexUpdate(replace_all=True, upserts=tuple(steps))
        base_of = _base(base, plan, drifted, live)
        return Reading(commit, plan, index, len(live), False, read, base_of)

    def _steps_at(
        self, ws: WorkspaceConfig, remote: Remote, commit: str, say: Progress
    ) -> tuple[tuple[Step, ...], int]:
        """Every step of the workspace's folder at `commit`, and how many files were read.
        A listing another workspace of the remote read at that commit is taken as it is; one
        that another workspace is reading now is waited for (its siblings start together at a
        start, or after a push to their branch), then taken, or read here if it kept none."""
        key = (remote.key, commit, ws.source.path)
        kept = self.parsed.listing(*key)
        if kept is not None:
            return kept, 0
        with self.parsed.reading(*key) as first:
            kept = None if first else self.parsed.listing(*key)
            if kept is not None:
                return kept, 0
            return self._read_steps(ws, remote, commit, say)

    def _read_steps(
        self, ws: WorkspaceConfig, remote: Remote, commit: str, say: Progress
    ) -> tuple[tuple[Step, ...], int]:
        folder = ws.source.path
        try:
            entries = self.git.list_files(remote, commit, folder)
        except PathNotFound as e:
            # A folder that held every step and is gone is an empty result: the guard's rule
            # (refused unless allow_empty; max_deletes still applies to the plan).
            live_total = self.store.live_count(ws.id)
            if not (ws.allow_empty or live_total):
                raise
            if not ws.allow_empty:
                raise empty_refused(live_total, f"{e}: that") from e
            return (), 0
        check_count(len(entries))
        # A file whose blob the store already holds parsed needs no reading. A bad file does
        # not stop the reading: the run names every bad file at once.
        known = self.store.index_files(ws.id)
        problems = Problems()
        parse = partial(self.parsed.parse, remote.key)
        steps: list[Step] = []
        read = 0
        indexed = False  # a step taken from this workspace's own index
        with self.git.blob_reader(remote) as read_blob:
            for entry in entries:
                if problems.add(entry_problem(FileEntry(entry.path, entry.mode, entry.size))):
                    continue
                cached = known.get(entry.path)
                if cached is not None and cached.blob == entry.blob:
                    steps.append(cached)
                    indexed = True
                    continue
                step = problems.parse(entry.path, entry.blob, read_blob, parse)
                if step is not None:
                    steps.append(step)
                read += 1
                if read % 1000 == 0:
                    say(f"read {read} of {len(entries)} step files")
        for problem in duplicate_problems(steps):
            problems.add(problem)
        problems.raise_if_any()
        found = tuple(steps)
        if not indexed:  # only what this reading parsed is another workspace's to take
            self.parsed.keep_listing(remote.key, commit, folder, found)
        return found, read

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
        parse = partial(self.parsed.parse, remote.key)
        new_steps: list[Step] = []
        with self.git.blob_reader(remote) as read_blob:
            for c in present:
                # The size from the object header: a huge blob is never inflated.
                if problems.add(entry_problem(FileEntry(c.path, c.mode, c.size))):
                    continue
                step = problems.parse(c.path, c.blob or "", read_blob, parse)
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


def _base(
    revision: str | None, plan: Plan, drifted: set[str], live: dict[str, LiveStep]
) -> ApplyBase:
    """The base of a plan: the applied revision, and the live version of every step the plan
    covers (its changes, and the steps marked as edited outside git it saw)."""
    names = {c.name for c in plan.changes} | drifted
    return ApplyBase(revision, {n: live[n].version if n in live else None for n in names})
