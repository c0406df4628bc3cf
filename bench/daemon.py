"""The daemon as users run it, for the benches: `syncd serve` in a subprocess on loopback.

READY is seen as systemd sees it, a `READY=1` datagram on $NOTIFY_SOCKET; CPU and memory are
read from /proc/PID. Every wait is bounded in time and raises with the daemon's log tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped,unused-ignore]
from common import syncd_command, syncd_env

from syncd.demo.gitserver import GitServer

API_TOKEN = "bench-api-token-0123456789"
API_TOKEN_ENV = "SYNCD_BENCH_API_TOKEN"
WEBHOOK_SECRET = "bench-webhook-secret-0123"
WEBHOOK_SECRET_ENV = "SYNCD_BENCH_WEBHOOK_SECRET"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def serve_config(
    directory: Path,
    workspaces: list[dict[str, Any]],
    port: int,
    store: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
) -> Path:
    """A `syncd serve` config under `directory`: its own state, an API token, a GitHub secret.

    The file gets a folder of its own: syncd watches the config's folder for changes, and
    the daemon's log and notify socket, beside it, would wake the watcher on every line."""
    (directory / "config").mkdir(parents=True, exist_ok=True)
    doc = {
        "server": {"listen": f"{HOST}:{port}", **(server or {})},
        "state_dir": str(directory / "state"),
        "tokens": [{"name": "bench", "token_env": API_TOKEN_ENV, "scopes": ["read", "sync"]}],
        "webhooks": {"github": {"secrets_env": [WEBHOOK_SECRET_ENV]}},
        "workspaces": workspaces,
    }
    if store is not None:
        doc["store"] = store
    doc.update(top or {})
    path = directory / "config" / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def serve_env(server: GitServer | None) -> dict[str, str]:
    env = syncd_env(server) if server is not None else dict(os.environ)
    env.update({API_TOKEN_ENV: API_TOKEN, WEBHOOK_SECRET_ENV: WEBHOOK_SECRET})
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    return env


class NotifySocket:
    """A datagram socket standing in for systemd's: keeps every message with its arrival time.

    Drained all the time, so the daemon's STATUS updates never fill its queue."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.ready_at: float | None = None
        self.messages: list[tuple[float, str]] = []
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="notify", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.perf_counter()
            text = data.decode("utf-8", "replace")
            self.messages.append((now, text))
            if "READY=1" in text.splitlines() and self.ready_at is None:
                self.ready_at = now
                self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class LogLines:
    """Counts the lines of a growing log that hold every one of `needles`, reading only what
    was appended since the last count."""

    def __init__(self, path: Path, *needles: str) -> None:
        self.path = path
        self.needles = tuple(n.encode() for n in needles)
        self._offset = 0
        self._partial = b""
        self._count = 0

    def count(self) -> int:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return self._count
        self._offset += len(data)
        *whole, self._partial = (self._partial + data).split(b"\n")
        self._count += sum(1 for line in whole if all(n in line for n in self.needles))
        return self._count


@dataclass
class ServeProcess:
    """One `syncd serve`: started at `spawned_at` (perf_counter), logging to `log_path`."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    notify: NotifySocket
    spawned_at: float
    _clients: list[httpx.Client] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        directory: Path,
        workspaces: list[dict[str, Any]],
        server: GitServer | None,
        extra_args: tuple[str, ...] = (),
        store: dict[str, Any] | None = None,
        server_options: dict[str, Any] | None = None,
        top: dict[str, Any] | None = None,
        env_extra: dict[str, str] | None = None,
    ) -> ServeProcess:
        port = free_port()
        config = serve_config(directory, workspaces, port, store, server_options, top)
        notify = NotifySocket(directory / "notify.sock")
        env = serve_env(server) | {"NOTIFY_SOCKET": str(notify.path)} | (env_extra or {})
        log_path = directory / "daemon.log"
        with log_path.open("wb") as log:
            spawned_at = time.perf_counter()
            process = subprocess.Popen(
                [*syncd_command(), "serve", "--config", str(config), *extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return cls(f"http://{HOST}:{port}", process, log_path, notify, spawned_at)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- waiting ---------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawning `syncd serve` to its READY=1 datagram."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.notify.wait_ready(0.05):
                assert self.notify.ready_at is not None
                return self.notify.ready_at - self.spawned_at
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"syncd serve exited {self.process.returncode}\n{self.log_tail()}"
                )
        raise TimeoutError(f"syncd serve not READY after {timeout:.0f} s\n{self.log_tail()}")

    def wait_until(
        self, check: Callable[[], bool], timeout: float, what: str, every: float = 0.25
    ) -> float:
        """Poll `check` until true; the seconds it took. Raises after `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"syncd serve exited while waiting for {what}\n{self.log_tail()}"
                )
            if check():
                return time.monotonic() - started
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.log_tail()}")

    def workspace_views(self) -> list[dict[str, Any]]:
        """Every workspace as `GET /api/v1/workspaces` lists it, page after page when it
        answers with a `next_cursor`."""
        client = self.client(timeout=120)
        views: list[dict[str, Any]] = []
        params: dict[str, str] = {}
        for _ in range(100_000):  # pages; ends on the last one
            page = client.get("/api/v1/workspaces", params=params)
            page.raise_for_status()
            body = page.json()
            views += body["workspaces"]
            if not body.get("next_cursor"):
                break
            params = {"cursor": str(body["next_cursor"])}
        return views

    def wait_all_applied(self, count: int, revision: str, timeout: float) -> float:
        """Wait until `count` workspaces have applied `revision` (the startup syncs)."""
        client = self.client()

        def done() -> bool:
            listed = client.get("/api/v1/workspaces").json()["workspaces"]
            applied = sum(1 for w in listed if w["last_applied_revision"] == revision)
            return len(listed) == count and applied == count

        return self.wait_until(done, timeout, f"{count} workspaces to apply {revision[:12]}", 0.5)

    # -- the API ---------------------------------------------------------------------------

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """A keep-alive client with the bench token; closed when the daemon stops."""
        c = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=timeout
        )
        self._clients.append(c)
        return c

    # -- /proc -----------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User plus system CPU of the daemon process so far (all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory now (VmRSS), or its peak so far (field "VmHWM"), in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/{self.process.pid}/status")

    # -- stopping --------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "--- daemon log (tail) ---\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        for c in self._clients:
            c.close()
        self._clients.clear()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.notify.close()
        return self.process.returncode
