"""A writer's leases on the workspaces it syncs: taken before a run resolves its commit, renewed
in the background while it works, released when it ends (see `syncd.store.leases`).

One per engine, so one per process: the daemon's (or a replica's) and the CLI's in local mode
each hold a workspace alone while they sync it, and a writer that stops renewing (frozen,
cut off from the store) loses the workspace after the lease's time to live; its late writes are
then refused by the fence. Blocking: runs call it from worker threads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from syncd.ops.logs import fields
from syncd.store import Store, StoreError
from syncd.store.protocol import LEASE_TTL, Lease

log = logging.getLogger("syncd.engine")

# How often a waiting writer asks again for a lease another writer holds.
RETRY_EVERY = 0.1


class WorkspaceBusy(StoreError):
    """Another writer holds the workspace and kept it past the wait: transient, retried."""


def new_holder(kind: str) -> str:
    """kind-host-pid-random: readable in a Fenced message, unique across restarts."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def gone_from_this_host(holder: str | None) -> bool:
    """A holder (see new_holder) on this host whose process has ended: a daemon or a
    `syncd sync` that was killed in the middle of a run. Its lease is taken at once instead
    of waiting for it to expire; were this wrong (another PID namespace behind the same host
    name), the writer so overtaken is fenced, never overwritten."""
    if not holder:
        return False
    head = holder.rpartition("-")[0]  # without its random part
    head, _, pid = head.rpartition("-")
    if not head.endswith(f"-{socket.gethostname()}") or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's process): alive
        return False
    return False


class WriterLeases:
    def __init__(
        self,
        store: Callable[[], Store],
        holder: str,
        ttl: float = LEASE_TTL,
        wait: float = LEASE_TTL + 5.0,
    ) -> None:
        # `store` is read at each use: a test may swap the engine's store.
        self._store = store
        self.holder = holder
        self.ttl = ttl
        self.wait = wait
        self._held: dict[str, Lease] = {}
        self._guard = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def hold(self, ws: str, wait: float | None = None, force: bool = False) -> Iterator[Lease]:
        """The workspace's lease while the block runs; WorkspaceBusy when another writer
        keeps it longer than `wait` (its lease renewed all along: it is alive and working).
        `force` takes it at once from a holder the caller knows to be gone."""
        lease = self._take(ws, self.wait if wait is None else wait, force)
        with self._guard:
            self._held[ws] = lease
            self._start_renewer()
        try:
            yield lease
        finally:
            with self._guard:
                self._held.pop(ws, None)
            try:
                self._store().release_lease(lease)
            except StoreError as e:  # it expires by itself; the fence stays valid until then
                log.warning("lease not released", extra=fields(workspace=ws, error=str(e)))

    def _take(self, ws: str, wait: float, force: bool) -> Lease:
        deadline = time.monotonic() + wait
        for attempt in range(int(wait / RETRY_EVERY) + 2):
            lease = self._store().take_lease(ws, self.holder, self.ttl, force)
            if lease is not None:
                return lease
            if attempt == 0 and gone_from_this_host(self._store().lease_holder(ws)):
                log.info("lease of a writer that has ended taken over", extra=fields(workspace=ws))
                force = True
                continue
            if time.monotonic() >= deadline:
                break
            time.sleep(RETRY_EVERY)
        raise WorkspaceBusy(
            f"workspace {ws} is being synced by another writer (a daemon, a replica or"
            f" `syncd sync`); it still held the workspace after {wait:.0f} s"
        )

    def _start_renewer(self) -> None:
        # Under the guard, as the loop's decision to end is.
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(
                target=self._renew_loop, name="renew leases", daemon=True
            )
            self._renewer.start()

    def _renew_loop(self) -> None:
        """Renew every held lease each third of the time to live; a lost one is logged (its
        run then fails at its next write, Fenced). Ends when nothing is held (the next hold
        starts another), so an idle process keeps no thread for it."""
        while not self._stop.wait(self.ttl / 3):
            with self._guard:
                held = list(self._held.values())
                if not held:
                    self._renewer = None
                    return
            try:
                lost = self._store().renew_leases(held, self.ttl)
            except StoreError as e:
                log.warning("leases not renewed", extra=fields(error=str(e)))
                continue
            with self._guard:
                # A run that ended while this renewal ran has released its lease: not lost. (A
                # run fenced meanwhile has let its lease go too: it logs "sync fenced" itself.)
                lost = [lease for lease in lost if self._held.get(lease.workspace) == lease]
            for lease in lost:
                log.warning(
                    "lease lost: another writer took the workspace over",
                    extra=fields(workspace=lease.workspace, fence=lease.fence),
                )

    @property
    def renewing(self) -> bool:
        """Whether a thread renews this writer's leases now."""
        with self._guard:
            return self._renewer is not None and self._renewer.is_alive()

    def close(self) -> None:
        self._stop.set()
