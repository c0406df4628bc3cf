"""Parsed step files by git blob id, shared by every workspace that follows the same remote.

Ten workspaces on one repository (dev, staging, prod, a branch each, or one per team) read
mostly the same blobs: a blob id names its bytes exactly, so one parse serves them all. Only
files that parse are kept; a bad file is read and refused again on every sync, naming its own
path. Entries are keyed by the remote as well as the blob, so one remote's files never stand in
for another's. The cache is bounded by an estimate of the memory its entries take (least
recently used go first), and is safe to use from the scheduler's threads at once.

Whole listings are kept too: the steps of a folder at a commit, once parsed without a problem
(a reading that took steps from its workspace's own index keeps nothing: those are that
workspace's). Those workspaces often read the same commit (a startup, a push to the branch
they share): the first reads its files, the others take its steps as they are. A commit names
its tree exactly, so a listing never goes stale; it is keyed by the remote as well, as the
files are. Listings have a byte budget of their own.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from syncd.core.model import Step, StepContent
from syncd.core.steps import parse_step_file

# An entry's cost: the memory of its three strings (a character above U+FFFF makes Python keep
# four bytes for each character of its string, so a file's length alone can be a quarter of
# it) and what Python keeps around them (measured: about 300 bytes).
ENTRY_BYTES = 300
# About 30,000 typical steps.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# The listings kept, at most this many bytes (counted as if none of their contents were
# shared with the parsed files above, which they mostly are) and this many listings. A listing
# bigger than that is not kept (a workspace that large reads its changes incrementally).
DEFAULT_MAX_LISTED_BYTES = 16 * 1024 * 1024
MAX_LISTINGS = 64
# How long a reader waits for another's reading of the same listing before it reads itself.
FLIGHT_WAIT = 120.0


def entry_cost(name: str, content: StepContent) -> int:
    """Bytes a kept step takes, about (sys.getsizeof of a str is O(1))."""
    size = sys.getsizeof
    return size(name) + size(content.if_) + size(content.do) + ENTRY_BYTES


def listing_cost(steps: tuple[Step, ...], at_most: int) -> int:
    """Bytes a kept listing takes, about; counting stops past `at_most`."""
    total = 0
    for step in steps:
        total += entry_cost(step.name, step.content) + sys.getsizeof(step.path)
        if total > at_most:
            break
    return total


class _Flight:
    """One listing's first reading in progress: set when it ends (an object that a weak
    mapping can hold, so that it goes with the last reader that waits on it)."""

    __slots__ = ("__weakref__", "done")

    def __init__(self) -> None:
        self.done = threading.Event()


class ParsedSteps:
    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, max_listed_bytes: int = DEFAULT_MAX_LISTED_BYTES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_listed_bytes = max_listed_bytes
        self._entries: OrderedDict[tuple[str, str], tuple[str, StepContent, int]] = OrderedDict()
        self._bytes = 0
        # Each listing with its cost in bytes.
        self._listings: OrderedDict[tuple[str, str, str], tuple[tuple[Step, ...], int]] = (
            OrderedDict()
        )
        self._listed = 0
        # The readings going on, by listing key: gone with the last reader that holds one.
        self._flights: weakref.WeakValueDictionary[tuple[str, str, str], _Flight] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()

    def listing(self, scope: str, commit: str, folder: str) -> tuple[Step, ...] | None:
        """The steps of `folder` at `commit` of remote `scope`, as a reading found them with no
        problem; None when none is kept."""
        key = (scope, commit, folder)
        with self._lock:
            found = self._listings.get(key)
            if found is None:
                return None
            self._listings.move_to_end(key)
            return found[0]

    @contextmanager
    def reading(self, scope: str, commit: str, folder: str) -> Iterator[bool]:
        """Around a reading of `folder` at `commit` for a listing; says whether this reader is
        the first. A reader that comes while another reads the same waits for it (at most
        FLIGHT_WAIT seconds), then looks for its listing: when the first kept none (a bad file,
        steps from its own index), the waiters all read at once, not one after another."""
        key = (scope, commit, folder)
        with self._lock:
            flight = self._flights.get(key)
            first = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not first:
            flight.done.wait(FLIGHT_WAIT)
            yield False
            return
        try:
            yield True
        finally:
            flight.done.set()

    def keep_listing(self, scope: str, commit: str, folder: str, steps: tuple[Step, ...]) -> None:
        """Keep what a reading of `folder` at `commit` found (only a reading with no problem:
        a bad file is refused again on every sync, naming its own path)."""
        cost = listing_cost(steps, self.max_listed_bytes)
        if cost > self.max_listed_bytes:
            return
        key = (scope, commit, folder)
        with self._lock:
            old = self._listings.pop(key, None)
            if old is not None:
                self._listed -= old[1]
            self._listings[key] = (steps, cost)
            self._listed += cost
            while self._listed > self.max_listed_bytes or len(self._listings) > MAX_LISTINGS:
                _, (_steps, dropped) = self._listings.popitem(last=False)
                self._listed -= dropped

    def parse(self, scope: str, path: str, blob: str, read: Callable[[str], bytes]) -> Step:
        """The step in file `path`, blob `blob` of remote `scope`; `read` fetches the bytes of
        a blob not seen before. Raises StepFileError for a bad file (and keeps nothing)."""
        key = (scope, blob)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
        if hit is not None:
            return Step(name=hit[0], content=hit[1], path=path, blob=blob)
        data = read(blob)
        name, content = parse_step_file(path, data)
        self._keep(key, (name, content, entry_cost(name, content)))
        return Step(name=name, content=content, path=path, blob=blob)

    def _keep(self, key: tuple[str, str], entry: tuple[str, StepContent, int]) -> None:
        if entry[2] > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = entry
            self._bytes += entry[2]
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped[2]

    def __len__(self) -> int:
        return len(self._entries)
