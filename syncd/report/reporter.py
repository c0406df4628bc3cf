"""The queue between syncd and the git hosts: reports are handed in (from a sync's thread or the
event loop) and sent by a few workers on the loop, so a slow or refusing host never fails or
delays a sync.

A report replaces a queued one with the same key (a run's `success` replaces its `pending` not
yet sent; a pull request's newer plan replaces the older comment), so a burst leaves the last
word only, and two reports of one key are never in flight at once (they arrive in order). A
transient refusal (a network failure, a 5xx, a rate limit) is tried again with back-off
(`retry.REPORT_ATTEMPT`); a permanent one (a wrong token, a repository the token cannot see) is
not. Each outcome is counted (`syncd_reports_total`), and the last failure of each workspace's
reports shows in its health until one of them succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from syncd.config import ProviderConfig
from syncd.core import retry
from syncd.core.times import rfc3339
from syncd.ops.logs import fields
from syncd.report.host import Host, HostError

log = logging.getLogger("syncd.report")

# Pending reports at most; past it the oldest is dropped (counted): a host down for hours with
# thousands of runs must not grow the queue without bound.
MAX_PENDING = 10_000
WORKERS = 4
# However a host's client is configured, one report gives up after this long (then retried).
SEND_LIMIT = 120.0


class ReportCounter(Protocol):
    def report(self, provider: str, kind: str, result: str) -> None: ...


@dataclass
class Report:
    """One thing to tell a host. `key` says which newer report replaces it; `workspaces`
    are those whose health shows its failure."""

    key: tuple[str, ...]
    provider: str  # the `providers` entry, looked up when sent (a reload may rotate its token)
    kind: str  # commit_status | plan_status | comment
    workspaces: tuple[str, ...]
    send: Callable[[Host], Awaitable[None]]
    failures: int = 0
    due: float = 0.0


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """A workspace's last report that failed: shown in health and the console."""

    provider: str
    kind: str
    error: str
    at: float

    def to_dict(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "kind": self.kind,
            "error": self.error,
            "at": rfc3339(self.at),
        }


class HostSet:
    """One client per `providers` entry, as configured now: a reload that changes an entry
    (a rotated token) gets a new client at the next report, and the old one is closed."""

    def __init__(self, build: Callable[[ProviderConfig], Host]) -> None:
        self._build = build
        self._hosts: dict[str, tuple[ProviderConfig, Host]] = {}
        self._retired: list[Host] = []

    def get(self, config: ProviderConfig) -> Host:
        held = self._hosts.get(config.name)
        if held is not None and held[0] == config:
            return held[1]
        if held is not None:
            self._retired.append(held[1])
        host = self._build(config)
        self._hosts[config.name] = (config, host)
        return host

    async def close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for host in retired:
            with contextlib.suppress(Exception):
                await host.aclose()

    async def aclose(self) -> None:
        self._retired += [host for _, host in self._hosts.values()]
        self._hosts = {}
        await self.close_retired()


@dataclass
class _Queue:
    pending: dict[tuple[str, ...], Report] = field(default_factory=dict)
    inflight: set[tuple[str, ...]] = field(default_factory=set)


