"""Delivery ids taken lately, so that a redelivered webhook (a push, a pull request) starts
nothing new: kept in the store, shared by replicas and kept across restarts, with a bounded
memory in front. Split from `syncd.service.intake`, which uses it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Protocol

from syncd.store.offloop import OffLoop
from syncd.store.protocol import StoreError

# The intake's logger: these lines were the intake's before the split.
log = logging.getLogger("syncd.intake")


class DeliveryStore(Protocol):
    """The store, as far as delivery dedupe needs it."""

    def remember_delivery(self, provider: str, delivery: str, now: float) -> bool: ...
    def forget_delivery(self, provider: str, delivery: str) -> None: ...


class DeliveryLog:
    """Delivery ids taken lately, so a redelivered webhook starts nothing new.

    With a store, the ids are kept there (one INSERT per new delivery), so that a redelivery
    after a restart is known too; a bounded memory in front answers a redelivery to this
    process without asking the store.
    """

    def __init__(
        self,
        store: DeliveryStore | None = None,
        capacity: int = 10_000,
        ttl: float = 24 * 3600,
        offloop: OffLoop | None = None,
    ) -> None:
        self.store, self.capacity, self.ttl = store, capacity, ttl
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        # A delivery's record in the store that outlived its deadline: a forget of it waits
        # for it, or the late record would drop the provider's resend of a refused delivery.
        self._late: dict[tuple[str, str], Future[bool]] = {}
        # The store is asked off the event loop, with a deadline (see syncd.store.offloop).
        self._offloop = offloop or OffLoop(threads=2)

    async def claim(self, provider: str, delivery: str | None, now: float | None = None) -> bool:
        """Take a delivery: True when it is new, False for a redelivery within the ttl."""
        if not delivery:
            return True
        now = time.time() if now is None else now
        at = self._seen.get((provider, delivery))
        if at is not None and now - at < self.ttl:
            return False
        new = True
        if self.store is not None:
            try:
                record = self._offloop.start(self.store.remember_delivery, provider, delivery, now)
                try:
                    new = await self._offloop.wait(record)
                except StoreError:
                    self._late[(provider, delivery)] = record
                    record.add_done_callback(lambda _: self._late.pop((provider, delivery), None))
                    raise
            except Exception as e:
                # A store that cannot be reached must not refuse webhooks: dedupe falls back to
                # memory, and a redelivery is at worst one more (coalesced) run.
                log.warning("webhook dedupe: the store failed, using memory only: %s", e)
        self._remember(provider, delivery, now)
        return new

    async def release(self, provider: str, delivery: str | None) -> None:
        """Forget a delivery that was refused, so that its redelivery is taken."""
        if not delivery:
            return
        self._seen.pop((provider, delivery), None)
        if self.store is not None:
            try:
                late = self._late.get((provider, delivery))
                if late is not None and not late.done():
                    # Forgotten once the late record is in, however late that is.
                    forget = self.store.forget_delivery
                    late.add_done_callback(
                        lambda _: self._offloop.start(forget, provider, delivery)
                    )
                    return
                await self._offloop.run(self.store.forget_delivery, provider, delivery)
            except Exception as e:
                log.warning("webhook dedupe: the store failed to forget a delivery: %s", e)

    def _remember(self, provider: str, delivery: str, now: float) -> None:
        self._seen[(provider, delivery)] = now
        self._seen.move_to_end((provider, delivery))
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
