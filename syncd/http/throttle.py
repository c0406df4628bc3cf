"""Throttled guessing: failed credentials (console sign-ins, API bearer tokens) per client address.

A token cannot be guessed at any rate (check-config refuses one shorter than 16 characters);
this keeps trying from costing the daemon work, and makes it loud:

- each client address may fail `LIMIT` times in a sliding `WINDOW`; past that, a request from it
  that presents a credential is answered 429 with `Retry-After` (the seconds until its oldest
  failure leaves the window) *before* its credential is checked. So a right token from a
  throttled address is refused too: if it were let in, the answer would still tell a right
  guess from a wrong one, and the throttle would slow nothing;
- a 429 is not a failure: a client that waits as told gets its next try;
- a success clears nothing: a holder of one token cannot reset its count to guess another;
- an IPv6 address counts by its /64 (one host is usually given a whole /64);
- at most `MAX_ADDRESSES` are tracked; past that, the address whose last failure is oldest is
  forgotten first, so memory stays bounded whatever number of addresses a flood comes from;
- failures and refusals are logged as one summary line per `SUMMARY_EVERY` (logger
  `syncd.auth`), never a line each.

Requests that present no credential (/healthz, /readyz, /metrics, webhooks, badges, the
console's pages) are never counted or refused here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from syncd.ops.logs import fields

log = logging.getLogger("syncd.auth")

LIMIT = 10  # failures per address in one window; the next attempt is refused
WINDOW = 60.0  # seconds
MAX_ADDRESSES = 4096
SUMMARY_EVERY = 10.0  # seconds between summary lines, while anything fails


class Throttle:
    """Failures per client address in a sliding window; one object per daemon, shared by the
    API and the console, so that both doors count against one allowance."""

    def __init__(
        self,
        limit: int = LIMIT,
        window: float = WINDOW,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
        summary_every: float = SUMMARY_EVERY,
    ) -> None:
        self.limit, self.window, self.max_addresses = limit, window, max_addresses
        self._clock = clock
        # address -> the times of its last `limit` failures, oldest first; least recent first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.summary = Summary(summary_every, max_addresses)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again; None when it may try now."""
        times = self._failures.get(address)
        if times is None:
            return None
        now = self._clock()
        if times[-1] + self.window <= now:  # all its failures are out of the window
            del self._failures[address]
            return None
        if len(times) < self.limit:
            return None
        wait = times[0] + self.window - now
        if wait <= 0:
            return None
        self.summary.add(address, refused=True)
        return max(1, math.ceil(wait))

    def failed(self, address: str) -> None:
        """`address` presented a credential that is not valid."""
        times = self._failures.pop(address, None)
        if times is None:
            times = deque(maxlen=self.limit)
            while len(self._failures) >= self.max_addresses:
                self._failures.popitem(last=False)
        times.append(self._clock())
        self._failures[address] = times  # now the most recent
        self.summary.add(address, refused=False)

    @property
    def tracked(self) -> int:
        return len(self._failures)


class Summary:
    """What failed and what was refused since the last line; one line per window."""

    def __init__(self, every: float, max_addresses: int) -> None:
        self.every, self.max_addresses = every, max_addresses
        self.failed = self.refused = 0
        self._by_address: dict[str, int] = {}
        self._throttled: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None

    def add(self, address: str, refused: bool) -> None:
        if refused:
            self.refused += 1
            if len(self._throttled) < self.max_addresses:
                self._throttled.add(address)
        else:
            self.failed += 1
            if address in self._by_address or len(self._by_address) < self.max_addresses:
                self._by_address[address] = self._by_address.get(address, 0) + 1
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a tool, a test): kept until `flush` is called
                return
            self._flush = loop.call_later(self.every, self.flush)

    def flush(self) -> None:
        self._flush = None
        if not (self.failed or self.refused):
            return
        top = max(self._by_address.items(), key=lambda item: item[1], default=None)
        log.warning(
            "failed sign-ins and bad API tokens",
            extra=fields(
                failed=self.failed,
                refused_429=self.refused,
                addresses=len(self._by_address),
                throttled=len(self._throttled),
                top_address=top[0] if top else None,
                top_failed=top[1] if top else None,
                in_seconds=round(self.every),
            ),
        )
        self.failed = self.refused = 0
        self._by_address.clear()
        self._throttled.clear()


def client_address(client: tuple[str, int] | None) -> str:
    """The key an address is counted by: IPv4 as is, IPv6 by its /64 (an IPv4-mapped one as
    IPv4), anything else (a Unix socket: no address) as one shared key."""
    if client is None or not client[0]:
        return "unknown"
    host = client[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
