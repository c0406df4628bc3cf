"""The daemon's side of its intake processes (`server.intake_workers`; each runs
`syncd.http.intake.front`): start them on the daemon's listening socket, hand them the settings
after each reload, add what they report to the daemon's metrics, start again one that exits
(backing off as `syncd.core.retry.INTAKE_RESTART` says), stop them first. What they are told
and tell back is `syncd.http.intake.wire`.

One Python process answers webhooks on one core; these let a host's other cores answer them
too. Each binds the daemon's port again (SO_REUSEPORT: the kernel spreads connections over the
processes), or, where it cannot, accepts on the daemon's own socket, inherited; and reaches the
daemon over a Unix socket in a folder only the daemon's user can open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from syncd.core.retry import INTAKE_RESTART, INTAKE_STEADY_AFTER
from syncd.http.intake.wire import REPORT_MAX, Report, Settings, WireError
from syncd.ops.logs import fields
from syncd.service.intake import Intake

if TYPE_CHECKING:  # for the annotations only: an intake process imports this module
    from prometheus_client import Counter, Gauge

    from syncd.config import ServerConfig

log = logging.getLogger("syncd.intake_workers")

STOP_WAIT = 5.0


class IntakeMetrics(Protocol):
    """The metrics, as far as intake processes need them."""

    intake_processes: Gauge
    intake_exits: Counter

    def webhook(self, provider: str, result: str, count: int = 1) -> None: ...


def shared_port(host: str, port: int | tuple[Any, ...], backlog: int) -> socket.socket:
    """A listening TCP socket that other processes of this user may bind too (SO_REUSEPORT):
    the kernel then spreads new connections evenly over their sockets. (One socket shared by
    all leaves it to whichever process wakes first, and one took most of the connections.)
    `port` is a port number, or a bound socket's address to bind again."""
    address = port if isinstance(port, tuple) else (host, port)
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    if not isinstance(port, tuple):
        # The daemon's own bind: the port must be free, as it must without intake processes.
        # A socket with SO_REUSEPORT would share it with another syncd started by mistake.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def front_settings(intake: Intake, server: ServerConfig, max_connections: int) -> Settings:
    """What an intake process needs of the config, as the daemon checked it."""
    return Settings(
        targets=tuple(intake.targets()),
        secrets=dict(intake.secrets()),
        max_body_bytes=server.max_body_bytes,
        max_connections=max_connections,
        header_timeout=server.header_timeout,
    )


class IntakeWorkers:
    """The daemon's intake processes: `count` of them, each kept running in its slot."""

    def __init__(
        self,
        count: int,
        listen_fd: int,
        socket_path: str,
        settings: Callable[[], Settings],
        intake: Intake,
        metrics: IntakeMetrics,
        log_options: tuple[str, str] = ("text", "info"),
    ) -> None:
        self.count, self.listen_fd, self.socket_path = count, listen_fd, socket_path
        self._settings, self._intake, self._metrics = settings, intake, metrics
        self._log_options = log_options
        self._stopping = False
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> int:
        return sum(1 for p in self._processes.values() if p.returncode is None)

    async def start(self) -> None:
        for slot in range(self.count):
            self._tasks.append(asyncio.create_task(self._keep(slot), name=f"intake process {slot}"))

    def update(self) -> None:
        """Hand the settings to every running intake process (after a reload)."""
        line = self._settings_line()
        for process in self._processes.values():
            if process.stdin is not None and process.returncode is None:
                with contextlib.suppress(OSError, RuntimeError):
                    process.stdin.write(line)

    def stopping(self) -> None:
        """The daemon is stopping: an intake process that exits now is not started again (a
        signal to the whole process group reaches them too)."""
        self._stopping = True

    async def stop(self) -> None:
        """SIGTERM each (it finishes the requests it has), then wait; kill what is left."""
        self._stopping = True
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        for process in list(self._processes.values()):
            try:
                await asyncio.wait_for(process.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _settings_line(self) -> bytes:
        return self._settings().encode()

    async def _keep(self, slot: int) -> None:
        """Run one intake process; start it again when it exits, backing off while it keeps
        failing."""
        failures = 0  # exits in a row, each soon after its start
        while not self._stopping:
            started = time.monotonic()
            try:
                process = await self._spawn()
            except OSError as e:
                log.error("intake process cannot start", extra=fields(slot=slot, error=str(e)))
                self._metrics.intake_exits.inc()
            else:
                self._processes[slot] = process
                self._metrics.intake_processes.set(self.running)
                log.info("intake process started", extra=fields(slot=slot, pid=process.pid))
                await self._read_reports(process)
                code = await process.wait()
                self._metrics.intake_processes.set(self.running)
                if self._stopping:
                    return
                self._metrics.intake_exits.inc()
                log.warning(
                    "intake process exited, starting it again",
                    extra=fields(slot=slot, pid=process.pid, exit_code=code),
                )
            steady = time.monotonic() - started > INTAKE_STEADY_AFTER
            failures = 1 if steady else failures + 1
            await asyncio.sleep(INTAKE_RESTART.delay(failures, rng=lambda: 1.0))  # no jitter

    async def _spawn(self) -> asyncio.subprocess.Process:
        log_format, log_level = self._log_options
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncd.http.intake.front",
            "--fd",
            str(self.listen_fd),
            "--socket",
            self.socket_path,
            "--log-format",
            log_format,
            "--log-level",
            log_level,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=(self.listen_fd,),
            limit=REPORT_MAX,
        )
        assert process.stdin is not None
        process.stdin.write(self._settings_line())
        return process

    async def _read_reports(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                log.warning(
                    "intake process report too long, ignored", extra=fields(pid=process.pid)
                )
                continue
            if not line:
                return
            try:
                report = Report.decode(line)
            except WireError as e:
                log.warning("intake process report unreadable", extra=fields(error=str(e)))
            else:
                self._apply(report)

    def _apply(self, report: Report) -> None:
        for provider, result, n in report.counts:
            self._metrics.webhook(provider, result, n)
        for provider, signed_by, at in report.signed:
            self._intake.seen(provider, signed_by, at)
