"""The demo's https git server with faults to switch on, to exercise the client's retries."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from syncd.demo.gitserver import GitRequestHandler, WorkTree
from syncd.demo.gitserver import GitServer as DemoGitServer

__all__ = ["FAULTS", "Fault", "FetchHold", "GitServer", "WorkTree"]

# A held fetch goes on by itself after this long, whatever the test does.
HOLD_LIMIT = 60.0


class FetchHold:
    """The next fetch (an upload-pack POST) waits at the server until `release`: a test sees
    it arrive (`arrived`), makes something happen meanwhile, then lets it go on."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self._go = threading.Event()

    def release(self) -> None:
        self._go.set()

    def wait_arrived(self, timeout: float = 30.0) -> None:
        if not self.arrived.wait(timeout):
            raise AssertionError(f"no fetch reached the git server within {timeout} s")

    def _hold(self, stopping: threading.Event) -> None:
        self.arrived.set()
        for _ in range(int(HOLD_LIMIT / 0.05)):
            if self._go.wait(0.05) or stopping.is_set():
                return


Fault = Literal[None, "refuse", "500", "slow", "401"]
FAULTS = (None, "refuse", "500", "slow", "401")


class GitServer(DemoGitServer):
    """`syncd.demo.gitserver.GitServer`, plus a fault that applies to every request from the
    moment it is set: refused answers, 500s, slow answers, rejected credentials."""

    def __init__(
        self,
        root: Path,
        username: str = "bot",
        password: str = "s3cret-token",
        hostnames: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    ) -> None:
        super().__init__(root, username, password, hostnames)
        self._fault: Fault = None
        self._delay = 0.0
        # Set on stop, so that handlers sleeping in a "slow" fault wake up.
        self._stopping = threading.Event()
        self._holds: list[FetchHold] = []

    def set_fault(self, fault: Fault, delay: float = 0.0) -> None:
        """refuse: drop the connection unanswered; 500: answer 500; slow: sleep `delay`
        seconds before answering; 401: reject every credential; None: behave."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        with self._lock:
            self._fault, self._delay = fault, delay

    def hold_next_fetch(self) -> FetchHold:
        """Hold the next fetch that reaches this server (ls-remotes and pushes pass)."""
        hold = FetchHold()
        with self._lock:
            self._holds.append(hold)
        return hold

    def start(self) -> None:
        self._stopping.clear()
        super().start()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def intercept(self, request: GitRequestHandler) -> bool:
        hold = None
        with self._lock:
            fault, delay = self._fault, self._delay
            fetch = request.path.partition("?")[0].endswith("/git-upload-pack")
            if self._holds and request.command == "POST" and fetch:
                hold = self._holds.pop(0)
        if hold is not None:
            hold._hold(self._stopping)
        if fault == "refuse":
            request.drop()  # no answer at all
            return True
        if fault == "slow":
            self._stopping.wait(delay)
        if fault == "500":
            request.drain_body()
            request.reply(500, b"injected fault\n")
            return True
        if fault == "401":
            self.deny(request)
            return True
        return False
