"""The merge rule, one table of cases, two implementations: the Python rule
(`syncd.runs.merge.merge`, which the in-process queue follows) and the PostgreSQL queue
(`PostgresCoordinator.submit`), each case on a workspace of its own in one fresh database.
Where no PostgreSQL server answers, the PostgreSQL half skips with one line."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from syncd.core.model import Trigger
from syncd.runs.merge import FULL, MAX_QUEUED_PER_WORKSPACE, QUEUE, Join, Placement, Terms, merge
from syncd.runs.replicas import Submitted
from syncd.runs.replicas.postgres import PostgresCoordinator
from syncd.store.postgres import PostgresStore
from tests.support import postgres

WEBHOOK, POLL, MANUAL = Trigger.WEBHOOK, Trigger.POLL, Trigger.MANUAL
PIN, OTHER = "a" * 40, "b" * 40


@dataclass(frozen=True)
class Case:
    id: str
    waiting: tuple[Terms, ...]  # oldest first; no two of one kind (they would have merged)
    new: Terms
    expected: Placement
    # In flight (claimed, or the head of the in-process queue): never passed to the rule,
    # which only ever sees what waits; PostgreSQL must leave it out on its own.
    running: Terms | None = None


FOUR_KINDS = (Terms(WEBHOOK), Terms(MANUAL, PIN), Terms(MANUAL, OTHER), Terms(MANUAL, None, True))

CASES = [
    Case("nothing waits: queued", (), Terms(WEBHOOK), QUEUE),
    Case(
        "same kind, same head: joined, head kept",
        (Terms(WEBHOOK, head="h1"),),
        Terms(WEBHOOK, head="h1"),
        Join(0, Terms(WEBHOOK, head="h1")),
    ),
    Case(
        "same kind, another head: joined, head forgotten",
        (Terms(WEBHOOK, head="h1"),),
        Terms(WEBHOOK, head="h2"),
        Join(0, Terms(WEBHOOK)),
    ),
    Case(
        "a head told to a request told none: forgotten",
        (Terms(WEBHOOK),),
        Terms(POLL, head="h1"),
        Join(0, Terms(WEBHOOK)),
    ),
    Case(
        "manual upgrades a queued automatic request",
        (Terms(POLL, head="h1"),),
        Terms(MANUAL, head="h1"),
        Join(0, Terms(MANUAL, head="h1")),
    ),
    Case(
        "an automatic request keeps a queued manual one manual",
        (Terms(MANUAL),),
        Terms(POLL),
        Join(0, Terms(MANUAL)),
    ),
    Case("the first trigger is kept", (Terms(POLL),), Terms(WEBHOOK), Join(0, Terms(POLL))),
    Case(
        "a person joining a webhook's request makes the run theirs",
        (Terms(WEBHOOK),),
        Terms(MANUAL, actor="ann"),
        Join(0, Terms(MANUAL, actor="ann")),
    ),
    Case(
        "a webhook joining a person's request keeps it theirs",
        (Terms(MANUAL, actor="ann"),),
        Terms(WEBHOOK),
        Join(0, Terms(MANUAL, actor="ann")),
    ),
    Case(
        "the newer person asking is the one named",
        (Terms(MANUAL, actor="ann"),),
        Terms(MANUAL, actor="bob"),
        Join(0, Terms(MANUAL, actor="bob")),
    ),
    Case("a pinned revision waits apart", (Terms(WEBHOOK),), Terms(MANUAL, PIN), QUEUE),
    Case(
        "the same pinned revision joins",
        (Terms(WEBHOOK), Terms(MANUAL, PIN)),
        Terms(MANUAL, PIN),
        Join(1, Terms(MANUAL, PIN)),
    ),
    Case("another pinned revision waits apart", (Terms(MANUAL, PIN),), Terms(MANUAL, OTHER), QUEUE),
    Case("a dry run waits apart", (Terms(WEBHOOK),), Terms(MANUAL, None, True), QUEUE),
    Case(
        "a dry run joins a dry run",
        (Terms(WEBHOOK), Terms(MANUAL, None, True)),
        Terms(POLL, None, True),
        Join(1, Terms(MANUAL, None, True)),
    ),
    Case(
        "a pinned dry run is not a pinned run",
        (Terms(MANUAL, PIN, True),),
        Terms(MANUAL, PIN),
        QUEUE,
    ),
    Case("a new kind past the bound: full", FOUR_KINDS, Terms(MANUAL, "c" * 40), FULL),
    Case(
        "a known kind joins even when full",
        FOUR_KINDS,
        Terms(MANUAL, OTHER),
        Join(2, Terms(MANUAL, OTHER)),
    ),
    Case(
        "the run in flight is never joined",
        (),
        Terms(WEBHOOK, head="h1"),
        QUEUE,
        running=Terms(WEBHOOK, head="h1"),
    ),
    Case(
        "behind the run in flight, the waiting one is joined",
        (Terms(WEBHOOK),),
        Terms(MANUAL),
        Join(0, Terms(MANUAL)),
        running=Terms(WEBHOOK),
    ),
]
IDS = [c.id for c in CASES]


def test_the_table_covers_the_bound() -> None:
    assert len(FOUR_KINDS) == MAX_QUEUED_PER_WORKSPACE


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_rule(case: Case) -> None:
    assert merge(case.waiting, case.new) == case.expected


@pytest.fixture(scope="module")
def store() -> Iterator[PostgresStore]:
    postgres.require()
    with postgres.fresh_database() as url:
        s = PostgresStore(url)
        yield s
        s.close()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_postgres_follows_the_rule(case: Case, store: PostgresStore) -> None:
    assert postgres_placement(store, f"ws-{IDS.index(case.id)}", case) == case.expected


def postgres_placement(store: PostgresStore, ws: str, case: Case) -> Placement:
    """Build the case's queue in the database through the coordinator, submit the new
    request, and read back where it went."""
    c = PostgresCoordinator(store.conninfo, store.where, store.clean)

    def submit(terms: Terms, run_id: str) -> Submitted | None:
        return c.submit(
            ws,
            terms.trigger,
            terms.revision,
            terms.dry_run,
            terms.head,
            run_id,
            actor=terms.actor,
        )

    async def claim_running() -> None:
        assert await c.acquire(ws)
        claimed = await c.claim(ws)
        assert claimed is not None and claimed.run_id == "running"
        await c.release(ws)

    try:
        if case.running is not None:
            assert submit(case.running, "running") == Submitted("running", False)
            asyncio.run(claim_running())
        ids = [f"waiting-{i}" for i in range(len(case.waiting))]
        for run_id, terms in zip(ids, case.waiting, strict=True):
            assert submit(terms, run_id) == Submitted(run_id, False)
        done = submit(case.new, "new")
        if done is None:
            assert terms_of(store, ws, "new") is None
            return FULL
        if not done.coalesced:
            assert terms_of(store, ws, "new") == case.new
            return QUEUE
        joined = terms_of(store, ws, done.run_id)
        assert joined is not None
        return Join(ids.index(done.run_id), joined)
    finally:
        asyncio.run(c.stop())


def terms_of(store: PostgresStore, ws: str, run_id: str) -> Terms | None:
    """A request's terms as its row holds them."""
    with psycopg.connect(store.conninfo) as conn:
        r = conn.execute(
            "SELECT trigger, revision, dry_run, head, actor FROM sync_requests"
            " WHERE workspace = %s AND run_id = %s",
            (ws, run_id),
        ).fetchone()
    return None if r is None else Terms(Trigger(r[0]), r[1], bool(r[2]), r[3], r[4])


