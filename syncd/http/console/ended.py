"""Sessions signed out before they expire: refused until then, wherever their cookie is replayed.

A signed cookie cannot be taken back, so Sign out writes its session's id down, with the
session's expiry, and this process refuses it at once. When the console's key is configured
(`console.session_key_*`: cookies then outlive a restart and are good on every replica), the
list is kept in the store as well (meta key `console.ended_sessions`), so that a restart or
another replica refuses the cookie too: each process reads the list back at most every
`REFRESH_EVERY` seconds, before a console request. Without a configured key a cookie dies with
the process that made it, and memory is enough.

The list is bounded: an id leaves it when its session would have expired anyway, and past
`MAX_ENDED` ids (far more sign-outs than one session lifetime sees) the soonest to expire go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.ops.logs import fields

log = logging.getLogger("syncd.console")

KEY = "console.ended_sessions"
MAX_ENDED = 10_000
REFRESH_EVERY = 2.0  # seconds between reads of the shared list
READ_DEADLINE = 1.0  # a request waits at most this long for the store before going on

Read = Callable[[], Awaitable[str | None]]
Write = Callable[[str], Awaitable[None]]


class EndedSessions:
    """Session ids signed out, each with the time its session would have expired."""

    def __init__(self, max_ended: int = MAX_ENDED) -> None:
        self.max_ended = max_ended
        self._until: dict[str, float] = {}

    def ended(self, sid: str) -> bool:
        return sid in self._until

    def end(self, sid: str, expires: float, now: float) -> None:
        self._until[sid] = max(expires, self._until.get(sid, 0.0))
        self._prune(now)

    def merge(self, text: str | None, now: float) -> None:
        """Add the ids of a list as `dump` wrote it; anything malformed in it is skipped."""
        try:
            found = json.loads(text) if text else {}
        except ValueError:
            return
        if not isinstance(found, dict):
            return
        for sid, expires in found.items():
            if isinstance(sid, str) and isinstance(expires, int | float) and expires > now:
                self._until[sid] = max(float(expires), self._until.get(sid, 0.0))
        self._prune(now)

    def dump(self, now: float) -> str:
        self._prune(now)
        return json.dumps({sid: int(until) + 1 for sid, until in self._until.items()})

    def __len__(self) -> int:
        return len(self._until)

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, until in self._until.items() if until <= now]:
            del self._until[sid]
        if len(self._until) > self.max_ended:
            keep = sorted(self._until.items(), key=lambda item: item[1])[-self.max_ended :]
            self._until = dict(keep)


class SharedEnded:
    """The ended sessions of this process, and their copy in the store when `shared()`."""

    def __init__(
        self,
        read: Read,
        write: Write,
        shared: Callable[[], bool],
        clock: Callable[[], float] = time.time,
        every: float = REFRESH_EVERY,
    ) -> None:
        self.sessions = EndedSessions()
        self._read, self._write, self._shared = read, write, shared
        self._clock, self.every = clock, every
        self._read_at: float | None = None
        self._failing = False
        self._lock = asyncio.Lock()

    def ended(self, sid: str) -> bool:
        return self.sessions.ended(sid)

    async def refresh(self) -> None:
        """Read the shared list back when it is due; a store that does not answer within
        `READ_DEADLINE` is tried again at the next due time, and this process's own list
        stands meanwhile."""
        if not self._shared() or not self._due() or self._lock.locked():
            return  # not due, or being read or written: this process's list stands
        async with self._lock:
            self._read_at = self._clock()
            try:
                text = await asyncio.wait_for(self._read(), READ_DEADLINE)
            except Exception as e:  # the store is down or slow: said once, until it answers
                self._problem("could not read the signed-out sessions from the store", e)
                return
            self._failing = False
            self.sessions.merge(text, self._clock())

    async def end(self, sid: str, expires: float) -> None:
        """Sign-out: refused here at once; then written to the store for the others."""
        self.sessions.end(sid, expires, self._clock())
        if not self._shared():
            return
        async with self._lock:
            try:
                self.sessions.merge(await self._read(), self._clock())
                await self._write(self.sessions.dump(self._clock()))
            except Exception as e:  # it still ends here; others refuse it once it expires
                log.warning(
                    "a sign-out was not written to the store: other replicas still take it",
                    extra=fields(error=str(e) or type(e).__name__),
                )

    def _due(self) -> bool:
        return self._read_at is None or self._clock() - self._read_at >= self.every

    def _problem(self, what: str, error: BaseException) -> None:
        if not self._failing:
            log.warning(what, extra=fields(error=str(error) or type(error).__name__))
        self._failing = True


class RefreshFirst:
    """The console's middleware: the shared list read back (when due) before each request."""

    def __init__(self, app: ASGIApp, ended: SharedEnded) -> None:
        self.app, self.ended = app, ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.ended.refresh()
        await self.app(scope, receive, send)
