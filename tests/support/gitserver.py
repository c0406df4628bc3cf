"""The demo's https git server with faults to switch on, to exercise the client's retries."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from syncd.demo.gitserver import GitRequestHandler, WorkTree
from syncd.demo.gitserver import GitServer as DemoGitServer

__all__ = ["FAULTS", "Fault", "GitServer", "WorkTree"]

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

    def set_fault(self, fault: Fault, delay: float = 0.0) -> None:
        """refuse: drop the connection unanswered; 500: answer 500; slow: sleep `delay`
        seconds before answering; 401: reject every credential; None: behave."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        with self._lock:
            self._fault, self._delay = fault, delay

    def start(self) -> None:
        self._stopping.clear()
        super().start()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def intercept(self, request: GitRequestHandler) -> bool:
        with self._lock:
            fault, delay = self._fault, self._delay
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
