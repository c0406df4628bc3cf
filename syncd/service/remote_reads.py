"""Reads that talk to the git remote (a workspace's diff): bounded, on threads of their own.

A diff asks the remote for the branch head and may fetch; a slow remote holds its thread for as
long as git's timeout. On the shared default pool, forty of them starved every other request
(a plain read of the store waited behind them). Here they get `limit` threads of their own, and
one more than that is refused at once (`Busy`, an HTTP 429 with Retry-After) instead of queueing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from syncd.core.errors import SyncdError
from syncd.core.retry import RETRY_AFTER_SECONDS

P = ParamSpec("P")
T = TypeVar("T")


class Busy(SyncdError):
    """Every slot for remote reads is taken: try again later."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} reads from git remotes are already running (server.max_remote_reads); "
            f"try again in {RETRY_AFTER_SECONDS} s"
        )
        self.limit = limit
        self.retry_after = RETRY_AFTER_SECONDS


class RemoteReads:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="syncd-remote-read")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args)` on a thread of its own; `Busy` when `limit` are already running."""
        if not self._slots.acquire(blocking=False):
            raise Busy(self.limit)
        try:
            future: Future[T] = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._slots.release()
            raise
        # The slot is held until the thread is done, not until the caller stops waiting: a
        # client that hangs up does not free a thread that is still talking to the remote.
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
