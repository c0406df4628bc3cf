"""A TCP relay on loopback in front of a real server that a test can freeze: while frozen, the
connections stay open and nothing goes through either way, which is what a client sees of a
PostgreSQL server stopped by SIGSTOP or a network that drops packets without a reset. Freezing
the relay instead of the machine's PostgreSQL keeps every other test's server alive.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator

# A relay ends by itself this long after the test is done with it, whatever happens.
LIFETIME = 600.0
TICK = 0.05


class Freezer:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._frozen = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def start(self) -> None:
        thread = threading.Thread(target=self._accept, name="freezer accept", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        self._listener.settimeout(TICK)
        for _ in range(int(LIFETIME / TICK)):
            if self._stopping.is_set():
                return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            relay = threading.Thread(
                target=self._relay, args=(client, server), name="freezer relay", daemon=True
            )
            relay.start()
            self._threads.append(relay)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with a, b, selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            sel.register(b, selectors.EVENT_READ)
            for _ in range(int(LIFETIME / TICK)):
                if self._stopping.is_set():
                    return
                if self._frozen.is_set():
                    self._stopping.wait(TICK)  # hold everything where it is
                    continue
                for key, _ in sel.select(TICK):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    try:
                        peer[sock].sendall(data)
                    except OSError:
                        return


@contextlib.contextmanager
def freezer(host: str = "127.0.0.1", port: int = 5432) -> Iterator[Freezer]:
    relay = Freezer(host, port)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
