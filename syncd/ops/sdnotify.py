"""systemd's notify protocol, by hand: datagrams of KEY=VALUE lines to $NOTIFY_SOCKET.

Does nothing when NOTIFY_SOCKET is unset (not under systemd, or Type= is not notify).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        # Ping at half the watchdog interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        payload = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, addr)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(ready="1", **({"status": status} if status else {}))

    def reloading(self, monotonic_usec: int) -> bool:
        return self.send(reloading="1", monotonic_usec=str(monotonic_usec))

    def stopping(self) -> bool:
        return self.send(stopping="1")

    def watchdog(self) -> bool:
        return self.send(watchdog="1")

    def status(self, text: str) -> bool:
        return self.send(status=text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
