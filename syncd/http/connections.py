"""Bounds on HTTP connections that a slow or hostile client cannot get past.

Each open connection costs a file descriptor, and uvicorn reads a request's head for as long as
the client cares to send it (its keep-alive timeout only runs between requests). So:

- a cap on open connections that keeps room for new clients: at the cap, the connection that
  has waited longest for a request head (a slow client, or an idle keep-alive) is closed to
  make room for the new one, so that slow clients cannot shut out a probe, an API call or a
  webhook, which send their heads at once; only when every connection has a request in flight
  is the new one closed at once. Counts are logged as one summary line per window, never one
  line each;
- a deadline for a request's head: a connection that has not sent a whole head within
  `header_timeout` of opening (or of its last response) is closed. It wraps uvicorn's protocol
  class, whichever it is (h11 or httptools): both keep the request in flight as `cycle`, and both
  call `on_response_complete` when a response is done;
- a limit on a request head's size (`MAX_HEAD_BYTES`): a head that has not ended within it is
  answered 431 and its connection closed, before uvicorn's parser (httptools has no limit of
  its own) keeps it in memory;
- the soft limit on descriptors raised to what the cap needs, where the hard limit allows;
- a log filter that summarises floods of one message (accept errors, bad requests).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from syncd.ops.logs import fields

log = logging.getLogger("syncd.connections")

SUMMARY_EVERY = 10.0
# A request head (request line and headers) larger than this is refused: 431.
MAX_HEAD_BYTES = 64 * 1024
HEAD_END = b"\r\n\r\n"
REFUSED_LINGER = 1.0  # seconds a refused connection is drained before it is closed
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8"
    b"\r\nconnection: close\r\ncontent-length: 46\r\n\r\n"
    b"the request head is over 65536 bytes: refused\n"
)
# Descriptors beyond the connections: the store, git subprocesses and their pipes, threads' files.
SPARE_DESCRIPTORS = 512


class Tally:
    """Counts events, and logs them as at most one line per window."""

    def __init__(self, what: str, every: float = SUMMARY_EVERY) -> None:
        self.what, self.every = what, every
        self.total = 0
        self._pending = 0
        self._flush: asyncio.TimerHandle | None = None

    def add(self) -> None:
        self.total += 1
        self._pending += 1
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.every, self.flush)

    def flush(self) -> None:
        self._flush = None
        if self._pending:
            log.warning(self.what, extra=fields(count=self._pending, in_seconds=round(self.every)))
            self._pending = 0


class ConnectionGuard:
    """What every connection of one server shares: the cap, the deadline and their tallies."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open = 0
        # The connections waiting for a request head, the longest-waiting first.
        self.waiting: dict[_Guarded, None] = {}
        self.refused = Tally(f"connections refused (over the limit of {max_connections} open)")
        self.evicted = Tally(
            f"connections closed to make room (at the limit of {max_connections} open, the"
            " longest waiting for a request head)"
        )
        self.slow = Tally(f"connections closed (no request head within {header_timeout:g} s)")
        self.large = Tally(f"request heads refused (over {MAX_HEAD_BYTES} bytes): 431")

    def admit(self) -> bool:
        if self.open >= self.max_connections and not self._make_room():
            self.refused.add()
            return False
        self.open += 1
        return True

    def _make_room(self) -> bool:
        for oldest in self.waiting:
            del self.waiting[oldest]
            oldest.evict()
            self.evicted.add()
            return True
        return False

    def release(self) -> None:
        self.open -= 1


