"""A writer's leases: renewed while held, so a long run keeps its workspace; waited for, then
refused by name, while another writer holds one; no thread kept while nothing is held."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Collection

import pytest

from syncd.store.protocol import LEASE_TTL, Lease
from syncd.sync.writer_leases import WorkspaceBusy, WriterLeases, gone_from_this_host, new_holder
from tests.support.fakes import FakeStore

TTL = 0.3


def test_a_lease_held_past_its_time_to_live_is_renewed_and_still_fences_no_one() -> None:
    store = FakeStore()
    writer = WriterLeases(lambda: store, "a", ttl=TTL, wait=0.0)
    other = WriterLeases(lambda: store, "b", ttl=TTL, wait=0.0)
    with writer.hold("w") as lease:
        time.sleep(TTL * 4)  # a slow fetch: four times the time to live
        with (
            pytest.raises(WorkspaceBusy, match="being synced by another writer"),
            other.hold("w"),
        ):
            pass
        assert store.renew_leases([lease], TTL) == []  # still this writer's
    with other.hold("w") as taken:  # released: the next writer takes it at once
        assert taken.fence == lease.fence + 1


def test_a_waiting_writer_takes_the_lease_once_it_is_released() -> None:
    store = FakeStore()
    first = WriterLeases(lambda: store, "a", ttl=TTL)
    second = WriterLeases(lambda: store, "b", ttl=TTL, wait=5.0)
    held = threading.Event()
    release = threading.Event()

    def hold_a_while() -> None:
        with first.hold("w"):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold_a_while)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with second.hold("w") as lease:
        assert lease.holder == "b" and lease.fence == 2
    thread.join(5)


def test_no_renewing_thread_is_kept_while_nothing_is_held() -> None:
    store = FakeStore()
    writer = WriterLeases(lambda: store, "a", ttl=TTL)
    assert not writer.renewing
    with writer.hold("w"):
        assert writer.renewing
    for _ in range(50):  # it ends at its next wake-up, a third of the time to live
        if not writer.renewing:
            break
        time.sleep(0.05)
    assert not writer.renewing
    with writer.hold("w"):  # and the next hold starts one again
        assert writer.renewing
    writer.close()


def test_the_lease_of_a_writer_that_ended_on_this_host_is_taken_at_once() -> None:
    """A `syncd sync` or a daemon killed in the middle of a run leaves its lease behind: a
    writer on the same host sees that its process is gone and takes it without waiting."""
    ended = subprocess.Popen(["true"])
    ended.wait()  # a process that has ended: its pid names no process now
    dead = f"syncd-{socket.gethostname()}-{ended.pid}-abcdef"
    assert gone_from_this_host(dead)
    assert not gone_from_this_host(new_holder("syncd"))  # this process: alive
    assert not gone_from_this_host("syncd-elsewhere.example.com-1-abcdef")
    store = FakeStore()
    assert store.take_lease("w", dead, 3600.0) is not None
    writer = WriterLeases(lambda: store, "a", ttl=TTL, wait=0.0)
    with writer.hold("w") as lease:
        assert lease.holder == "a" and lease.fence == 2


class ReleasingStore(FakeStore):
    """A store whose renewal lets a run end (and release its lease) before it renews."""

    def __init__(self) -> None:
        super().__init__()
        self.before_renew = threading.Event()
        self.run_ended = threading.Event()
        self.renewals = 0

    def renew_leases(self, held: Collection[Lease], ttl: float = LEASE_TTL) -> list[Lease]:
        self.before_renew.set()
        self.run_ended.wait(5)
        self.renewals += 1
        return super().renew_leases(held, ttl)


def test_a_lease_released_while_it_is_renewed_is_not_called_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The renewal took its list of held leases, then the run ended and released its lease:
    the renewal finds it gone, which is no other writer's doing."""
    store = ReleasingStore()
    writer = WriterLeases(lambda: store, "a", ttl=TTL)
    with caplog.at_level(logging.WARNING, logger="syncd.engine"), writer.hold("w"):
        assert store.before_renew.wait(5)
    store.run_ended.set()
    deadline = time.monotonic() + 5
    while store.renewals == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close()
    time.sleep(0.05)  # the renewal's logging, were there any
    assert store.renewals >= 1
    assert "lease lost" not in caplog.text


def test_a_lease_another_writer_took_is_called_lost(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    writer = WriterLeases(lambda: store, "a", ttl=TTL)
    with caplog.at_level(logging.WARNING, logger="syncd.engine"), writer.hold("w"):
        assert store.take_lease("w", "b", TTL, True) is not None  # taken over, fenced
        deadline = time.monotonic() + 5
        while "lease lost" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "lease lost: another writer took the workspace over" in caplog.text
