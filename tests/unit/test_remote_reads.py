"""Reads that talk to the remote: their own threads, refused at once past the bound."""

from __future__ import annotations

import asyncio
import threading

import pytest

from syncd.service.remote_reads import Busy, RemoteReads


def test_past_the_bound_a_read_is_refused_and_a_slot_frees_when_its_thread_ends() -> None:
    reads = RemoteReads(2)
    release = threading.Event()

    async def main() -> None:
        slow = [asyncio.create_task(reads.run(release.wait, 5)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy) as refused:
            await reads.run(lambda: "fast")
        assert refused.value.retry_after > 0
        # A caller that stops waiting does not free the slot: its thread still runs.
        slow[0].cancel()
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await reads.run(lambda: "fast")
        release.set()
        assert await slow[1] is True
        await asyncio.sleep(0.05)
        assert await reads.run(lambda: "fast") == "fast"

    try:
        asyncio.run(main())
    finally:
        reads.close()
