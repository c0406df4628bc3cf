"""The console's live streams without a server: their places (per session and in all) and the
one shared look at the store that every open stream reads from."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import cast

import pytest

from syncd.app import Parts
from syncd.config import Config
from syncd.http.console import streams
from syncd.http.console.streams import Feed, SessionFull, Streams, TooManyStreams, stream
from syncd.store.offloop import OffLoop
from tests.support.fakes import config

WAIT = 10.0


class _Every:
    """Every workspace id: a visitor who may read them all."""

    def __contains__(self, ws_id: object) -> bool:
        return True


def everything() -> _Every:
    return _Every()


def signed_in() -> bool:
    return True


def test_a_session_past_its_limit_drops_its_oldest_stream() -> None:
    places = Streams(per_session=2, total=10)
    first, second = places.open("a", False), places.open("a", False)
    other = places.open("b", False)
    third = places.open("a", False)
    assert first.dropped and first.wake.is_set()
    assert not (second.dropped or third.dropped or other.dropped)
    assert places.count == 3
    places.close(first)  # the dropped stream ends later and closes: its place is already gone
    assert places.count == 3


def test_a_returning_stream_never_drops_another() -> None:
    places = Streams(per_session=2, total=10)
    first, second = places.open("a", False), places.open("a", False)
    with pytest.raises(SessionFull):
        places.open("a", True)
    assert not (first.dropped or second.dropped)
    places.close(first)  # a tab was closed: the one coming back finds a place
    assert not places.open("a", True).dropped
    assert places.count == 2


def test_past_the_total_a_new_stream_is_refused_with_a_retry() -> None:
    places = Streams(per_session=2, total=4)
    held = [places.open("a", False), places.open("a", False), places.open("b", False)]
    places.open("c", False)
    with pytest.raises(TooManyStreams) as refused:
        places.open("d", False)
    assert refused.value.retry_after == streams.RETRY_AFTER_SECONDS
    # A full session still replaces its own oldest: that frees the place the new one takes.
    replaced = places.open("a", False)
    assert held[0].dropped and not replaced.dropped and places.count == 4
    places.close(held[2])
    places.close(held[2])  # twice is harmless
    assert places.count == 3
    places.open("d", False)


# -- the shared feed -------------------------------------------------------------------------


@dataclass
class World:
    """What the feed and the streams read of the app; each look at the store is counted and
    moves the workspace's last run on, so that every look has news."""

    config: Config
    closing: bool = False
    stopping: bool = False
    reads: int = 0
    seen_by: list[int] = field(default_factory=list)
    store_calls: OffLoop = field(default_factory=OffLoop)

    @property
    def workspaces(self) -> World:
        return self

    def overviews(self, chosen: list[object]) -> list[dict[str, object]]:
        self.reads += 1
        run = {"id": f"run-{self.reads}", "result": "succeeded", "started_at": 1.0e9}
        return [
            {
                "id": "w",
                "name": "w",
                "mode": "manual",
                "status": "Synced",
                "source": {"url": "https://git.example.com/a/b.git"},
                "last_run": run,
            }
        ]


def world() -> World:
    return World(config())


async def read_runs(
    parts: Parts, feed: Feed, places: Streams, session: str, runs: int
) -> list[str]:
    """The last-run ids one stream sends, until it has seen `runs` of them."""
    ids: list[str] = []
    body = stream(parts, feed, places.open(session, False), signed_in, None, everything)
    # stream() is an async generator (it is annotated as the AsyncIterator it is used as).
    assert isinstance(body, AsyncGenerator)
    async for chunk in body:
        for line in chunk.splitlines():
            if line.startswith("data: "):
                ids.append(json.loads(line[6:])["last_run_id"])
        if len(ids) >= runs:
            await body.aclose()
            break
    return ids


def test_many_streams_share_one_look_at_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "EVENT_INTERVAL", 0.01)
    state = world()
    parts = cast(Parts, state)
    feed, places = Feed(parts), Streams(per_session=50, total=50)

    async def main() -> list[list[str]]:
        readers = [read_runs(parts, feed, places, "s", 3) for _ in range(40)]
        return await asyncio.wait_for(asyncio.gather(*readers), WAIT)

    seen = asyncio.run(main())
    assert all(len(ids) >= 3 for ids in seen)
    # Forty streams that each saw three looks' news: had each looked for itself, 120 reads.
    assert state.reads <= 8, f"{state.reads} reads of the store for 40 streams"


def test_a_stopping_daemon_ends_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "EVENT_INTERVAL", 0.05)
    state = world()
    parts = cast(Parts, state)
    feed, places = Feed(parts), Streams(per_session=10, total=10)

    async def drain(session: str) -> int:
        chunks = 0
        async for _ in stream(
            parts, feed, places.open(session, False), signed_in, None, everything
        ):
            chunks += 1
        return chunks

    async def main() -> list[int]:
        readers = asyncio.gather(*(drain(f"s{i}") for i in range(5)))
        while state.reads < 2:
            await asyncio.sleep(0.01)
        state.closing = True
        return await asyncio.wait_for(readers, WAIT)

    assert all(chunks >= 2 for chunks in asyncio.run(main()))  # the opening, then rows


def test_a_dropped_stream_says_so_and_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "EVENT_INTERVAL", 0.05)
    parts = cast(Parts, world())
    feed, places = Feed(parts), Streams(per_session=1, total=10)

    async def main() -> list[str]:
        chunks: list[str] = []
        oldest = stream(parts, feed, places.open("s", False), signed_in, None, everything)
        chunks.append(await anext(oldest))  # the opening
        chunks.append(await anext(oldest))  # the rows
        places.open("s", False)  # a newer page of the same session
        chunks.extend([chunk async for chunk in oldest])
        return chunks

    chunks = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert chunks[0] == "retry: 2000\nid: 1\n\n"
    assert chunks[-1] == streams.DROPPED
