"""A pull request's plan: from its webhook to a status on its head commit and one comment.

A `pull_request` webhook whose base branch workspaces follow (and whose workspaces ask for
`report.pull_requests`) makes syncd fetch the pull request's head into the shared mirror,
preview that commit against each such workspace's live steps (the same phases as a sync,
applying nothing: see `syncd.sync.previewing`), and hand the reports to the `Reporter`:
- a status `syncd/plan/<workspace name>` on the head commit, per workspace;
- one comment on the pull request, found again by its marker and edited in place.

Interleavings, and what keeps the comment single and current:
- Redelivered webhooks are dropped by the intake's delivery log (in the store: every replica).
- Events of one pull request that come while an earlier one waits its turn or is planned fold
  into one more round; the head planned is the one the remote has at the fetch (asked again
  briefly when it is not yet the event's).
- Two replicas writing the same pull request's comment take turns under a lease in the store,
  and each writes only while its head is still the pull request's head (asked of the host
  under that lease; otherwise tried again, and replaced by the newer plan's report): a late
  writer with an older plan writes nothing, and the second writer finds the first one's
  comment by its marker and edits it.
- The marker carries an HMAC of the pull request under the provider's credential, so a comment
  someone else wrote with a marker in it is never edited, nor taken for syncd's.

What a pull request's author may see: the plan of their commit against the live steps (that is
the point), never syncd's own troubles: a plan that fails for a reason that is not the commit's
(the store, the mirror) is reported as `error` with a generic description, and logged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from syncd.config import Config, ProviderConfig, WorkspaceConfig
from syncd.core.errors import SyncdError
from syncd.core.urls import normalize_repo_url
from syncd.ops.logs import fields
from syncd.report import render
from syncd.report.host import CommitStatus, Host, HostError, State
from syncd.report.reporter import SEND_LIMIT, Report, Reporter
from syncd.store import Store
from syncd.sync.previewing import Preview
from syncd.sync.writer_leases import new_holder
from syncd.webhooks import PullRequest

log = logging.getLogger("syncd.report")
T = TypeVar("T")

# Pull requests planned at once (each a fetch and a preview per workspace); more wait their turn.
PLANS_AT_ONCE = 2
# Pull requests with a plan waiting or being made, at most; past it an event is dropped (logged).
MAX_PULLS = 256
# A head fetched that is not yet the event's (the host updates refs/pull/N/head a moment after
# it sends the webhook) is fetched again, this many times in all, this far apart.
HEAD_FETCHES = 3
HEAD_WAIT = 1.0
# The comment's lease outlives the longest send it guards.
COMMENT_LEASE_TTL = SEND_LIMIT + 30.0
COMMENT_LEASE_WAIT = 30.0
LEASE_POLL = 0.2
# Said on the head commit when the plan could not be made for a reason not the commit's.
NOT_PLANNED = "syncd could not plan this commit (see syncd's log); it will plan the next push"


class Previews(Protocol):
    """The engine, as far as a plan needs it (see `Engine.preview_commit`)."""

    def preview_commit(self, ws: WorkspaceConfig, revision: str) -> Preview: ...


@dataclass(frozen=True, slots=True)
class _Group:
    """The workspaces that report to one repository of one provider (one, nearly always)."""

    provider: ProviderConfig
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
        self._threads = 0  # fetches and previews running on a thread now

    async def request(self, event: PullRequest, matched: tuple[str, ...]) -> tuple[str, ...]:
        """Plan the pull request for these workspaces (those among them that report pull
        requests to a provider of the webhook's kind), in the background; the workspaces it
        will report on."""
        wanted = tuple(ws.id for group in self._groups(event, matched) for ws in group.workspaces)
        if not wanted:
            return ()
        key = (normalize_repo_url(event.repo_urls[0]), event.number)
        if key not in self._running and len(self._running) >= MAX_PULLS:
            log.warning(
                "pull request plan dropped: too many waiting", extra=fields(pr=event.number)
            )
            return ()
        self._latest[key] = (event, wanted)
        if key not in self._running:
            self._running.add(key)
            task = asyncio.create_task(self._rounds(key), name=f"pull plan {event.number}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wanted

    async def close(self, wait: float = 1.0) -> bool:
        """Stop planning; whether no fetch or preview is still running on a thread after
        `wait` seconds (the daemon then does not wait for one at exit)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _ in range(int(wait / 0.05)):
            if not self._threads:
                break
            await asyncio.sleep(0.05)
        return not self._threads

    async def _rounds(self, key: tuple[str, int]) -> None:
        """Plan until no newer event of this pull request came in meanwhile. The event is
        taken once this pull request's turn has come, so events that come while it waits
        are folded into that round."""
        try:
            while True:
                async with self._turns:
                    taken = self._latest.pop(key, None)
                    if taken is None:
                        return
                    await self._plan(*taken)
        finally:
            self._running.discard(key)

    async def _plan(self, event: PullRequest, ws_ids: tuple[str, ...]) -> None:
        for group in self._groups(event, ws_ids):
            try:
                await self._plan_group(event, group)
            except Exception as e:  # one group's failure must not stop the others
                log.error(
                    "pull request not planned",
                    extra=fields(pr=event.number, error=f"{type(e).__name__}: {e}"),
                )
                for ws in group.workspaces:
                    failed = CommitStatus(State.ERROR, f"syncd/plan/{ws.name}", NOT_PLANNED)
                    self._status(group, ws, event.head_sha, failed)

    async def _plan_group(self, event: PullRequest, group: _Group) -> None:
        head = await self._head(event, group.workspaces[0])
        previews = []
        for ws in group.workspaces:
            preview = await self._thread(self._engine.preview_commit, ws, head)
            previews.append((ws, preview))
            public_url = self._config().server.public_url
            self._status(group, ws, head, render.plan_status(ws, preview, public_url))
        self._comment(group, event.number, head, previews)
        matched = ",".join(ws.id for ws in group.workspaces)
        log.info(
            "pull request planned",
            extra=fields(pr=event.number, revision=head[:12], matched=matched),
        )

    async def _head(self, event: PullRequest, ws: WorkspaceConfig) -> str:
        """The pull request's head as its remote has it: fetched again, a few times, while it
        is not yet the event's commit (then the remote's wins: it may be a newer push)."""
        head = ""
        for attempt in range(HEAD_FETCHES):
            if attempt:
                await asyncio.sleep(HEAD_WAIT)
            head = await self._thread(self._fetch_ref, ws, event.head_ref)
            if head == event.head_sha:
                break
        return head

    def _groups(self, event: PullRequest, ws_ids: tuple[str, ...]) -> list[_Group]:
        """The workspaces among `ws_ids` that report pull requests to a provider of the
        webhook's own kind (a GitLab webhook's merge request is no GitHub pull request), by
        the repository they report to."""
        config = self._config()
        by: dict[tuple[str, str], list[WorkspaceConfig]] = {}
        for ws_id in ws_ids:
            with contextlib.suppress(SyncdError):
                ws = config.workspace(ws_id)
                report = ws.report
                if report is None or not report.pull_requests:
                    continue
                provider = config.providers.get(report.provider)
                if provider is not None and provider.kind == event.provider:
                    by.setdefault((report.provider, report.repository), []).append(ws)
        return [
            _Group(config.providers[name], repository, tuple(found))
            for (name, repository), found in by.items()
        ]

    async def _thread(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on a thread, counted (see `close`)."""
        self._threads += 1
        try:
            return await asyncio.to_thread(call, *args)
        finally:
            self._threads -= 1

    def _status(self, group: _Group, ws: WorkspaceConfig, sha: str, status: CommitStatus) -> None:
        repository = group.repository

        async def send(host: Host) -> None:
            await host.set_status(repository, sha, status)

        key = (group.provider.name, repository, sha, status.context)
        self._reporter.submit(Report(key, group.provider.name, "plan_status", (ws.id,), send))

    def _comment(
        self,
        group: _Group,
        number: int,
        head: str,
        previews: list[tuple[WorkspaceConfig, Preview]],
    ) -> None:
        repository, public_url = group.repository, self._config().server.public_url
        provider = group.provider.name
        marker = render.signed_marker(_marker_key(group.provider), repository, number)
        lease_key = f"pull:{provider}:{repository}#{number}"

        async def send(host: Host) -> None:
            body = render.plan_comment(previews, head, host.max_comment, public_url, marker)
            async with self._comment_lease(lease_key):
                now = await host.pull_head(repository, number)
                if now != head:
                    # Pushed to since (or the host's API lags behind its refs): tried again,
                    # and replaced by the newer push's plan when it comes.
                    raise HostError(
                        f"provider {provider!r}: {repository}#{number} is at {now[:12]} now,"
                        f" not at the planned {head[:12]}",
                        transient=True,
                    )
                await host.upsert_comment(repository, number, marker, body)

        key = (provider, repository, f"#{number}")
        ids = tuple(ws.id for ws, _ in previews)
        self._reporter.submit(Report(key, provider, "comment", ids, send))

    @contextlib.asynccontextmanager
    async def _comment_lease(self, key: str) -> AsyncIterator[None]:
        """One writer of a pull request's comment at a time, across replicas."""
        store = self._store()
        lease = None
        for attempt in range(int(COMMENT_LEASE_WAIT / LEASE_POLL) + 1):
            if attempt:
                await asyncio.sleep(LEASE_POLL)
            lease = await asyncio.to_thread(store.take_lease, key, self._holder, COMMENT_LEASE_TTL)
            if lease is not None:
                break
        if lease is None:
            raise HostError("another replica is writing this pull request's comment", True)
        try:
            yield
        finally:
            await asyncio.to_thread(store.release_lease, lease)


def _marker_key(provider: ProviderConfig) -> bytes:
    """The key of a comment's marker: the provider's own credential, which only syncd and the
    host hold (a new token starts a new comment at the next push)."""
    secret = provider.app.private_key if provider.app else provider.token
    return secret.reveal().encode() if secret is not None else provider.api_url.encode()
