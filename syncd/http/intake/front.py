"""An intake process: one more process taking connections on the daemon's port, so that
webhooks are answered on more than one core (`server.intake_workers`).

The daemon starts it (`python -m syncd.http.intake.front`, see `syncd.http.intake.workers`)
with its listening socket inherited (it binds the same address again with SO_REUSEPORT where it
can, see `own_socket`), and hands it, one line on stdin (`wire.Settings`), what screening needs:
each workspace's target (URL, branch, folder), each provider's secrets, and the server's
limits; a new line after every reload. It accepts connections as the daemon does, with the
same bounds, and:

- answers a webhook that asks for nothing itself (bad signature, malformed, an ignored event,
  a ping, a push no workspace follows: most of a busy host's), with the daemon's statuses and
  bodies, and counts it;
- hands everything else to the daemon over its Unix socket, unchanged (`forward`): a push
  that matched a workspace (the daemon verifies it again, drops a redelivery, queues the
  syncs), and every other route (API, console, metrics, health).

Once a second it writes what it counted to stdout, one line (`wire.Report`) the daemon adds
to its metrics and webhook health. It stops when told (SIGTERM) and when the daemon has gone
(its stdin ends).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

import uvicorn
from starlette.types import Receive, Scope, Send

from syncd.http.connections import ConnectionGuard, install_flood_filters, protocol_class
from syncd.http.hooks import HooksFirst, WebhookEndpoint
from syncd.http.intake.forward import forward
from syncd.http.intake.wire import Count, Report, Settings, Signed, WireError
from syncd.http.intake.workers import shared_port
from syncd.ops.logs import fields, register_secrets, setup_logging
from syncd.service.intake import Intake, Receipt
from syncd.webhooks import Lowered

log = logging.getLogger("syncd.intake_front")

REPORT_EVERY = 1.0


class Counts:
    """The webhook counter, kept until the next report."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], int] = {}

    def webhook(self, provider: str, result: str, count: int = 1) -> None:
        key = (provider, result)
        self.pending[key] = self.pending.get(key, 0) + count

    def take(self) -> tuple[Count, ...]:
        taken, self.pending = self.pending, {}
        return tuple(Count(p, r, n) for (p, r), n in sorted(taken.items()))


class _NoScheduler:
    """An intake process requests no syncs: a matched push goes to the daemon."""

    def request(self, ws_id: str, trigger: Any) -> Any:
        raise RuntimeError("an intake process requests no syncs")


class ScreeningWebhooks(WebhookEndpoint):
    """Screens a delivery; a push that matched goes on to the daemon, body and all."""

    def __init__(self, intake: Intake, socket_path: str) -> None:
        super().__init__(intake)
        self.socket_path = socket_path
        self.max_body = 1048576

    def max_body_bytes(self) -> int:
        return self.max_body

    async def take(
        self,
        provider: str,
        headers: Lowered,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> Receipt | None:
        screened = self.intake.screen(provider, headers, body)
        if screened.receipt is not None:
            return screened.receipt
        await forward(scope, _replay(body, receive), send, self.socket_path)
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for a request whose body was read already: the body, then the client's."""
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


class IntakeProcessApp:
    """The intake process's ASGI app: webhooks screened here, the rest forwarded."""

    def __init__(self, socket_path: str, report: IO[bytes]) -> None:
        self.counts = Counts()
        # No config here: `settle` hands the intake its targets and secrets (Intake.use).
        no_config: Any = lambda: None  # noqa: E731
        self.intake = Intake(no_config, _NoScheduler(), self.counts)
        self.webhooks = ScreeningWebhooks(self.intake, socket_path)
        self.socket_path = socket_path
        self.report = report
        self.app = HooksFirst(self._rest, self.webhooks)
        self.stop: Callable[[], None] = lambda: None  # set to stop the server

    def settle(self, settings: Settings) -> None:
        """Take the daemon's settings (at start, and after each reload)."""
        register_secrets(s for pair in settings.secrets.values() for group in pair for s in group)
        self.intake.use(list(settings.targets), settings.secrets)
        self.webhooks.max_body = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        await self.app(scope, receive, send)

    async def _rest(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await forward(scope, receive, send, self.socket_path)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with self._reporting():
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    threading.Thread(
                        target=_settings_reader,
                        args=(self, asyncio.get_running_loop()),
                        daemon=True,
                        name="settings",
                    ).start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.write_report()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    @contextlib.asynccontextmanager
    async def _reporting(self) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(REPORT_EVERY)
                self.write_report()

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    def write_report(self) -> None:
        counts = self.counts.take()
        # A signed request this process answered was counted; one it handed on, the daemon
        # saw itself: with nothing counted there is nothing new to tell.
        if not counts:
            return
        signed = self.intake.secret_last_seen
        report = Report(counts, tuple(Signed(p, i, at) for (p, i), at in signed.items()))
        try:
            self.report.write(report.encode())
            self.report.flush()
        except (OSError, ValueError):
            pass  # the daemon has gone; stdin's end stops this process


def _settings_reader(app: IntakeProcessApp, loop: asyncio.AbstractEventLoop) -> None:
    """Reads the daemon's settings lines; the daemon gone (stdin ends), the process stops."""
    for line in sys.stdin.buffer:
        try:
            settings = Settings.decode(line)
        except WireError as e:
            log.error("unreadable settings from the daemon, ignored", extra=fields(error=str(e)))
            continue
        loop.call_soon_threadsafe(app.settle, settings)
    loop.call_soon_threadsafe(app.stop)


def own_socket(inherited: socket.socket) -> socket.socket:
    """A socket of its own on the daemon's address (SO_REUSEPORT), so that the kernel spreads
    connections evenly; the inherited one, shared with the daemon, where that cannot be."""
    try:
        mine = shared_port("", inherited.getsockname(), 2048)
    except OSError as e:
        log.info("sharing the daemon's socket", extra=fields(error=str(e)))
        return inherited
    inherited.close()  # this process's copy only: the daemon's stays open
    return mine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncd.http.intake.front")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--socket", required=True, help="the daemon's Unix socket")
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    install_flood_filters()
    first = sys.stdin.buffer.readline()
    if not first:
        return 0  # the daemon went before saying anything
    try:
        settings = Settings.decode(first)
    except WireError as e:
        log.error("unreadable settings from the daemon", extra=fields(error=str(e)))
        return 1  # the daemon starts this process again, backing off
    # Counts go to the daemon on the real stdout; nothing else may write there.
    report = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    app = IntakeProcessApp(args.socket, report)
    app.settle(settings)
    listening = own_socket(socket.socket(fileno=args.fd))
    guard = ConnectionGuard(settings.max_connections, settings.header_timeout)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol_class(guard),
            limit_concurrency=settings.max_connections + 1,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
    )

    app.stop = lambda: setattr(server, "should_exit", True)
    server.run(sockets=[listening])
    log.debug("intake process stopped", extra=fields(pid=os.getpid()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
