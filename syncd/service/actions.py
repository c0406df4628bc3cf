"""Every change to a workspace, whole: its checks, the change, the sync it asks for, and its
audit line. The API, the console and the local CLI call these, and nothing below them, so a
rule (a rollback's revision must be on the branch; a resume goes back to the branch head) is
kept once and every entry point leaves the same audit line.

An action is opened for an actor and a workspace id, and used inside `async with`: the line is
written when the block ends, however it ends. Whatever the caller checks inside the block (a
request body, say) is part of the action, so a refusal of it is audited too:

    async with actions.act(actor, "sync", ws_id) as act:
        ticket = await act.sync(revision, dry_run=False)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from syncd.config import WorkspaceConfig
from syncd.core.audit_model import AuditEntry
from syncd.core.errors import Conflict
from syncd.core.model import LiveStep, Mode, StepContent, Trigger
from syncd.runs.requests import QueueFull, ShuttingDown, Ticket
from syncd.service import access, audit
from syncd.service.answers import status_of
from syncd.service.audit import Actor, AuditLog, AuditObserver
from syncd.service.workspaces import Workspaces
from syncd.sync.engine import Outcome, Progress
from syncd.sync.export import ExportRequest, ExportResult

T = TypeVar("T")
CANCELLED = 499


class Calls(Protocol):
    """Where blocking store calls run for the event loop (`store.offloop.OffLoop`)."""

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class Runs(Protocol):
    """How a sync is asked for: queued on the daemon's scheduler, or run here (the CLI)."""

    async def request(
        self,
        ws: WorkspaceConfig,
        revision: str | None,
        dry_run: bool,
        actor: str | None = None,
        trigger: Trigger = Trigger.MANUAL,
    ) -> Ticket: ...


class ResumedNotQueued(QueueFull):
    """A resume is stored, but its sync to the branch head could not be queued: said as such,
    or a client would resume again for nothing."""


class Actions:
    def __init__(
        self,
        workspaces: Workspaces,
        calls: Calls,
        runs: Runs,
        observer: AuditObserver | None = None,
    ) -> None:
        self.workspaces = workspaces
        self.calls = calls
        self.runs = runs
        # The audit in the store, written through `calls` as the actions' own store calls are;
        # `observer` counts it (the daemon's metrics).
        self.audit = AuditLog(workspaces.store, calls, observer)

    def act(
        self,
        actor: Actor,
        action: str,
        ws_id: str,
        step: str | None = None,
        judge: Callable[[BaseException], int] = status_of,
    ) -> Act:
        """One action on workspace `ws_id`; `judge` turns a failure into the caller's status
        (the API knows its own errors too)."""
        return Act(self, actor, action, ws_id, step, judge)


