"""Throttled guessing and ended sessions, as pure objects: the sliding window per address, how
addresses are keyed, the bounds on memory, the summary line; the list of signed-out sessions."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from syncd.http.console.ended import EndedSessions, SharedEnded
from syncd.http.throttle import Throttle, client_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sliding_window_of_failures_per_address() -> None:
    clock = Clock()
    throttle = Throttle(limit=3, window=60.0, clock=clock)
    for _ in range(2):
        throttle.failed("203.0.113.1")
        clock.now += 10
    assert throttle.retry_after("203.0.113.1") is None  # 2 of 3
    throttle.failed("203.0.113.1")  # at 1020: failures at 1000, 1010, 1020
    assert throttle.retry_after("203.0.113.1") == 60 - 20
    assert throttle.retry_after("203.0.113.2") is None  # another address is not touched
    clock.now = 1060  # the first failure leaves the window: one more try
    assert throttle.retry_after("203.0.113.1") is None
    throttle.failed("203.0.113.1")
    assert throttle.retry_after("203.0.113.1") == 10  # until 1010 leaves it
    clock.now = 1200  # all of them out: forgotten
    assert throttle.retry_after("203.0.113.1") is None
    assert throttle.tracked == 0


def test_the_number_of_addresses_is_bounded_and_the_oldest_go_first() -> None:
    clock = Clock()
    throttle = Throttle(limit=3, window=60.0, max_addresses=100, clock=clock)
    for _ in range(3):
        throttle.failed("203.0.113.1")
    assert throttle.retry_after("203.0.113.1") == 60
    for i in range(500):
        throttle.failed(f"198.51.{i // 250}.{i % 250}")
    assert throttle.tracked == 100
    assert throttle.retry_after("203.0.113.1") is None  # forgotten with the oldest


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("203.0.113.7", 5000), "203.0.113.7"),
        (("2001:db8:1:2:3:4:5:6", 1), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:ffff::1", 1), "2001:db8:1:2::/64"),  # one /64, one count
        (("::ffff:203.0.113.7", 1), "203.0.113.7"),
        (("testclient", 50000), "testclient"),
        (None, "unknown"),
    ],
)
def test_addresses_are_keyed_ipv6_by_their_64(client: tuple[str, int] | None, key: str) -> None:
    assert client_address(client) == key


def test_one_summary_line_per_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="syncd.auth")

    async def flood() -> None:
        throttle = Throttle(limit=2, window=60.0, summary_every=0.2)
        for i in range(50):
            address = "203.0.113.9" if i % 5 else f"198.51.100.{i}"
            if throttle.retry_after(address) is None:
                throttle.failed(address)
        await asyncio.sleep(0.4)

    asyncio.run(flood())
    (line,) = [r for r in caplog.records if r.name == "syncd.auth"]
    summary = line.syncd_fields  # type: ignore[attr-defined]
    assert summary["failed"] == 12 and summary["refused_429"] == 38
    assert summary["addresses"] == 11 and summary["throttled"] == 1
    assert summary["top_address"] == "203.0.113.9" and summary["top_failed"] == 2


def test_ended_sessions_are_bounded_and_leave_when_they_would_have_expired() -> None:
    ended = EndedSessions(max_ended=3)
    for i in range(5):
        ended.end(f"s{i}", 2000.0 + i, now=1000.0)
    assert len(ended) == 3 and not ended.ended("s0") and ended.ended("s4")
    ended.end("late", 1500.0, now=1001.0)  # the soonest to expire goes first, even a new one
    assert not ended.ended("late")
    shared = json.loads(ended.dump(now=1001.0))
    assert set(shared) == {"s2", "s3", "s4"}
    other = EndedSessions()
    other.merge(ended.dump(now=1001.0), now=1001.0)
    other.merge('{"bad": "x", "old": 10, "s9": 3000}', now=1001.0)
    other.merge("not json", now=1001.0)
    assert other.ended("s3") and other.ended("s9") and not other.ended("old")
    other.end("s9", 1002.0, now=1001.0)  # never shortened
    other.merge(None, now=2500.0)
    assert not other.ended("s3") and other.ended("s9")


def test_a_sign_out_is_shared_through_the_store_and_read_back_by_another_process() -> None:
    meta: dict[str, str] = {}
    clock = Clock()

    async def read() -> str | None:
        return meta.get("ended")

    async def write(text: str) -> None:
        meta["ended"] = text

    async def scenario() -> None:
        here = SharedEnded(read, write, lambda: True, clock=clock, every=2.0)
        there = SharedEnded(read, write, lambda: True, clock=clock, every=2.0)
        await there.refresh()  # read once: nothing yet
        await here.end("sid-1", clock.now + 3600)
        assert here.ended("sid-1") and "sid-1" in meta["ended"]
        await there.refresh()  # not due yet: its own list stands
        assert not there.ended("sid-1")
        clock.now += 2
        await there.refresh()
        assert there.ended("sid-1")
        # Not shared (no configured key): memory only.
        alone = SharedEnded(read, write, lambda: False, clock=clock)
        await alone.end("sid-2", clock.now + 3600)
        assert alone.ended("sid-2") and "sid-2" not in meta["ended"]

    asyncio.run(scenario())


def test_a_store_that_fails_leaves_the_sign_out_in_force_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def read() -> str | None:
        raise OSError("the store is down")

    async def write(text: str) -> None:
        raise OSError("the store is down")

    async def scenario() -> None:
        here = SharedEnded(read, write, lambda: True)
        await here.refresh()
        await here.end("sid-1", 10**10)
        assert here.ended("sid-1")

    asyncio.run(scenario())
    assert any("not written to the store" in r.getMessage() for r in caplog.records)
