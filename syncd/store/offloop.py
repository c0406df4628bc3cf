"""Store calls made for the event loop: on a few threads of their own, each with a deadline.

The event loop must never wait on the store: a SQLite write lock held by another process (up to
its busy timeout), or a PostgreSQL server that stopped answering (a frozen host keeps the
connection open, and no client-side timeout ends a query it never answers), would stop every
request the daemon serves, `/healthz` included. A call from the loop runs here instead; the
loop waits for it at most `timeout` seconds, then gets a StoreError and answers (503, or a
fallback). A call still stuck in its thread holds that thread, never the loop: past
`max_waiting` calls in flight, new ones are refused at once rather than queued behind them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from syncd.store.protocol import StoreError

P = ParamSpec("P")
T = TypeVar("T")

THREADS = 4
MAX_WAITING = 64
TIMEOUT = 5.0


class OffLoop:
    def __init__(
        self, threads: int = THREADS, max_waiting: int = MAX_WAITING, timeout: float = TIMEOUT
    ) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store-offloop")
        self.max_waiting, self.timeout = max_waiting, timeout
        self._in_flight = 0
        self._guard = threading.Lock()

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on a store thread; StoreError when it takes longer than the
        deadline, or too many calls are stuck already."""
        return await self.within(self.timeout, fn, *args, **kwargs)

    async def within(
        self, timeout: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run` with a deadline of its own (a probe answers sooner than a write)."""
        return await self.wait(self.start(fn, *args, **kwargs), timeout)

    def start(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """`fn(*args, **kwargs)` on a store thread, not waited for: for a caller that must
        order a later call after this one even when it stopped waiting for it."""
        with self._guard:
            if self._in_flight >= self.max_waiting:
                raise StoreError(
                    f"the store is not answering: {self._in_flight} calls are waiting on it"
                )
            self._in_flight += 1
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    async def wait(self, future: Future[T], timeout: float | None = None) -> T:
        """The result of a started call; StoreError past the deadline (the call goes on)."""
        deadline = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), deadline)
        except TimeoutError as e:
            raise StoreError(f"the store did not answer within {deadline:g} s") from e

    def _done(self, _future: object) -> None:
        with self._guard:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self) -> None:
        # Threads stuck on the store are not waited for: the process is stopping.
        self._pool.shutdown(wait=False, cancel_futures=True)
