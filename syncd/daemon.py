"""`syncd serve`: the daemon's lifecycle under uvicorn, read top to bottom: start, run, reload,
stop. The parts come from `syncd.app.build`; this module only keeps them alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from syncd.app import Parts, build
from syncd.config import Config, load_config
from syncd.config.credentials import fingerprint, secret_files, unreadable_secrets
from syncd.config.state import check_state_writable
from syncd.core.errors import ConfigError, SyncdError
from syncd.core.model import Trigger
from syncd.http.connections import (
    ConnectionGuard,
    install_flood_filters,
    protocol_class,
    raise_descriptor_limit,
)
from syncd.http.console import mount_console
from syncd.http.intake.forward import HandedOn
from syncd.http.intake.wire import Settings
from syncd.http.intake.workers import IntakeWorkers, front_settings, shared_port
from syncd.http.listen import ListenerConfig, listener_options, reload_listener
from syncd.http.routes import create_app
from syncd.ops.logs import JsonFormatter, fields, register_secrets
from syncd.ops.sdnotify import Notifier

log = logging.getLogger("syncd.serve")

STOP_DEADLINE = 8.0  # runs in flight get this long; systemd and the contract allow 10 s in all
STATUS_EVERY = 30.0
EXIT_GRACE = 1.0  # after the stop deadline, for uvicorn to close and the log to flush
REPORT_FLUSH = 1.0  # after the runs, for their commit statuses to reach the git host


class Daemon:
    """The parts plus what keeps them alive: reloads, watchdog pings, staged shutdown."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        register_secrets(config.secret_values())
        # The credential files as read: a change (a rotation) reloads the config.
        self.secret_prints = fingerprint(secret_files(config.secrets()))
        self.parts: Parts = build(config)
        self.parts.core.git.on_auth_failure(self._auth_failed)
        self.tls: ssl.SSLContext | None = None  # the listener's, when server.tls is set
        self._loop: asyncio.AbstractEventLoop | None = None
        self.notifier = notifier or Notifier()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.workers: IntakeWorkers | None = None
        # The listening socket, the daemon's Unix socket, and the connections each process may
        # hold (as make_server worked it out from the open files limit).
        self._front: tuple[int, str, int] | None = None

    def asgi(self) -> Starlette:
        app = create_app(self.parts, lifespan=self.lifespan)
        mount_console(app, self.parts)
        if self.parts.config.server.intake_workers:
            app.add_middleware(HandedOn)
        return app

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        # 1. publish every workspace's last known state, then start the scheduler: pollers,
        #    and a startup comparison of every workspace (a background task, remote by remote)
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._publish_states)
        await self.parts.scheduler.start(startup_sync=True)
        if self._front is not None:
            listen_fd, socket_path, _ = self._front
            count = self.parts.config.server.intake_workers
            self.workers = IntakeWorkers(
                count,
                listen_fd,
                socket_path,
                self._front_settings,
                self.parts.intake,
                self.parts.metrics,
                _log_options(),
            )
            await self.workers.start()
        # 2. reload on SIGHUP and on config file changes; ping the watchdog; report status
        loop = asyncio.get_running_loop()
        # Off the main thread (the demo runs the daemon in a thread) there is no signal to
        # take: asyncio says RuntimeError there, uvloop ValueError.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        self._tasks = [
            asyncio.create_task(self._watch_config(), name="config watch"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self.parts.digests.run(self._stop), name="digests"),
            asyncio.create_task(self.parts.pruner.run(self._stop), name="history pruning"),
        ]
        # Reports to git hosts stop after the runs do (step 3), so the last runs' go out too.
        self.parts.reporter.start()
        self.parts.ready = True
        log.info(
            "started",
            extra=fields(
                workspaces=len(self.parts.config.workspaces),
                listen=f"{self.parts.config.server.host}:{self.parts.config.server.port}",
            ),
        )
        try:
            yield
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        # 1. stop taking work: webhooks answer 503, the scheduler refuses new runs
        self.parts.stopping = True
        self.parts.ready = False
        self.notifier.stopping()
        self._stop.set()
        await self.stop_intake_processes()
        # 2. let runs in flight finish (each rolls back on its own if it cannot)
        finished = await self.parts.scheduler.stop(deadline=STOP_DEADLINE)
        if not finished:
            # A run stuck past the deadline (a stalled remote) would hold the process: the
            # interpreter waits for worker threads at exit. Its store transaction has not
            # begun, or rolls back when the process ends, so ending it loses nothing.
            log.warning("stopping with runs in flight, they are abandoned and roll back")
            threading.Timer(EXIT_GRACE, os._exit, args=(0,)).start()
        # 3. end background tasks; reports queued by the last runs get a moment to go out
        if not await self.parts.pulls.close() and finished:  # a pull request's fetch, stuck
            threading.Timer(EXIT_GRACE, os._exit, args=(0,)).start()
        await self.parts.reporter.stop(flush=REPORT_FLUSH)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # 4. close the store
        if finished:
            self.parts.close()
        self.notifier.close()
        if self._front is not None:
            shutil.rmtree(os.path.dirname(self._front[1]), ignore_errors=True)
        log.info("stopped")

    async def stop_intake_processes(self) -> None:
        if self.workers is not None:
            await self.workers.stop()

    def open_sockets(self, config: uvicorn.Config) -> list[socket.socket] | None:
        """With intake processes, the daemon binds its port itself, with SO_REUSEPORT so that
        each of them can bind it too, and listens on a Unix socket for what they hand on.
        Without, uvicorn binds."""
        if not self.parts.config.server.intake_workers:
            return None
        try:
            listening = shared_port(config.host, config.port, config.backlog)
        except OSError as e:
            raise SyncdError(f"cannot listen on {config.host}:{config.port}: {e.strerror}") from e
        folder = tempfile.mkdtemp(prefix="syncd-")  # 0700: only this user reaches the daemon
        path = os.path.join(folder, "daemon.sock")
        local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        local.bind(path)
        local.listen(config.backlog)
        # uvicorn's cap is one past the connection cap (see make_server).
        max_connections = (config.limit_concurrency or 1) - 1
        self._front = (listening.fileno(), path, max_connections)
        return [listening, local]

    def _front_settings(self) -> Settings:
        assert self._front is not None
        return front_settings(self.parts.intake, self.parts.config.server, self._front[2])

    async def reload(self) -> bool:
        """Load the config again; a broken one is refused and the running one stays."""
        async with self._reload_lock:
            self.notifier.reloading(time.monotonic_ns() // 1000)
            path = self.parts.config.path
            files = secret_files(self.parts.config.secrets())
            prints = await asyncio.to_thread(fingerprint, files)
            try:
                # A credential file that cannot be read (gone, mid-rotation) stops nothing but
                # what needs it: its syncs fail naming it (see unreadable_secrets).
                config = await asyncio.to_thread(load_config, path, None, True)
                for secret in unreadable_secrets(config):
                    log.warning(
                        "secret cannot be read, what needs it fails",
                        extra=fields(secret=secret.source, error=secret.problem),
                    )
            except ConfigError as e:
                await self.parts.reloaded(str(path), str(e).replace("\n", "; "))
                self.notifier.ready(status="config reload refused; running config kept")
                return False
            register_secrets(config.secret_values())
            before = {ws.id: ws for ws in self.parts.config.workspaces}
            self.parts.swap_config(config)
            now_files = secret_files(config.secrets())
            if now_files != files:
                prints = await asyncio.to_thread(fingerprint, now_files)
            self.secret_prints = prints
            reload_listener(self.tls, config)
            if self.workers is not None:
                self.workers.update()
            await asyncio.to_thread(self._publish_states)
            # A key taken out of a `verify` key file: the applied commit turns Degraded.
            await asyncio.to_thread(self.parts.workspaces.recheck_signatures)
            await self.parts.reloaded(str(path))
            # New and changed workspaces are compared at once; the others are left alone.
            for ws in config.workspaces:
                if before.get(ws.id) != ws:
                    with contextlib.suppress(SyncdError):
                        await self.parts.scheduler.request(ws.id, Trigger.STARTUP)
            self.notifier.ready(status=self.status_line())
            return True

    def _auth_failed(self) -> None:
        """A remote refused the credentials (on a git thread, before the run backs off): a
        credential file rotated since it was read is read again now, not after the backoff."""
        files = secret_files(self.parts.config.secrets())
        if self._loop is None or fingerprint(files) == self.secret_prints:
            return
        log.info("credential files changed, reloading", extra=fields(files=len(files)))
        self._loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(self._reload_if_secrets_changed())
        )

    async def _reload_if_secrets_changed(self) -> None:
        files = secret_files(self.parts.config.secrets())
        if await asyncio.to_thread(fingerprint, files) != self.secret_prints:
            await self.reload()

    def _publish_states(self) -> None:
        # Read for all workspaces at once: one by one, 10,000 took seconds before READY.
        store, workspaces = self.parts.core.store, self.parts.config.workspaces
        ids = [ws.id for ws in workspaces]
        states, successes = store.states(ids), store.last_successes(ids)
        for ws in workspaces:
            self.parts.metrics.restore(ws.id, states[ws.id], successes.get(ws.id))
        self.parts.core.health.publish(workspaces, states)

    def status_line(self) -> str:
        return self.parts.workspaces.status_line()

    async def _heartbeat(self) -> None:
        """WATCHDOG=1 from the event loop itself, so a stuck loop gets the process restarted."""
        interval = self.notifier.watchdog_interval
        next_status = 0.0
        while not self._stop.is_set():
            if interval:
                self.notifier.watchdog()
            now = time.monotonic()
            if self.notifier.enabled and now >= next_status:
                line = await asyncio.to_thread(self.status_line)
                self.notifier.status(line)
                next_status = now + STATUS_EVERY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval or STATUS_EVERY)

    async def _watch_config(self) -> None:
        from watchfiles import awatch

        while not self._stop.is_set():
            secrets = secret_files(self.parts.config.secrets())
            files = {p.resolve() for p in (*self.parts.config.files, *secrets)}
            dirs = {str(p.parent) for p in files} | {str(self.parts.config.path.parent)}
            dirs |= {str(p.parent) for p in secrets}  # a rotation may swap a symlink there
            try:
                async for changes in awatch(
                    *sorted(d for d in dirs if os.path.isdir(d)),
                    stop_event=self._stop,
                    debounce=300,
                    recursive=False,
                ):
                    touched = {Path(p).resolve() for _, p in changes}
                    if (
                        touched & files
                        or any(p.suffix in (".yaml", ".yml") for p in touched)
                        or await asyncio.to_thread(fingerprint, secrets) != self.secret_prints
                    ):
                        log.info("config or credential files changed, reloading")
                        await self.reload()
                        break  # the set of files may have changed: watch anew
                else:
                    return
            except (OSError, RuntimeError) as e:
                log.warning("config watch failed, SIGHUP still reloads", extra=fields(error=str(e)))
                return