class _Guarded(asyncio.Protocol):
    """Mixed in before uvicorn's protocol class; `guard` is set on the combined class.

    One timer per connection, moved lazily: a response only notes when the wait for the next
    head began, and the timer, when it fires early, sets itself again for what is left. A new
    timer for every request cost a fifteenth of an unmatched webhook's CPU."""

    guard: ConnectionGuard
    _refused = False
    _deadline: asyncio.TimerHandle | None = None
    _waiting_since = 0.0  # loop time at which the connection began to wait for a head
    # Bytes of the head being read, and the last 3 bytes seen (a head's end may span reads);
    # None once the head has ended, until the response to it is complete.
    _head_bytes: int | None = 0
    _head_tail = b""
    _head_refused = False
    _evicted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.guard.admit():
            self._refused = True
            # Frees the descriptor now; the client sees a reset.
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
            return
        super().connection_made(transport)
        self._guard_loop = asyncio.get_running_loop()
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self.guard.waiting.pop(self, None)
        if not self._evicted:  # an evicted connection gave its place up already
            self.guard.release()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            if self._head_refused:
                return  # what the client still sends after the 431: dropped, kept nowhere
            # How many bytes of `data` end the head (-1: it goes on). No copy of `data`: a
            # webhook's body comes in the same read as its head.
            tail, end = self._head_tail, -1
            if tail:  # the end may span two reads
                seam = (tail + data[:3]).find(HEAD_END)
                if seam >= 0:
                    end = seam + 4 - len(tail)
            if end < 0:
                found = data.find(HEAD_END, 0, MAX_HEAD_BYTES + 4)
                if found >= 0:
                    end = found + 4
            size = self._head_bytes + (len(data) if end < 0 else end)
            if size > MAX_HEAD_BYTES:
                self._refuse_head()
                return
            if end < 0:
                self._head_bytes = size
                self._head_tail = data[-3:] if len(data) >= 3 else (tail + data)[-3:]
            else:
                self._head_bytes, self._head_tail = None, b""
                self.guard.waiting.pop(self, None)  # a request in flight: not evicted
        super().data_received(data)

    def _refuse_head(self) -> None:
        """Answer 431 and end the connection. What the client is still sending is read and
        dropped for a moment first: closing with unread data would reset the connection, and
        the client might never see the answer."""
        self.guard.large.add()
        self._head_refused = True
        transport: Any = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        transport.write(TOO_LARGE)
        if transport.can_write_eof():
            transport.write_eof()
        self._guard_loop.call_later(REFUSED_LINGER, transport.close)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # uvicorn's protocol has it
        self._wait_for_head()  # the next request's head gets the same time

    def _wait_for_head(self) -> None:
        self._waiting_since = self._guard_loop.time()
        self._head_bytes, self._head_tail = 0, b""
        self.guard.waiting.pop(self, None)
        self.guard.waiting[self] = None  # the newest waiter: the last to be evicted
        if self._deadline is None:
            self._deadline = self._guard_loop.call_later(self.guard.header_timeout, self._check)

    def evict(self) -> None:
        """Close this connection (waiting for a head) to make room: its place is free now."""
        self._evicted = True
        self.guard.release()
        transport: Any = getattr(self, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.abort()

    def _check(self) -> None:
        self._deadline = None
        transport: Any = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        cycle: Any = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            return  # a whole head arrived: a request is in flight; its end starts the wait
        left = self._waiting_since + self.guard.header_timeout - self._guard_loop.time()
        if left > 0:  # a response since the timer was set: the wait began later
            self._deadline = self._guard_loop.call_later(left, self._check)
            return
        self.guard.slow.add()
        transport.close()


def protocol_class(guard: ConnectionGuard, http: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class named `http` ("auto", "h11", "httptools"), guarded."""
    if http == "auto":
        try:
            import httptools  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

            http = "httptools"
        except ImportError:
            http = "h11"
    base: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS[http])
    name = f"Guarded{base.__name__}"
    guarded: type[asyncio.Protocol] = type(name, (_Guarded, base), {"guard": guard})
    return guarded


def raise_descriptor_limit(max_connections: int) -> int:
    """Raise the soft limit on open files to what `max_connections` needs, up to the hard
    limit; answer how many connections fit in the limit there is."""
    wanted = max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open files limit", extra=fields(limit=soft, error=str(e)))
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    fits = max(16, soft - SPARE_DESCRIPTORS)
    log.warning(
        "open files limit too low for server.max_connections, taking fewer connections"
        " (raise LimitNOFILE= or ulimit -n)",
        extra=fields(limit=soft, max_connections=max_connections, taking=fits, wanted=wanted),
    )
    return fits


class FloodFilter(logging.Filter):
    """Lets one record whose message starts with `prefix` through per window, rewritten as a
    count of those seen since, without its traceback; the others in the window are dropped."""

    def __init__(self, prefix: str, what: str, every: float = SUMMARY_EVERY) -> None:
        super().__init__()
        self.prefix, self.what, self.every = prefix, what, every
        self._window_end = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        if not message.startswith(self.prefix):
            return True
        now = time.monotonic()
        if now < self._window_end:
            self._dropped += 1
            return False
        count, self._dropped = self._dropped + 1, 0
        self._window_end = now + self.every
        first_line = message.splitlines()[0] if message else self.what
        record.msg = f"{first_line} ({self.what}: {count} since the last such line)"
        record.args = None
        record.exc_info = record.exc_text = None
        record.stack_info = None
        return True


def install_flood_filters() -> list[tuple[logging.Logger, logging.Filter]]:
    """Summarise the lines a flood of clients produces one by one; answer what was installed."""
    installed: list[tuple[logging.Logger, logging.Filter]] = []
    for logger_name, prefix, what in (
        ("asyncio", "socket.accept() out of system resource", "accept errors"),
        ("uvicorn.error", "Invalid HTTP request received", "invalid requests"),
    ):
        logger, flood = logging.getLogger(logger_name), FloodFilter(prefix, what)
        logger.addFilter(flood)
        installed.append((logger, flood))
    return installed
