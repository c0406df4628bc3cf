"""Writers' leases on PostgreSQL when a writer stalls inside its apply transaction.

1. A writer frozen (SIGSTOP) inside its apply keeps its lease row locked: a take, forced or
   not, waits a moment (lock_timeout) and counts the lease as held, instead of waiting for as
   long as the writer stays frozen (the server ends such a session after its idle-in-transaction
   timeout, and the lease is then taken).
2. A long apply of workspace A (its lease row locked) holds up the renewal of workspace B's
   lease; B's lease expiring so, with nobody taking it, must not refuse B's own apply.
3. A request a replica claimed itself and claims again is no takeover: it must not force the
   lease from a live writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import syncd.store.postgres as pgmod
from syncd.core.model import Trigger
from syncd.store import Fenced, postgres_rows
from syncd.sync.writer_leases import WriterLeases
from tests.integration.test_store_leases import OTHER_WS, WS, apply, content
from tests.support import postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    postgres.require()
    with postgres.fresh_database() as url:
        yield url


def _freeze_inside_apply(
    monkeypatch: pytest.MonkeyPatch, ws: str
) -> tuple[threading.Event, threading.Event]:
    """Make the next apply of `ws` stop right after its fence check, inside its transaction (a
    SIGSTOP there): `inside` is set when it got there, `thaw` lets it go on."""
    inside, thaw = threading.Event(), threading.Event()
    real = postgres_rows.check_base  # what syncd.store.postgres imported as check_base

    def frozen(db: Any, w: str, base: Any) -> None:
        if w == ws and not inside.is_set():
            inside.set()
            thaw.wait(30)
        real(db, w, base)

    monkeypatch.setattr(pgmod, "check_base", frozen)
    return inside, thaw


def test_a_writer_frozen_inside_its_apply_blocks_every_takeover(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = pgmod.PostgresStore(pg_url)
    b = pgmod.PostgresStore(pg_url)
    try:
        lease = a.take_lease(WS, "replica-a", 1.0)
        assert lease is not None
        inside, thaw = _freeze_inside_apply(monkeypatch, WS)
        t = threading.Thread(target=apply, args=(a, {"s": content("1")}, "r1", lease), daemon=True)
        t.start()
        assert inside.wait(10)
        time.sleep(1.5)  # A's lease expired; A is "frozen" with its session alive
        got: list[Any] = []
        taker = threading.Thread(
            target=lambda: got.append(b.take_lease(WS, "replica-b", 15.0, force=True)),
            daemon=True,
        )
        started = time.monotonic()
        taker.start()
        taker.join(5)
        blocked = taker.is_alive()
        thaw.set()
        t.join(10)
        taker.join(10)
        assert not blocked, (
            f"a forced takeover still waited after {time.monotonic() - started:.1f} s on a"
            " frozen writer's lease row (held FOR UPDATE in its apply transaction)"
        )
    finally:
        a.close()
        b.close()


def test_a_long_apply_of_one_workspace_does_not_expire_anothers_lease(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = pgmod.PostgresStore(pg_url)
    leases = WriterLeases(lambda: store, "syncd-one-process", ttl=1.5)
    try:
        inside, thaw = _freeze_inside_apply(monkeypatch, WS)  # A's apply is long (4 s)
        with leases.hold(WS) as la, leases.hold(OTHER_WS) as lb:
            t = threading.Thread(
                target=apply, args=(store, {"s": content("1")}, "ra", la), daemon=True
            )
            t.start()
            assert inside.wait(10)
            time.sleep(4.0)  # A's apply is still going: B's lease is not being renewed
            # Nobody else ever asked for OTHER_WS: its writer must still be able to write.
            b_store = pgmod.PostgresStore(pg_url)
            try:
                # apply() of the test module writes WS; write OTHER_WS via record_run instead
                from syncd.core.model import Run, RunResult, SyncState

                run = Run("rb", OTHER_WS, Trigger.MANUAL, "abc", RunResult.FAILED, 1.0, 2.0)
                try:
                    store.record_run(run, SyncState(OTHER_WS), lb)
                except Fenced as e:
                    pytest.fail(f"workspace B's writer was fenced by A's long apply: {e}")
            finally:
                thaw.set()
                t.join(10)
                b_store.close()
    finally:
        leases.close()
        store.close()


def test_a_replica_reclaiming_its_own_row_does_not_count_as_a_takeover(pg_url: str) -> None:
    """Replica A's run was fenced (e.g. by `syncd sync` that took A's expired lease); its row
    stays claimed by A. When A claims it again, it must not force the lease from the live
    writer that holds it now."""
    import asyncio

    from syncd.runs.replicas.postgres import PostgresCoordinator
    from syncd.store.postgres import PostgresStore

    store = PostgresStore(pg_url)  # migrates the schema

    async def scenario() -> bool:
        coord = PostgresCoordinator(pg_url, "test")
        try:
            await asyncio.to_thread(
                coord.submit, WS, Trigger.WEBHOOK, None, False, None, "run-1", 0.0
            )
            assert await coord.acquire(WS)
            first = await coord.claim(WS)
            assert first is not None and not first.taken_over
            # ... the run is fenced: serving stops, the row stays, the workspace is released
            await coord.release(WS)
            assert await coord.acquire(WS)
            again = await coord.claim(WS)
            assert again is not None and again.run_id == "run-1"
            return again.taken_over
        finally:
            await coord.stop()

    try:
        taken_over = asyncio.run(scenario())
    finally:
        store.close()
    assert not taken_over, "a row this replica claimed itself is treated as taken over: forced"
