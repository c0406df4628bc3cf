"""The scheduler's reading of remotes: polling per remote, and the startup comparison.

Workspaces on one remote (same URL and user) share one ls-remote per poll cycle and one
fetch per branch at startup. A poll requests a sync of each workspace whose branch calls for
one (`should_sync`); a remote that cannot be read counts against each of its workspaces' health.
With replicas, a remote is polled only on this replica's turn (the coordinator's `poll_turn`;
with one process every turn is ours).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from syncd.config import Config, WorkspaceConfig
from syncd.core import retry
from syncd.core.errors import GitError, StateUnusable, SyncdError
from syncd.core.model import Mode, Status, SyncState, Trigger, automation_suspended
from syncd.core.refs import short_branch
from syncd.core.urls import redact_url
from syncd.git import remote_key
from syncd.ops.logs import fields
from syncd.store import Store, StoreError
from syncd.sync.engine import Engine
from syncd.sync.health import HealthKeeper

# The scheduler's logger: these lines were always the scheduler's, and log filters name it.
log = logging.getLogger("syncd.scheduler")


def should_sync(mode: Mode, state: SyncState, head: str | None) -> bool:
    """The poll decision: has the branch moved, or is an automatic workspace still behind?"""
    if head is None:
        return False  # the branch is gone: nothing to apply; the next push will tell
    if head != state.last_seen_revision:
        return True
    if head == state.failed_revision:
        return False  # a bad commit waits for a new one instead of failing again and again
    if state.status is Status.UNKNOWN:
        return True
    if automation_suspended(mode, state):
        return False  # suspended or pinned: the poll records nothing new, applies nothing
    return mode is Mode.AUTOMATIC and state.status is Status.OUT_OF_SYNC


class PollHost(Protocol):
    """What polling asks of its scheduler: whether it still takes requests, a way to request
    a sync, and the store and jitter it reads, live (a test may swap the scheduler's)."""

    accepting: bool
    store: Store
    rng: Callable[[], float]

    def request_quietly(self, ws_id: str, trigger: Trigger, head: str | None = None) -> None: ...


class Turns(Protocol):
    """Whose turn it is to poll a remote (the coordinator: with one process, always ours)."""

    async def poll_turn(self, remote: str, interval: float) -> bool: ...


class Polling:
    """One poll loop per remote, and the startup comparison, for one scheduler."""

    def __init__(
        self,
        host: PollHost,
        engine: Engine,
        config: Callable[[], Config],
        health: HealthKeeper | None,
        turns: Turns,
        max_parallel: int,
    ) -> None:
        self.host = host
        self.engine = engine
        self.config = config
        self.health = health
        self.turns = turns
        # The startup comparison's ls-remotes and fetches, apart from the runs' slots, so
        # that fetching the next remotes overlaps the first remotes' runs.
        self._prefetch = asyncio.Semaphore(max_parallel)
        self._startup: asyncio.Task[None] | None = None
        self._pollers: dict[str, asyncio.Task[None]] = {}
        # The poll groups of the config they were computed from: each poll loop asks for them
        # twice a cycle, and a reload swaps the config object whole.
        self._groups: tuple[Config, dict[str, list[WorkspaceConfig]]] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start_comparison(self) -> None:
        self._startup = asyncio.create_task(self._startup_comparison(), name="startup")

    def reconfigure(self) -> None:
        """One poll loop per polled remote of the current config (none when not accepting)."""
        wanted = self._remotes()
        for key, task in list(self._pollers.items()):
            task.cancel()
            del self._pollers[key]
        if not self.host.accepting:
            return
        for key in wanted:
            self._pollers[key] = asyncio.create_task(self._poll_loop(key), name=f"poll {key}")

    def stop(self) -> None:
        if self._startup is not None:
            self._startup.cancel()
        for task in self._pollers.values():
            task.cancel()
        self._pollers.clear()

    # -- startup -----------------------------------------------------------------------------

    async def _startup_comparison(self) -> None:
        """Request a startup sync of every workspace, remote by remote as polling does: one
        ls-remote and one fetch per remote (per branch followed), then each workspace of it
        is planned from the shared mirror with the head it was told (no ls-remote of its
        own). Remotes are taken `max_parallel` at a time; a remote's workspaces are requested
        as soon as its mirror is fetched, so their runs overlap the next remotes' fetches."""
        groups: dict[str, list[WorkspaceConfig]] = {}
        for ws in self.config().workspaces:
            groups.setdefault(remote_key(ws.source.url, ws.source.username), []).append(ws)
        await asyncio.gather(*(self._start_remote(group) for group in groups.values()))

    async def _start_remote(self, group: list[WorkspaceConfig]) -> None:
        host = self.host
        heads: dict[str, str] = {}
        async with self._prefetch:
            if not host.accepting:
                return
            try:
                heads = await asyncio.to_thread(self.engine.branch_heads, group[0])
                for branch in dict.fromkeys(ws.source.branch for ws in group):
                    ws = next(w for w in group if w.source.branch == branch)
                    if (head := heads.get(short_branch(branch))) is not None:
                        await asyncio.to_thread(self.engine.prefetch, ws, head)
            except SyncdError as e:
                # Each workspace's own run will try again and record the failure as before.
                log.warning(
                    "startup fetch failed",
                    extra=fields(remote=redact_url(group[0].source.url), error=str(e)),
                )
            except Exception:
                # Not the remote's fault (a full disk): the runs meet it too and record it;
                # an exception out of here would leave every other remote's workspaces out.
                log.exception(
                    "startup fetch crashed", extra=fields(remote=redact_url(group[0].source.url))
                )
        for ws in group:
            # A branch the remote lacks: the run resolves it itself and says so.
            host.request_quietly(ws.id, Trigger.STARTUP, heads.get(short_branch(ws.source.branch)))

    # -- polling -----------------------------------------------------------------------------

    def _remotes(self) -> dict[str, list[WorkspaceConfig]]:
        """Polled workspaces grouped by remote: one ls-remote a cycle serves them all."""
        config = self.config()
        if self._groups is not None and self._groups[0] is config:
            return self._groups[1]
        groups: dict[str, list[WorkspaceConfig]] = {}
        for ws in config.workspaces:
            if ws.poll_interval > 0:
                key = remote_key(ws.source.url, ws.source.username)
                groups.setdefault(key, []).append(ws)
        self._groups = (config, groups)
        return groups

    async def _poll_loop(self, key: str) -> None:
        host = self.host
        failures = 0
        while host.accepting:
            group = self._remotes().get(key)
            if not group:
                return
            interval = min(ws.poll_interval for ws in group)
            if failures:
                interval = replace(retry.POLL, base=interval).delay(failures, host.rng)
            else:
                interval *= 0.9 + host.rng() * 0.2  # jitter spreads remotes' polls apart
            await asyncio.sleep(interval)
            try:
                if not await self.turns.poll_turn(key, min(ws.poll_interval for ws in group)):
                    continue  # another replica polls this remote this cycle
            except StoreError as e:
                log.warning(
                    "poll turn unknown", extra=fields(remote=key.split("|")[0], error=str(e))
                )
                continue
            try:
                heads = await asyncio.to_thread(self.engine.branch_heads, group[0])
            except GitError as e:
                failures += 1
                log.warning(
                    "poll failed",
                    extra=fields(remote=key.split("|")[0], failures=failures, error=str(e)),
                )
                await asyncio.to_thread(self._source_failed, self._remotes().get(key, []), e)
                continue
            except StateUnusable as e:
                # This host's state directory failed (LocalFailure), not the remote: no news of
                # the source; the runs record it, and /readyz says so.
                failures += 1
                log.warning(
                    "poll failed, locally",
                    extra=fields(remote=key.split("|")[0], failures=failures, error=str(e)),
                )
                continue
            except Exception:
                # Not the remote's fault (a full disk, the store): this cycle is lost, the
                # remote's polling is not; an exception out of here would end it for good.
                failures += 1
                log.exception(
                    "poll crashed", extra=fields(remote=key.split("|")[0], failures=failures)
                )
                continue
            failures = 0
            try:
                await self._request_moved(key, heads)
            except Exception:
                log.exception("poll crashed", extra=fields(remote=key.split("|")[0]))

    async def _request_moved(self, key: str, heads: dict[str, str]) -> None:
        """Request a sync of each workspace on the remote whose branch calls for one."""
        group = self._remotes().get(key, [])
        if not group:
            return
        for ws_id, head in await asyncio.to_thread(self._moved, group, heads):
            self.host.request_quietly(ws_id, Trigger.POLL, head)

    def _moved(
        self, group: list[WorkspaceConfig], heads: dict[str, str]
    ) -> list[tuple[str, str | None]]:
        """(Blocking.) The workspaces of a polled remote whose branch calls for a sync, and
        their heads: their states and health records read in one batch each, on one thread
        (not two thread hops and two reads for each workspace, every cycle)."""
        ids = [ws.id for ws in group]
        states = self.host.store.states(ids)
        # A source that failed answers again: a sync ends the failure (and the digest tells of
        # the recovery), even when the branch has not moved.
        back = self.health.failing_sources(ids) if self.health is not None else set()
        out: list[tuple[str, str | None]] = []
        for ws in group:
            head = heads.get(ws.source.branch)
            state = states[ws.id]
            wanted = should_sync(ws.mode, state, head)
            if wanted and head == state.last_seen_revision:
                # Nothing new, only behind: a workspace still held back by its gate (a closed
                # window, a promotion) would record the same planned run again. Its gate opening
                # syncs it (a timer, the upstream's apply); this is the check of last resort.
                try:
                    wanted = self.engine.gate.view(ws, state) is None
                except Exception:  # one workspace's gate: the remote's others are still asked
                    log.exception("poll crashed", extra=fields(workspace=ws.id))
                    continue
            if wanted or ws.id in back:
                out.append((ws.id, head))
        return out

    def _source_failed(self, group: list[WorkspaceConfig], error: GitError) -> None:
        """Each workspace of a remote that cannot be read: its first failure is recorded as a
        failed run (so the digest names it), the later ones only counted."""
        health = self.health
        if health is None:
            return
        for ws in group:
            try:
                if health.source_failed(ws.id, str(error)):
                    self.engine.record_source_failure(ws, Trigger.POLL, error)
            except Exception:  # a store error: the next poll tries again
                log.exception("recording a source failure failed", extra=fields(workspace=ws.id))
