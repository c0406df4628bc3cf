"""Who changed what: one entry per action, wherever it came from (the API, the console, the
local CLI), written when the action ends: a line on its own logger (so that it can be routed or
kept apart) and a row in the store (so that "who rolled prod back on Friday?" has an answer
after the logs rotate, and on every replica). The token's name, never its value.

`record` makes the entry and writes the line; `AuditLog.write` stores it. The store write runs
off the event loop (`calls`), and a store that fails it never fails the action: the line is
written already, the failure is logged at error and counted. Entries that are not a
workspace's action (sign-in, sign-out, a config reload) go through `AuditLog` too.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from syncd.core.access import EVERYTHING, Access
from syncd.core.audit_model import AuditEntry
from syncd.ops.logs import fields, scrub
from syncd.service.answers import verdict
from syncd.store import Store

audit = logging.getLogger("syncd.audit")
log = logging.getLogger("syncd.service.audit")

T = TypeVar("T")
Via = Literal["api", "console", "local"]
# Who reloads the config when no person asked (a signal, the config file watched).
DAEMON = "syncd"


@dataclass(frozen=True)
class Actor:
    """Who acts: an API token's name, a console user (a token's name, or `oidc:<subject>`), or
    `local:<os user>`; and what they may do to which workspaces (the local CLI: anything, as
    the host's user can read the config and the store anyway)."""

    name: str
    via: Via
    access: Access = EVERYTHING

    @classmethod
    def local(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a container's numeric user)
            user = "unknown"
        return cls(f"local:{user}", "local")


def record(
    actor: Actor,
    action: str,
    workspace: str | None,
    *,
    step: str | None = None,
    revision: str | None = None,
    status: int,
    error: BaseException | None = None,
    detail: str | None = None,
) -> AuditEntry:
    """The audit line of one action, how it ended as the status its caller was answered;
    returns the entry to store (its `detail`: the error, else what the caller noted)."""
    said = _error_text(error)
    entry = build(
        actor, action, workspace, step=step, revision=revision, status=status, detail=said or detail
    )
    _line(entry, error=said)
    return entry


def build(
    actor: Actor,
    action: str,
    workspace: str | None,
    *,
    step: str | None = None,
    revision: str | None = None,
    status: int,
    detail: str | None = None,
) -> AuditEntry:
    """An action's entry, as `record` makes it, without its line: one stored with the change
    it describes, in the change's own transaction."""
    return AuditEntry(
        at=time.time(),
        actor=actor.name,
        via=actor.via,
        action=action,
        workspace=workspace,
        revision=revision,
        step=step,
        result=verdict(status),
        status=status,
        detail=None if detail is None else scrub(detail),
    )


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, asyncio.CancelledError):
        return "cancelled: the caller hung up, or syncd is stopping"
    return str(error) or type(error).__name__


def _line(entry: AuditEntry, error: str | None = None) -> None:
    audit.log(
        logging.INFO if entry.status < 400 else logging.WARNING,
        "audit",
        extra=fields(
            token=entry.actor,
            via=entry.via,
            action=entry.action,
            workspace=entry.workspace,
            step=entry.step,
            revision=entry.revision,
            result=entry.result,
            status=entry.status,
            error=error,
            detail=entry.detail if error is None else None,
        ),
    )


class Calls(Protocol):
    """Where blocking store calls run for the event loop (`store.offloop.OffLoop`), or in place
    (the local CLI's `Inline`)."""

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class AuditObserver(Protocol):
    """What is counted of the audit (`syncd.ops.metrics.Metrics`)."""

    def audit_written(self, action: str) -> None: ...

    def audit_write_failed(self) -> None: ...


# How long an action's answer waits for its audit entry to be stored (it is, nearly always, in
# a millisecond; a frozen store must not make every action answer as slowly as it).
WRITE_WAIT = 2.0


class AuditLog:
    """The store's audit, written for the event loop. `observer` counts what is written (set by
    the daemon: its metrics); `failures` counts the entries the store did not take."""

    def __init__(self, store: Store, calls: Calls, observer: AuditObserver | None = None) -> None:
        self.store, self.calls, self.observer = store, calls, observer
        self.failures = 0
        # Writes still going on after their caller was cancelled: referenced until done.
        self._pending: set[asyncio.Future[None]] = set()

    def written(self, entry: AuditEntry) -> None:
        """An entry the store took with its change (see `build`): counted as `write` counts."""
        if self.observer is not None:
            self.observer.audit_written(entry.action)

    async def write(self, entry: AuditEntry) -> None:
        """Store the entry; never raises but for the caller's own cancellation, and even then
        the write goes on to its end. A store that does not answer within WRITE_WAIT (frozen,
        locked) does not hold up the caller's answer: the write goes on without it, until the
        store's own deadline (then logged and counted as not stored)."""
        task = asyncio.ensure_future(self._store(entry))
        try:
            await asyncio.wait_for(asyncio.shield(task), WRITE_WAIT)
        except TimeoutError:
            self._keep(task)
        except asyncio.CancelledError:
            self._keep(task)
            raise

    def _keep(self, task: asyncio.Future[None]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store(self, entry: AuditEntry) -> None:
        try:
            await self.calls.run(self.store.record_audit, entry)
        except Exception as e:  # the store's, or its deadline: the action stands regardless
            self.failures += 1
            if self.observer is not None:
                self.observer.audit_write_failed()
            log.error(
                "audit entry not stored",
                extra=fields(action=entry.action, workspace=entry.workspace, error=str(e)),
            )
            return
        if self.observer is not None:
            self.observer.audit_written(entry.action)

    # -- entries that are not a workspace's action ------------------------------------------

    async def sign_in(self, actor: Actor, ok: bool, detail: str | None = None) -> None:
        """A console sign-in (`ok`) or a refused one (401), e.g. `detail`: "OIDC: bad nonce".
        A refused one's actor is who they claimed to be (a token's name is not known then:
        say `unknown`)."""
        await self._other(actor.name, actor.via, "sign_in", 200 if ok else 401, detail)

    async def sign_out(self, actor: Actor) -> None:
        await self._other(actor.name, actor.via, "sign_out", 200, None)

    async def config_reload(
        self, result: Literal["ok", "error"], detail: str | None = None, actor: Actor | None = None
    ) -> None:
        """A config reload: `ok`, or `error` with why (the config refused: the old one stays).
        Without an actor, the daemon reloaded by itself (a signal, the file watched)."""
        name, via = (DAEMON, "daemon") if actor is None else (actor.name, actor.via)
        await self._other(name, via, "config_reload", 200 if result == "ok" else 500, detail)

    async def _other(
        self, name: str, via: str, action: str, status: int, detail: str | None
    ) -> None:
        entry = AuditEntry(
            at=time.time(),
            actor=name,
            via=via,
            action=action,
            result=verdict(status),
            status=status,
            detail=None if detail is None else scrub(detail),
        )
        _line(entry)
        await self.write(entry)
