"""A pull request's plan: from its webhook to a status on its head commit and one comment.

A `pull_request` webhook whose base branch workspaces follow (and whose workspaces report pull
requests) makes syncd fetch the pull request's head into the shared mirror, preview that commit
against each such workspace's live steps (the same phases as a sync, applying nothing: see
`syncd.sync.previewing`), and hand the reports to the `Reporter`:
- a status `syncd/plan/<workspace name>` on the head commit, per workspace;
- one comment on the pull request, found again by its marker and edited in place.

Interleavings, and what keeps the comment single and current:
- Redelivered webhooks are dropped by the intake's delivery log (in the store: every replica).
- Events of one pull request while its plan is being made are folded into one more round, and
  the head is the one the remote has at the fetch, never older than the event's.
- Two replicas writing the same pull request's comment take turns under a lease in the store
  (`comment_lease`), and each writes only while its head is still the pull request's head (asked
  of the host under that lease): a late writer with an older plan writes nothing, and the second
  writer finds the first one's comment by its marker and edits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from syncd.config import Config, WorkspaceConfig
from syncd.core.errors import SyncdError
from syncd.ops.logs import fields
from syncd.report import render
from syncd.report.host import Host, HostError
from syncd.report.reporter import Report, Reporter
from syncd.store import Store
from syncd.sync.previewing import Preview
from syncd.sync.writer_leases import new_holder
from syncd.webhooks import PullRequest

log = logging.getLogger("syncd.report")

# Pull requests planned at once (each a fetch and a preview per workspace); more wait their turn.
PLANS_AT_ONCE = 2
# Pull requests with a plan queued or being made, at most; past it an event is dropped (logged).
MAX_PULLS = 256
COMMENT_LEASE_TTL = 60.0
COMMENT_LEASE_WAIT = 30.0


class Previews(Protocol):
    """The engine, as far as a plan needs it (see `Engine.preview_commit`)."""

    def preview_commit(self, ws: WorkspaceConfig, revision: str) -> Preview: ...


@dataclass(frozen=True, slots=True)
class _Group:
    provider: str
    repository: str
    workspaces: tuple[WorkspaceConfig, ...]


class PullPlans:
    def __init__(
        self,
        config: Callable[[], Config],
        engine: Previews,
        fetch_ref: Callable[[WorkspaceConfig, str], str],
        reporter: Reporter,
        store: Callable[[], Store],
    ) -> None:
        self._config, self._engine, self._fetch_ref = config, engine, fetch_ref
        self._reporter, self._store = reporter, store
        self._holder = new_holder("syncd-report")
        self._latest: dict[tuple[str, int], tuple[PullRequest, tuple[str, ...]]] = {}
        self._running: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns = asyncio.Semaphore(PLANS_AT_ONCE)

    def wanted(self, matched: tuple[str, ...]) -> tuple[str, ...]:
        """The matched workspaces that report pull requests' plans."""
        config = self._config()
        found = []
        for ws_id in matched:
            with contextlib.suppress(SyncdError):
                ws = config.workspace(ws_id)
                if ws.report is not None and ws.report.pull_requests:
                    found.append(ws_id)
        return tuple(found)

    async def request(self, event: PullRequest, matched: tuple[str, ...]) -> tuple[str, ...]:
        """Plan the pull request for these workspaces (those among them that report pull
        requests), in the background; the workspaces it will report on."""
        wanted = self.wanted(matched)
        if not wanted:
            return ()
        key = (",".join(event.repo_urls[:1]), event.number)
        if key not in self._latest and len(self._latest) >= MAX_PULLS:
            log.warning("pull request plan dropped: too many queued", extra=fields(pr=event.number))
            return ()
        self._latest[key] = (event, wanted)
        if key not in self._running:
            self._running.add(key)
            task = asyncio.create_task(self._rounds(key), name=f"pull plan {event.number}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wanted

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _rounds(self, key: tuple[str, int]) -> None:
        """Plan until no newer event of this pull request came in meanwhile."""
        try:
            while (taken := self._latest.pop(key, None)) is not None:
                async with self._turns:
                    await self._plan(*taken)
        finally:
            self._running.discard(key)

    async def _plan(self, event: PullRequest, ws_ids: tuple[str, ...]) -> None:
        for group in self._groups(ws_ids):
            try:
                head = await asyncio.to_thread(self._fetch_ref, group.workspaces[0], event.head_ref)
            except SyncdError as e:
                log.warning(
                    "pull request head not fetched",
                    extra=fields(pr=event.number, ref=event.head_ref, error=str(e)),
                )
                for ws in group.workspaces:
                    why = f"the pull request's head could not be fetched: {e}"
                    self._status(
                        group, ws, event.head_sha, Preview(ws.id, event.head_sha, None, why)
                    )
                continue
            previews = []
            for ws in group.workspaces:
                preview = await asyncio.to_thread(self._engine.preview_commit, ws, head)
                previews.append((ws, preview))
                self._status(group, ws, head, preview)
            self._comment(group, event.number, head, previews)
            log.info(
                "pull request planned",
                extra=fields(
                    pr=event.number,
                    revision=head[:12],
                    matched=",".join(ws.id for ws in group.workspaces),
                ),
            )

    def _groups(self, ws_ids: tuple[str, ...]) -> list[_Group]:
        """The workspaces by the host repository they report to (one, nearly always)."""
        config = self._config()
        by: dict[tuple[str, str], list[WorkspaceConfig]] = {}
        for ws_id in ws_ids:
            with contextlib.suppress(SyncdError):
                ws = config.workspace(ws_id)
                if ws.report is not None and ws.report.provider in config.providers:
                    by.setdefault((ws.report.provider, ws.report.repository), []).append(ws)
        return [_Group(p, r, tuple(found)) for (p, r), found in by.items()]

    def _status(self, group: _Group, ws: WorkspaceConfig, sha: str, preview: Preview) -> None:
        status = render.plan_status(ws, preview, self._config().server.public_url)
        repository = group.repository

        async def send(host: Host) -> None:
            await host.set_status(repository, sha, status)

        provider = self._config().providers[group.provider]
        key = (provider.name, repository, sha, status.context)
        self._reporter.submit(Report(key, provider, "plan_status", (ws.id,), send))

    def _comment(
        self,
        group: _Group,
        number: int,
        head: str,
        previews: list[tuple[WorkspaceConfig, Preview]],
    ) -> None:
        repository, public_url = group.repository, self._config().server.public_url
        provider = self._config().providers[group.provider]
        lease_key = f"pull:{provider.name}:{repository}#{number}"

        async def send(host: Host) -> None:
            body = render.plan_comment(previews, head, host.max_comment, public_url)
            async with self._comment_lease(lease_key):
                if await host.pull_head(repository, number) != head:
                    return  # pushed to since: that push's plan is the one to show
                await host.upsert_comment(repository, number, render.MARKER, body)

        key = (provider.name, repository, f"#{number}")
        ids = tuple(ws.id for ws, _ in previews)
        self._reporter.submit(Report(key, provider, "comment", ids, send))

    @contextlib.asynccontextmanager
    async def _comment_lease(self, key: str) -> AsyncIterator[None]:
        """One writer of a pull request's comment at a time, across replicas."""
        store = self._store()
        deadline = time.monotonic() + COMMENT_LEASE_WAIT
        lease = None
        for _ in range(int(COMMENT_LEASE_WAIT / 0.2) + 1):
            lease = await asyncio.to_thread(store.take_lease, key, self._holder, COMMENT_LEASE_TTL)
            if lease is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if lease is None:
            raise HostError("another replica is writing this pull request's comment", True)
        try:
            yield
        finally:
            await asyncio.to_thread(store.release_lease, lease)
