"""Slow clients against the real daemon: 1,100 connections that each send a request head one
header line at a time, every few seconds, and never finish it (and reconnect when dropped).

The daemon starts with the usual default soft limit of 1,024 open files. Without bounds the
connections take every descriptor: accepts fail, `/healthz` and the API time out, and the log
fills with one error per failed accept. The bar: `/healthz` and `GET /api/v1/workspaces/{id}`
answer within 2 s throughout, and the log grows by less than 10 MB.

SYNCD_RELIABILITY=full holds the connections for 70 s instead of 25 s.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import workspace
from tests.support.configs import API_TOKEN
from tests.support.daemon import Daemon, remote, report, scaled, start_daemon, stop_daemon

SLOW_CLIENTS = 1_100
DURATION = scaled(25, 70)
LINE_EVERY = 10.0  # seconds between two header lines of one slow client, as in the attack
ANSWER_WITHIN = 2.0
LOG_LIMIT = 10 * 1024 * 1024
DEFAULT_SOFT_LIMIT = 1024
NEEDED = SLOW_CLIENTS + 512  # the test's own connections, the git server, pytest


@contextlib.contextmanager
def soft_limit(value: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class SlowClients:
    """Keeps `count` connections open, each sending one more header line every `every` s."""

    def __init__(self, port: int, count: int, every: float) -> None:
        self.port, self.count, self.every = port, count, every
        self.sockets: list[tuple[socket.socket, float]] = []
        self.connects = self.dropped = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow clients", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock, _ in self.sockets:
            sock.close()

    def _open(self) -> tuple[socket.socket, float] | None:
        sock = socket.socket()
        sock.settimeout(1.0)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            sock.close()
            self.failed += 1
            return None
        sock.setblocking(False)
        self.connects += 1
        return sock, time.monotonic()

    def _alive(self, sock: socket.socket) -> bool:
        try:
            return sock.recv(4096) != b""  # an answer (a refusal) or the end: either way, gone
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            now, kept = time.monotonic(), []
            for sock, last in self.sockets:
                if not self._alive(sock):
                    sock.close()
                    self.dropped += 1
                    continue
                if now - last >= self.every:
                    try:
                        sock.send(b"X-Slow: yes\r\n")
                        last = now
                    except OSError:
                        sock.close()
                        self.dropped += 1
                        continue
                kept.append((sock, last))
            self.sockets = kept
            while len(self.sockets) < self.count and not self._stop.is_set():
                opened = self._open()
                if opened is None:
                    break  # the server is not accepting: try again on the next round
                self.sockets.append(opened)
            self._stop.wait(0.5)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Daemon]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED:
        pytest.skip(f"the hard limit on open files ({hard}) is below the {NEEDED} this needs")
    with remote(tmp_path) as rm:
        ws = [workspace("manual", rm.url, rm.server, "manual")]
        # The daemon starts as a service would without LimitNOFILE=: with 1,024 open files.
        with soft_limit(DEFAULT_SOFT_LIMIT):
            d = start_daemon(tmp_path, rm.server, rm.tree, rm.url, ws)
        try:
            with soft_limit(NEEDED if hard == resource.RLIM_INFINITY else min(hard, NEEDED * 2)):
                yield d
        finally:
            stop_daemon(d)


def test_slow_clients_leave_the_daemon_answering(started: Daemon) -> None:
    d = started
    port = int(d.url.rsplit(":", 1)[1])
    log_before = d.log_path.stat().st_size
    clients = SlowClients(port, SLOW_CLIENTS, LINE_EVERY)
    clients.start()
    slowest, probes, failures = 0.0, 0, []
    held = 0
    try:
        deadline = time.monotonic() + DURATION
        while time.monotonic() < deadline:
            held = max(held, len(clients.sockets))
            for path, token in (("/healthz", None), ("/api/v1/workspaces/manual", API_TOKEN)):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                started_at = time.monotonic()
                try:
                    r = httpx.get(f"{d.url}{path}", headers=headers, timeout=ANSWER_WITHIN + 1)
                    took = time.monotonic() - started_at
                    if r.status_code != 200 or took > ANSWER_WITHIN:
                        failures.append(f"{path}: {r.status_code} in {took:.1f} s")
                except httpx.HTTPError as e:
                    failures.append(f"{path}: {type(e).__name__} {e}")
                    took = time.monotonic() - started_at
                slowest, probes = max(slowest, took), probes + 1
            time.sleep(0.5)
    finally:
        clients.stop()
    grew = d.log_path.stat().st_size - log_before
    report(
        "slow clients",
        slow_clients=SLOW_CLIENTS,
        held_at_most=held,
        seconds=DURATION,
        probes=probes,
        failed_probes=len(failures),
        slowest_answer_s=round(slowest, 2),
        log_grew_bytes=grew,
        connects=clients.connects,
        dropped_by_daemon=clients.dropped,
    )
    assert held >= SLOW_CLIENTS * 0.9, f"only {held} slow connections were ever open at once"
    assert not failures, f"{len(failures)} of {probes} probes failed: {failures[:5]}"
    assert grew < LOG_LIMIT, f"the log grew by {grew} bytes"
    assert d.process.poll() is None
