"""The scheduler's wake-ups for held workspaces: a workspace held back by a closed change window
or a promotion's soak is synced again, by itself, when its gate opens (no poll or webhook
needed).

One timer per held workspace at most (a new decision replaces it), each at most `MAX_DELAY`
away: one that fires before its time (the wall clock moved, a long delay cut short) is armed
again for what is left instead of running a sync that would be held again. The times are the
engine's clock (unix seconds), which a test drives; `fire` is what a timer calls, and a test
may call it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from syncd.core.times import rfc3339
from syncd.ops.logs import fields

log = logging.getLogger("syncd.scheduler")

MAX_DELAY = 3600.0  # a timer further away than this is cut short and armed again then
MARGIN = 0.5  # fired this much after the opening, so that the gate is surely open by then


class GateTimers:
    def __init__(self, clock: Callable[[], float], wake: Callable[[str], None]) -> None:
        self.clock = clock
        self.wake = wake  # requests the sync of a workspace whose gate opened
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}

    def arm(self, ws_id: str, until: float) -> None:
        """Sync `ws_id` once the engine's clock reaches `until` (replacing its timer)."""
        self.cancel(ws_id)
        delay = min(max(until - self.clock(), 0.0) + MARGIN, MAX_DELAY)
        handle = asyncio.get_running_loop().call_later(delay, self.fire, ws_id)
        self._timers[ws_id] = (until, handle)
        log.info("sync armed", extra=fields(workspace=ws_id, at=rfc3339(until)))

    def until(self, ws_id: str) -> float | None:
        """When the workspace's timer is for (None: it has none)."""
        armed = self._timers.get(ws_id)
        return armed[0] if armed else None

    def fire(self, ws_id: str) -> None:
        """The gate of `ws_id` should be open: sync it, or, too early, wait for what is left."""
        armed = self._timers.pop(ws_id, None)
        if armed is None:
            return
        until, handle = armed
        handle.cancel()  # called by hand (a test) before its time: the loop must not call it
        if self.clock() < until:
            self.arm(ws_id, until)
            return
        self.wake(ws_id)

    def cancel(self, ws_id: str) -> None:
        armed = self._timers.pop(ws_id, None)
        if armed is not None:
            armed[1].cancel()

    def held(self) -> list[str]:
        return list(self._timers)

    def forget(self, known: Collection[str]) -> None:
        """Workspaces gone from the config lose their timers."""
        for ws_id in [w for w in self._timers if w not in known]:
            self.cancel(ws_id)

    def stop(self) -> None:
        for ws_id in list(self._timers):
            self.cancel(ws_id)