class Reporter:
    def __init__(
        self,
        hosts: HostSet,
        counter: ReportCounter,
        providers: Callable[[], Mapping[str, ProviderConfig]],
        policy: retry.Policy = retry.REPORT_ATTEMPT,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._hosts, self._counter, self._policy = hosts, counter, policy
        self._providers = providers
        self._clock, self._wall, self._rng = clock, wall, rng
        self._queue = _Queue()
        self._guard = threading.Lock()  # submit comes from sync threads too
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._failures: dict[str, ReportFailure] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- handing reports in (any thread) ---------------------------------------------------------

    def submit(self, report: Report) -> None:
        """Queue a report, replacing a queued one with its key. Never blocks, never raises."""
        dropped: Report | None = None
        with self._guard:
            queue = self._queue
            queue.pending.pop(report.key, None)  # a replaced report goes to the back
            queue.pending[report.key] = report
            if len(queue.pending) > MAX_PENDING:
                oldest = next(iter(queue.pending))
                dropped = queue.pending.pop(oldest)
        if dropped is not None:
            self._counter.report(dropped.provider, dropped.kind, "dropped")
        self._poke()

    def last_failure(self, ws_id: str) -> ReportFailure | None:
        return self._failures.get(ws_id)

    def pending(self) -> int:
        with self._guard:
            return len(self._queue.pending) + len(self._queue.inflight)

    def start(self) -> None:
        """Send reports from now on, on the running loop, until `stop`."""
        self._task = asyncio.create_task(self._run(), name="reports")

    async def stop(self, flush: float) -> None:
        """Give what is queued `flush` seconds to go out (at a stop: the statuses of the last
        runs), then stop sending."""
        await self.flush(flush)
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def flush(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until nothing is queued or in flight (at a stop:
        the statuses of the last runs go out if the host answers soon)."""
        for _ in range(int(timeout / 0.05)):
            if not self.pending():
                return
            await asyncio.sleep(0.05)

    # -- sending (the event loop) ----------------------------------------------------------------

    async def _run(self) -> None:
        """Send reports until `stop`; what is still queued then is left (logged)."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        stop = self._stop
        tasks = [asyncio.create_task(self._work(stop), name=f"reports {i}") for i in range(WORKERS)]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._hosts.aclose()
            if left := self.pending():
                log.info("reports not sent at stop", extra=fields(count=left))

    async def _work(self, stop: asyncio.Event) -> None:
        assert self._wake is not None
        while not stop.is_set():
            report, wait = self._next()
            if report is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 1.0))
                continue
            try:
                await self._deliver(report)
            finally:
                with self._guard:
                    self._queue.inflight.discard(report.key)
                self._poke()

    def _next(self) -> tuple[Report | None, float]:
        """The first queued report that is due and whose key is not in flight; else how long
        until one may be."""
        now, soonest = self._clock(), 1.0
        with self._guard:
            queue = self._queue
            for key, report in queue.pending.items():
                if key in queue.inflight:
                    continue
                if report.due <= now:
                    del queue.pending[key]
                    queue.inflight.add(key)
                    return report, 0.0
                soonest = min(soonest, report.due - now)
        return None, max(soonest, 0.01)

    async def _deliver(self, report: Report) -> None:
        name = report.provider
        config = self._providers().get(name)
        if config is None:  # a reload took the entry out: nobody to tell
            self._counter.report(name, report.kind, "dropped")
            return
        try:
            host = self._hosts.get(config)
            await self._hosts.close_retired()
            await asyncio.wait_for(report.send(host), timeout=SEND_LIMIT)
        except (HostError, TimeoutError) as e:
            error = e if isinstance(e, HostError) else HostError(f"{name}: timed out", True)
            self._failed(report, error)
            return
        except Exception as e:  # a client's bug must not end the worker
            log.exception("report failed", extra=fields(provider=name, kind=report.kind))
            self._failed(report, HostError(f"{name}: {type(e).__name__}"))
            return
        self._counter.report(name, report.kind, "ok")
        self._settle(report.workspaces, None)

    def _failed(self, report: Report, error: HostError) -> None:
        name = report.provider
        report.failures += 1
        last = not error.transient or report.failures >= self._policy.attempts
        self._settle(report.workspaces, ReportFailure(name, report.kind, str(error), self._wall()))
        log.warning(
            "report failed",
            extra=fields(
                provider=name, kind=report.kind, attempt=report.failures, error=str(error)
            ),
        )
        if last:
            self._counter.report(name, report.kind, "error")
            return
        self._counter.report(name, report.kind, "retry")
        wait = self._policy.delay(report.failures, self._rng)
        if error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self._policy.cap * 5))
        report.due = self._clock() + wait
        with self._guard:
            # A newer report with this key, queued meanwhile, says more: this one is done.
            self._queue.pending.setdefault(report.key, report)

    def _settle(self, workspaces: Iterable[str], failure: ReportFailure | None) -> None:
        for ws_id in workspaces:
            if failure is None:
                self._failures.pop(ws_id, None)
            else:
                self._failures[ws_id] = failure

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)
