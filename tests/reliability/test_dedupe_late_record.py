"""A webhook delivery refused (503) is taken when the provider sends it again, even when its
dedupe record in the store came in after its deadline.

The dedupe store call runs on the off-loop pool with a deadline. When `remember_delivery`
outlives it, the intake falls back to memory; if the sync request is then refused (503),
`release` must forget the delivery after the late record, not before it, or the provider's
resend of the refused push would be dropped as a duplicate and the push lost.
"""

from __future__ import annotations

import asyncio
import threading
import time

from syncd.service.deliveries import DeliveryLog
from syncd.store.offloop import OffLoop


class SlowRemember:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.slow = True

    def remember_delivery(self, provider: str, delivery: str, now: float) -> bool:
        if self.slow:  # a store slow for a moment: past the off-loop deadline
            self.slow = False
            time.sleep(0.3)
        with self.lock:
            new = (provider, delivery) not in self.seen
            self.seen.add((provider, delivery))
            return new

    def forget_delivery(self, provider: str, delivery: str) -> None:
        with self.lock:
            self.seen.discard((provider, delivery))


def test_a_refused_delivery_is_taken_when_it_is_sent_again() -> None:
    async def scenario() -> bool:
        store = SlowRemember()
        log = DeliveryLog(store, offloop=OffLoop(threads=4, timeout=0.1))
        assert await log.claim("github", "d-1")  # new (memory fallback after the deadline)
        await log.release("github", "d-1")  # its sync request was refused: 503
        await asyncio.sleep(0.5)  # the slow remember commits now
        return await log.claim("github", "d-1")  # the provider sends it again

    assert asyncio.run(scenario()), "the redelivery of a refused push was dropped as a duplicate"
