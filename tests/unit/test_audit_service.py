"""The audit's writing, over the FakeStore: every action leaves one stored entry and one line,
counted; an action that fails is audited as an error; a store that cannot take the entry never
fails the action (logged at error, counted); sign-ins, sign-outs and reloads are entries too;
secrets are scrubbed from what is stored."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from syncd.core.access import Access
from syncd.core.audit_model import AuditEntry, AuditQuery
from syncd.git import GitSource
from syncd.ops.logs import register_secrets
from syncd.ops.metrics import Metrics
from syncd.service.actions import Actions, Inline, RunsHere
from syncd.service.audit import Actor, AuditLog
from syncd.service.workspaces import Workspaces
from syncd.store import StoreError
from syncd.store.offloop import OffLoop
from syncd.sync.engine import Engine
from tests.support.fakes import FakeGit, FakeStore, config, workspace

WS = workspace("dev-a")
OPS = Actor("ops", "api", Access.of({"read", "sync", "audit"}))


class BrokenSuspend(FakeStore):
    """A store whose suspensions fail (the database went away mid-action)."""

    def set_suspended(self, ws: str, suspended: bool, audit: AuditEntry | None = None) -> None:
        raise StoreError("store: the database does not answer")


def actions(store: FakeStore, tmp_path: Path, metrics: Metrics | None = None) -> Actions:
    cfg = config(WS)
    service = Workspaces(lambda: cfg, store, GitSource(tmp_path), Engine(store, FakeGit()))
    return Actions(service, Inline(), RunsHere(service), observer=metrics)


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def suspend(acts: Actions, actor: Actor = OPS) -> None:
    async with acts.act(actor, "suspend", WS.id) as act:
        await act.suspend()


def test_an_action_leaves_one_entry_and_is_counted(tmp_path: Path) -> None:
    store, metrics = FakeStore(), Metrics()
    asyncio.run(suspend(actions(store, tmp_path, metrics)))
    (entry,) = store.audit_entries(AuditQuery())
    assert (entry.actor, entry.via, entry.action, entry.workspace) == (
        "ops",
        "api",
        "suspend",
        WS.id,
    )
    assert (entry.result, entry.status, entry.detail) == ("ok", 200, None)
    assert counted(metrics, "syncd_audit_entries_total", action="suspend") == 1


def test_a_failed_action_is_audited_as_an_error(tmp_path: Path) -> None:
    store = BrokenSuspend()
    with pytest.raises(StoreError):
        asyncio.run(suspend(actions(store, tmp_path)))
    (entry,) = store.audit_entries(AuditQuery())
    assert (entry.result, entry.status) == ("error", 503)
    assert "does not answer" in (entry.detail or "")


def test_an_unknown_workspace_is_audited_as_refused(tmp_path: Path) -> None:
    store = FakeStore()

    async def nowhere() -> None:
        async with actions(store, tmp_path).act(OPS, "suspend", "nope") as act:
            await act.suspend()

    with pytest.raises(Exception, match="nope"):
        asyncio.run(nowhere())
    (entry,) = store.audit_entries(AuditQuery())
    assert (entry.workspace, entry.result, entry.status) == ("nope", "refused", 404)


def test_a_change_and_its_entry_are_stored_together_or_not_at_all(tmp_path: Path) -> None:
    """A suspend's (and a step edit's) entry goes into the change's own transaction: a store
    that refuses the entry refuses the change, and the action fails (audited as such in the
    line); nothing is suspended without an entry saying who did it."""
    store = FakeStore()
    store.fail_audit = StoreError("store: disk full")
    with pytest.raises(StoreError):
        asyncio.run(suspend(actions(store, tmp_path)))
    assert not store.state(WS.id).suspended


async def export(acts: Actions) -> None:
    """An action whose entry is written after it (its change is a git push, not the store's)."""
    async with acts.act(Actor("ops", "api"), "export", WS.id) as act:  # may do anything
        act.status = 201


def test_a_store_that_cannot_take_the_entry_never_fails_the_action(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, metrics = FakeStore(), Metrics()
    store.fail_audit = StoreError("store: disk full")
    acts = actions(store, tmp_path, metrics)
    with caplog.at_level(logging.INFO):
        asyncio.run(export(acts))  # the action stands: no error reaches its caller
    assert acts.audit.failures == 1
    assert counted(metrics, "syncd_audit_write_failures_total") == 1
    assert counted(metrics, "syncd_audit_entries_total", action="export") == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["audit entry not stored"]
    assert any(r.name == "syncd.audit" for r in caplog.records)  # the line is written anyway


def test_sign_in_sign_out_and_reload_are_entries(tmp_path: Path) -> None:
    store, metrics = FakeStore(), Metrics()
    calls = OffLoop(threads=1)
    log = AuditLog(store, calls, metrics)
    alice = Actor("oidc:alice", "console")
    secret = "s3cret-value-never-stored"
    register_secrets([secret])

    async def go() -> None:
        await log.sign_in(alice, True)
        await log.sign_in(Actor("unknown", "console"), False, f"bad nonce {secret}")
        await log.sign_out(alice)
        await log.config_reload("error", "line 3: unknown key")
        await log.config_reload("ok")

    asyncio.run(go())
    calls.close()
    seen = [
        (e.actor, e.via, e.action, e.result, e.workspace)
        for e in reversed(store.audit_entries(AuditQuery()))
    ]
    assert seen == [
        ("oidc:alice", "console", "sign_in", "ok", None),
        ("unknown", "console", "sign_in", "refused", None),
        ("oidc:alice", "console", "sign_out", "ok", None),
        ("syncd", "daemon", "config_reload", "error", None),
        ("syncd", "daemon", "config_reload", "ok", None),
    ]
    assert all(secret not in str(e) for e in store.audit_entries(AuditQuery()))
    assert counted(metrics, "syncd_audit_entries_total", action="sign_in") == 2


def test_a_cancelled_caller_still_gets_its_entry_stored(tmp_path: Path) -> None:
    """The caller hung up while the entry was being written: the write goes on to its end."""
    store = FakeStore()
    calls = OffLoop(threads=1)
    log = AuditLog(store, calls)
    gate = asyncio.Event()

    async def go() -> None:
        real = store.record_audit

        def slow(entry: object) -> None:
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5)
            real(entry)  # type: ignore[arg-type]

        store.record_audit = slow  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        writer = asyncio.ensure_future(log.sign_out(Actor("ops", "api")))
        await asyncio.sleep(0.01)
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        gate.set()
        for _ in range(200):  # bounded: the write finishes on its thread
            if store.audit_entries(AuditQuery()):
                break
            await asyncio.sleep(0.01)

    asyncio.run(go())
    calls.close()
    assert [e.action for e in store.audit_entries(AuditQuery())] == ["sign_out"]