def test_a_claim_between_the_read_and_the_join_takes_the_joined_row(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica claims the waiting webhook request while another is joining a manual request
    to it (after its read of the waiting rows, before its UPDATE). The claim must wait and run
    the joined request (manual), or the person's sync would only plan."""
    from syncd.runs.replicas import pg_requests

    ws = "ws-race"
    writer = PostgresCoordinator(store.conninfo, store.where, store.clean)
    claimer = PostgresCoordinator(store.conninfo, store.where, store.clean)
    claimed: list[Terms] = []

    async def claim() -> None:
        assert await claimer.acquire(ws)
        got = await claimer.claim(ws)
        assert got is not None
        claimed.append(Terms(got.trigger, got.revision, got.dry_run, got.head, got.actor))
        await claimer.release(ws)

    def claim_in_between(waiting: list[Terms], new: Terms, bound: int) -> Placement:
        racer = threading.Thread(target=lambda: asyncio.run(claim()), daemon=True)
        racer.start()
        racer.join(1.0)  # with the rows locked, the claim waits for this transaction
        return merge(waiting, new, bound)

    try:
        assert writer.submit(ws, WEBHOOK, None, False, None, "hook") == Submitted("hook", False)
        monkeypatch.setattr(pg_requests, "merge", claim_in_between)
        done = writer.submit(ws, MANUAL, None, False, None, "person", actor="ann")
        assert done == Submitted("hook", True)
        deadline = time.monotonic() + 10
        while not claimed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert claimed == [Terms(MANUAL, actor="ann")], claimed
    finally:
        asyncio.run(writer.stop())
        asyncio.run(claimer.stop())
