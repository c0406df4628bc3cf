"""The replicas' coordination on a real PostgreSQL: durable, coalesced requests; one holder per
workspace; takeover when a holder's session ends; one poller per remote per cycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from syncd.core.model import Trigger
from syncd.runs.replicas.postgres import PostgresCoordinator
from syncd.store.postgres import PostgresStore
from tests.support import postgres


@pytest.fixture
def store() -> Iterator[PostgresStore]:
    postgres.require()
    with postgres.fresh_database() as url:
        s = PostgresStore(url)
        yield s
        s.close()


def coordinator(store: PostgresStore) -> PostgresCoordinator:
    return PostgresCoordinator(store.conninfo, store.where, store.clean)


def test_requests_coalesce_across_replicas_and_are_claimed_once(store: PostgresStore) -> None:
    async def scenario() -> None:
        a, b = coordinator(store), coordinator(store)
        first = a.submit("ws", Trigger.WEBHOOK, None, False, "h1", "run-1")
        joined = b.submit("ws", Trigger.MANUAL, None, False, "h1", "run-2")
        assert first is not None and not first.coalesced
        assert joined is not None and joined.coalesced and joined.run_id == "run-1"
        pinned = b.submit("ws", Trigger.MANUAL, "abc", False, None, "run-3")
        assert pinned is not None and not pinned.coalesced
        assert await a.pending() == ["ws"]
        assert await a.acquire("ws") is True
        assert await b.acquire("ws") is False  # one holder at a time
        claimed = await a.claim("ws")
        assert claimed is not None and claimed.run_id == "run-1"
        assert claimed.trigger is Trigger.MANUAL  # a manual request merged in applies
        # The claimed request is in flight: a new one waits behind it, not merged into it.
        after = b.submit("ws", Trigger.WEBHOOK, None, False, "h2", "run-4")
        assert after is not None and not after.coalesced
        # Four kinds waiting at most.
        for i in range(2):
            assert b.submit("ws", Trigger.MANUAL, f"r{i}", False, None, f"x{i}") is not None
        assert b.submit("ws", Trigger.MANUAL, "r9", False, None, "x9") is None
        await a.finish(claimed)
        await a.release("ws")
        assert await b.acquire("ws") is True
        nxt = await b.claim("ws")
        assert nxt is not None and nxt.run_id == "run-3" and nxt.revision == "abc"
        await a.stop()
        await b.stop()

    asyncio.run(scenario())


def test_a_holder_that_goes_is_taken_over(store: PostgresStore) -> None:
    async def scenario() -> None:
        a, b = coordinator(store), coordinator(store)
        for c in (a, b):
            await c.start(lambda: None, lambda run_id: None)
        assert b.alive() == 2  # b's first heartbeat, after a's
        a.submit("ws", Trigger.WEBHOOK, None, False, None, "run-1")
        assert await a.acquire("ws")
        claimed = await a.claim("ws")
        assert claimed is not None and not claimed.taken_over
        await a.stop()  # a replica that stops frees what it holds before stop returns
        assert await b.acquire("ws")
        again = await b.claim("ws")
        assert again is not None and again.run_id == "run-1" and again.taken_over
        listed = await b.replicas()
        mine = [r for r in listed if r.this]
        assert len(mine) == 1 and mine[0].holds == ("ws",)
        assert [r.alive for r in listed if not r.this] == [False]
        # syncd_replicas_alive: counted at each heartbeat, a stopped replica no longer.
        await b._beat()
        assert b.alive() == 1
        await b.stop()

    asyncio.run(scenario())


def test_a_holder_whose_session_ends_is_taken_over(store: PostgresStore) -> None:
    """As when its process is killed: the server ends the session, and with it the lock."""

    async def scenario() -> None:
        a, b = coordinator(store), coordinator(store)
        a.submit("ws", Trigger.WEBHOOK, None, False, None, "run-1")
        assert await a.acquire("ws")
        assert await a.claim("ws") is not None
        pid = (await a._query("SELECT pg_backend_pid()"))[0][0]
        await b._query("SELECT pg_terminate_backend(%s)", (pid,))
        # The server frees the lock when the backend has gone, a moment after it was told to.
        deadline = time.monotonic() + 10
        while not await b.acquire("ws"):
            assert time.monotonic() < deadline, "the ended session's lock was never freed"
            await asyncio.sleep(0.05)
        again = await b.claim("ws")
        assert again is not None and again.run_id == "run-1" and again.taken_over
        await a.stop()
        await b.stop()

    asyncio.run(scenario())


def test_a_remote_is_polled_by_one_replica_per_cycle(store: PostgresStore) -> None:
    async def scenario() -> None:
        a, b = coordinator(store), coordinator(store)
        assert await a.poll_turn("remote", 0.5) is True
        assert await b.poll_turn("remote", 0.5) is False
        assert await a.poll_turn("remote", 0.5) is False
        await asyncio.sleep(0.45)
        turns = [await b.poll_turn("remote", 0.5), await a.poll_turn("remote", 0.5)]
        assert turns == [True, False]
        await a.stop()
        await b.stop()

    asyncio.run(scenario())


def test_a_request_after_a_delay_is_not_due_before(store: PostgresStore) -> None:
    async def scenario() -> None:
        a = coordinator(store)
        a.submit("ws", Trigger.DRIFT, None, False, None, "run-1", delay=0.4)
        assert await a.pending() == []
        await asyncio.sleep(0.5)
        assert await a.pending() == ["ws"]
        await a.stop()

    asyncio.run(scenario())


def test_a_delayed_request_joined_by_one_due_now_is_due_now(store: PostgresStore) -> None:
    """The merge rule (`syncd.runs.merge`): the joined request is due at the earlier time."""

    async def scenario() -> None:
        a = coordinator(store)
        a.submit("ws", Trigger.DRIFT, None, False, None, "run-1", delay=30)
        assert await a.pending() == []
        joined = a.submit("ws", Trigger.WEBHOOK, None, False, None, "run-2")
        assert joined is not None and joined.coalesced and joined.run_id == "run-1"
        assert await a.pending() == ["ws"]
        # ... and not put off again by a later one that is delayed.
        a.submit("ws", Trigger.DRIFT, None, False, None, "run-3", delay=30)
        assert await a.pending() == ["ws"]
        await a.stop()

    asyncio.run(scenario())