class Server(uvicorn.Server):
    """uvicorn, with READY=1 once the socket listens (after the lifespan has started), a clean
    exit status after SIGTERM, and a forced exit on a second signal."""

    def __init__(self, config: uvicorn.Config, daemon: Daemon) -> None:
        super().__init__(config)
        self.daemon = daemon

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after a graceful stop, so the process would die by
        # SIGTERM; a daemon that stopped cleanly exits 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("second signal, exiting now (an unfinished apply rolls back)")
            os._exit(1)
        log.info("stopping on signal", extra=fields(signal=signal.Signals(sig).name))
        if self.daemon.workers is not None:
            self.daemon.workers.stopping()
        self.daemon.parts.closing = True
        self.should_exit = True

    async def shutdown(self, sockets: Any = None) -> None:
        # Intake processes first: what they still hold goes on to this process, which is
        # still listening; then this one stops as uvicorn does.
        await self.daemon.stop_intake_processes()
        await super().shutdown(sockets=sockets)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.daemon.notifier.ready(status=await asyncio.to_thread(self.daemon.status_line))


def make_server(
    daemon: Daemon,
    host: str | None = None,
    port: int | None = None,
    http: str = "auto",
    loop: str = "auto",
) -> Server:
    """The uvicorn server for a daemon, on the config's address unless told otherwise, with
    its connections bounded (see `syncd.connections`).

    "auto" is uvicorn's choice: httptools and uvloop (its C parser and event loop, several
    times the pure-Python pair's webhook rate) where they are installed, else h11 and asyncio.
    """
    config = daemon.parts.config
    max_connections = raise_descriptor_limit(config.server.max_connections)
    guard = ConnectionGuard(max_connections, config.server.header_timeout)
    listener, daemon.tls = listener_options(config)
    return Server(
        ListenerConfig(
            daemon.tls,
            daemon.asgi(),
            host=host or config.server.host,
            port=config.server.port if port is None else port,
            http=protocol_class(guard, http),
            # Requests in flight past the cap answer 503; connections past it are closed.
            limit_concurrency=max_connections + 1,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
            loop=loop,
            **listener,
        ),
        daemon,
    )


def serve(config: Config, host: str | None = None, port: int | None = None) -> int:
    check_state_writable(config)
    install_flood_filters()
    daemon = Daemon(config)
    server = make_server(daemon, host, port)
    server.run(sockets=daemon.open_sockets(server.config))
    return 0


def _log_options() -> tuple[str, str]:
    """The log format and level this process runs with, for the intake processes."""
    root = logging.getLogger()
    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return ("json" if json_logs else "text", logging.getLevelName(root.level).lower())