class Act:
    """One action by one actor on one workspace, audited when its `async with` block ends."""

    def __init__(
        self,
        actions: Actions,
        actor: Actor,
        action: str,
        ws_id: str,
        step: str | None,
        judge: Callable[[BaseException], int],
    ) -> None:
        self._actions, self.actor, self.action = actions, actor, action
        self.ws_id, self.step, self._judge = ws_id, step, judge
        self.revision: str | None = None
        self.detail: str | None = None  # what the entry says of an action that went well
        # The answer's status, when the caller's answer is not a plain 200: set before the
        # action for one whose entry is stored with its change (suspend, step edits).
        self.status = 200
        self._stored: AuditEntry | None = None  # the entry stored with the change, if one was
        self.workspace: WorkspaceConfig  # set when the action is entered

    async def __aenter__(self) -> Act:
        # The workspace, looked up once for the whole action; an unknown one is refused (404)
        # before the caller reads anything else of its request, and audited as such, as is
        # one outside the actor's reach.
        try:
            ws = self._actions.workspaces.get(self.ws_id)
            # Outside the actor's workspaces: as if it did not exist (404); visible but not
            # theirs to act on as asked: 403. Audited either way.
            self.workspace = access.require(self.actor, access.ACTION_SCOPES[self.action], ws)
        except BaseException as e:
            await self.__aexit__(type(e), e, e.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(error, asyncio.CancelledError):
            # The caller hung up (or syncd is stopping) part way: what was done stays done, and
            # the line says the action did not finish, with nginx's "client closed" status.
            status = CANCELLED
        else:
            status = self.status if error is None else self._judge(error)
        if self._stored is not None:
            # The entry is in the store with its change; the line says how the answer went.
            audit.record(
                self.actor, self.action, self.ws_id, step=self.step, status=status, error=error
            )
            self._actions.audit.written(self._stored)
            return
        entry = audit.record(
            self.actor,
            self.action,
            self.ws_id,
            step=self.step,
            revision=self.revision,
            status=status,
            error=error,
            detail=self.detail,
        )
        await self._actions.audit.write(entry)

    def _entry(self) -> AuditEntry:
        """The entry of an action whose change is one store write, to go into its transaction:
        the change and its entry are stored together, or neither is."""
        return audit.build(self.actor, self.action, self.ws_id, step=self.step, status=self.status)

    # -- the actions -----------------------------------------------------------------------------

    async def sync(self, revision: str | None, dry_run: bool) -> Ticket:
        """A manual sync, a dry run, or a rollback (a sync pinned to `revision`). A pinned
        revision must be on the workspace's branch, and with `verify` the commit (pinned, or
        the branch head) must carry a trusted signature: refused (422) before anything is
        queued. Inside a closed change window that says `manual_sync: false`, a sync or a
        rollback is refused (409); a dry run applies nothing and is not."""
        ws, service = self.workspace, self._actions.workspaces
        self.revision = revision
        self.detail = "dry run" if dry_run else None if revision is None else "rollback"
        if not dry_run:
            await self._refuse_in_window()
        if revision is not None:  # it may fetch: on a thread of the default pool, as git reads
            await asyncio.to_thread(service.check_revision, ws, revision)
        elif ws.verify is not None:
            await asyncio.to_thread(service.check_head, ws)
        return await self._actions.runs.request(ws, revision, dry_run, self.actor.name)

    async def suspend(self) -> dict[str, Any]:
        service, entry = self._actions.workspaces, self._entry()
        await self._actions.calls.run(service.mark_suspended, self.workspace, entry)
        # Stored with the suspension: whatever comes next (reading the view back) is no
        # reason for a second entry.
        self._stored = entry
        return await self._actions.calls.run(service.suspended_view, self.workspace)

    async def resume(self) -> Ticket:
        """Resume automation, then back to the branch head: in automatic mode a manual sync,
        which also ends a pin; in manual mode a comparison with the head (a planned run, as a
        poll makes), which applies nothing: its changes wait for a manual sync."""
        ws = self.workspace
        if ws.mode is Mode.AUTOMATIC:
            await self._refuse_in_window()  # its sync to the head is a manual one
        await self._actions.calls.run(self._actions.workspaces.resume, ws)
        trigger = Trigger.MANUAL if ws.mode is Mode.AUTOMATIC else Trigger.POLL
        try:
            return await self._actions.runs.request(ws, None, False, self.actor.name, trigger)
        except (QueueFull, ShuttingDown) as e:
            raise ResumedNotQueued(
                f"workspace {ws.id} is resumed, but its sync to the branch head was not queued: "
                f"{e}; the next poll or push syncs it"
            ) from e

    async def _refuse_in_window(self) -> None:
        """Conflict (409) inside a closed window that takes no manual sync, naming it and when
        it opens (windows are computed, never read: a thread only for a long look-ahead)."""
        gate = self._actions.workspaces.engine.gate
        refusal = await asyncio.to_thread(gate.manual_refusal, self.workspace)
        if refusal is not None:
            raise Conflict(refusal)

    async def put_step(self, name: str, content: StepContent) -> LiveStep:
        """An edit outside git: the workspace turns OutOfSync, and automatic mode heals it."""
        ws, service = self.workspace, self._actions.workspaces
        entry = self._entry()
        saved = await self._actions.calls.run(service.put_step, ws, name, content, entry)
        self._stored = entry
        await service.note_edit(ws)
        return saved

    async def delete_step(self, name: str) -> None:
        ws, service = self.workspace, self._actions.workspaces
        entry = self._entry()
        await self._actions.calls.run(service.delete_step, ws, name, entry)
        self._stored = entry
        await service.note_edit(ws)

    async def export(self, order: ExportRequest) -> ExportResult:
        """Commit the live steps to a branch and push (git: on a thread of the default pool)."""
        result = await asyncio.to_thread(self._actions.workspaces.export, self.workspace, order)
        self.revision = result.commit
        return result


class QueuedRuns:
    """The daemon's way: a request on its scheduler, answered with a ticket at once."""

    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces

    async def request(
        self,
        ws: WorkspaceConfig,
        revision: str | None,
        dry_run: bool,
        actor: str | None = None,
        trigger: Trigger = Trigger.MANUAL,
    ) -> Ticket:
        return await self.workspaces.request_sync(ws, trigger, revision, dry_run, actor)


class RunsHere:
    """The local CLI's way: the sync runs in this process, to its end, before the ticket is
    handed back (its future already holds the outcome)."""

    def __init__(self, workspaces: Workspaces, progress: Progress | None = None) -> None:
        self.workspaces = workspaces
        self.progress = progress

    async def request(
        self,
        ws: WorkspaceConfig,
        revision: str | None,
        dry_run: bool,
        actor: str | None = None,
        trigger: Trigger = Trigger.MANUAL,
    ) -> Ticket:
        outcome = await asyncio.to_thread(
            self.workspaces.sync_now, ws, revision, dry_run, self.progress, actor, trigger
        )
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        done.set_result(outcome)
        return Ticket(ws.id, outcome.run.id, False, done)


class Inline:
    """Blocking calls made where they are (the local CLI has no event loop to keep free)."""

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)
