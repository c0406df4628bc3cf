"""The console's live updates (`/ui/events`, server-sent events): bounded, and cheap per stream.

Every open stream holds a connection and a place here, counted per session and in all:

- a session keeps at most `PER_SESSION` streams (one per open page, so per browser tab). A page
  that opens one more ends the session's oldest stream, cleanly (a last comment, then the end);
- a stream that comes back (the browser's EventSource reconnecting after a stream ended: it sends
  `Last-Event-ID`, which every stream sets at its start) never ends another. When its session
  is full it is answered 204, and EventSource then stops for good. So five tabs on four places
  do not take turns ending each other every few seconds: the tab that lost its stream stays as
  it is, without live updates, until it is reloaded (which makes it the newest again);
- past `TOTAL` streams in all, a new one is answered 429 with `Retry-After`.

What streams send comes from one shared look at the store per `EVENT_INTERVAL`, made only while
some stream is open (`Feed`). A stream picks the rows that changed since it last sent, so its
cost is a wake-up per interval, not a read of the store: a thousand tabs read the store as
often as one does. Each stream watches the rows its page shows (at most `MAX_WATCHED` ids: a
page of the list, or one workspace), and the look reads only the union of what open streams
watch: ten thousand configured workspaces cost what the pages on screen show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from syncd.app import Parts
from syncd.config import WorkspaceConfig
from syncd.core.errors import SyncdError
from syncd.http.connections import Tally
from syncd.http.console import pages
from syncd.ops.logs import fields
from syncd.service.access import sees
from syncd.service.audit import Actor
from syncd.service.paging import CONSOLE_MAX_LIMIT

log = logging.getLogger("syncd.console")

# Four: browsers open at most six HTTP/1.1 connections to a host, and each stream holds one for
# as long as its page is open; four tabs' streams leave two for pages and forms.
PER_SESSION = 4
# In all, over every session: a console is for a few people, and each stream holds one of the
# daemon's connections (`server.max_connections`, 512 when the descriptor limit is 1,024).
TOTAL = 200
RETRY_AFTER_SECONDS = 30  # streams end by themselves within STREAM_SECONDS, tabs close sooner
EVENT_INTERVAL = 1.0  # seconds between looks at the store while a stream is open
STREAM_SECONDS = 300.0  # a stream ends after this; the browser reconnects on its own
RECONNECT_MS = 2000  # how long the browser waits before it reconnects a stream that ended
DROPPED = ": ended: this session opened more live streams than it may keep; the newest stay\n\n"
MAX_WATCHED = CONSOLE_MAX_LIMIT  # ids one stream watches at most: a page of the list


class TooManyStreams(SyncdError):
    """Every place for a stream is taken (`TOTAL`): try again later."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} live streams are already open, the most this console keeps; "
            f"try again in {RETRY_AFTER_SECONDS} s (pages work without them)"
        )
        self.retry_after = RETRY_AFTER_SECONDS


class SessionFull(SyncdError):
    """A stream coming back to a session that holds all it may: it must not end another."""


@dataclass(eq=False)
class Ticket:
    """One open stream's place: `wake` is set when there is news for it, or it was dropped."""

    session: str
    serial: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False


class Streams:
    """The open streams, oldest first per session, within both limits. Bookkeeping only."""

    def __init__(self, per_session: int, total: int) -> None:
        self.per_session, self.total = per_session, total
        self.count = 0
        self._sessions: dict[str, list[Ticket]] = {}
        self._serial = 0

    def open(self, session: str, returning: bool) -> Ticket:
        """A place for a new stream of `session`; `returning` when the browser reconnects one."""
        mine = self._sessions.get(session, [])
        while len(mine) >= self.per_session:
            if returning:
                raise SessionFull(f"this session already has {self.per_session} live streams")
            self.drop(mine[0])
        if self.count >= self.total:
            raise TooManyStreams(self.total)
        self._serial += 1
        ticket = Ticket(session, self._serial)
        self._sessions.setdefault(session, []).append(ticket)
        self.count += 1
        return ticket

    def close(self, ticket: Ticket) -> None:
        """The stream ended (however it did); closing twice is harmless."""
        mine = self._sessions.get(ticket.session, [])
        if ticket in mine:
            mine.remove(ticket)
            self.count -= 1
            if not mine:
                del self._sessions[ticket.session]

    def drop(self, ticket: Ticket) -> None:
        self.close(ticket)
        ticket.dropped = True
        ticket.wake.set()


class Feed:
    """The watched workspaces' rows as events, looked at once per interval for every stream,
    and only while at least one listens. Each row carries the version of the look that changed
    it. Only the rows some open stream watches are read and kept."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self.version = 0
        self._rows: dict[str, tuple[int, str, str]] = {}  # id: (changed at, compared, event)
        # Each open stream's wake, and the ids it watches (None: every workspace; no route of
        # the console asks for that, each passes a page's ids or one workspace's).
        self._listeners: dict[asyncio.Event, frozenset[str] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def subscribe(self, wake: asyncio.Event, watched: frozenset[str] | None) -> None:
        self._listeners[wake] = watched
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console live updates")

    def unsubscribe(self, wake: asyncio.Event) -> None:
        # The loop sees it is alone at its next turn and ends there: no cancelling, so that a
        # stream opened meanwhile finds it still running rather than a task about to end.
        self._listeners.pop(wake, None)

    def watched(self) -> set[str] | None:
        """The ids some open stream watches: what a look reads (None: every workspace)."""
        sets = list(self._listeners.values())
        return None if None in sets else set().union(*(w for w in sets if w is not None))

    def configured(self, ids: Iterable[str]) -> list[WorkspaceConfig]:
        """The workspaces of `ids` that are configured now (by id, not a pass over them all)."""
        parts = self._parts
        return parts.workspaces.ordered.configured(parts.config.workspaces, ids)

    def since(self, version: int, shown: Container[str]) -> tuple[str, int]:
        """The events of the rows changed after `version` of the workspaces `shown` (those
        the stream watches and its visitor may read), and the version they bring one to."""
        text = "".join(
            event
            for ws_id, (changed, _, event) in self._rows.items()
            if changed > version and ws_id in shown
        )
        return text, self.version

    async def _run(self) -> None:
        parts = self._parts
        try:
            while self._listeners and not (parts.closing or parts.stopping):
                await self._look()
                self._wake_all()
                await asyncio.sleep(EVENT_INTERVAL)
        finally:
            if not self._listeners:
                self._rows = {}  # rows kept while nobody looked would be old news to the next
            self._wake_all()  # stopping: the streams see it now, not at their next timeout

    async def _look(self) -> None:
        parts = self._parts
        try:
            ids = self.watched()
            chosen = list(parts.config.workspaces) if ids is None else self.configured(sorted(ids))
            views = await parts.store_calls.run(parts.workspaces.overviews, chosen)
        except Exception as e:  # the store locked or down: keep the rows and look again
            if not self._failing:
                error = str(e) or type(e).__name__
                log.warning("console live updates cannot read the store", extra=fields(error=error))
            self._failing = True
            return
        if self._failing:
            log.info("console live updates read the store again")
        self._failing = False
        self.version += 1
        now, rows = time.time(), {}
        for view in views:
            row = pages.row(view, now)
            compared = json.dumps({k: v for k, v in row.items() if k != "last_run_age"})
            old = self._rows.get(row["id"])
            if old is not None and old[1] == compared:
                rows[row["id"]] = old
            else:
                event = f"event: workspace\ndata: {json.dumps(row)}\n\n"
                rows[row["id"]] = (self.version, compared, event)
        self._rows = rows

    def _wake_all(self) -> None:
        for wake in self._listeners:
            wake.set()


class EventStream(StreamingResponse):
    """A stream that gives its place back however it ends: finished, dropped, the client gone,
    or never started at all (a client that left before the first byte)."""

    def __init__(
        self, body: AsyncIterator[str], ticket: Ticket, streams: Streams, headers: Mapping[str, str]
    ) -> None:
        super().__init__(body, media_type="text/event-stream", headers=headers)
        self._ticket, self._streams = ticket, streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._streams.close(self._ticket)


class LiveUpdates:
    """The console's streams: their places and their one shared feed."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self.streams = Streams(PER_SESSION, TOTAL)
        self.feed = Feed(parts)
        self._refused = Tally(f"console live streams refused (over the limit of {TOTAL}): 429")

    def open(
        self,
        session: str,
        signed_in: Callable[[], bool],
        watched: Collection[str],
        returning: bool,
        headers: Mapping[str, str],
        visitor: Callable[[], Actor],
    ) -> EventStream:
        """A stream for a session, or `SessionFull` (204) or `TooManyStreams` (429).
        `signed_in` says whether the session may still read: the stream ends once it may not.
        `watched`: the ids of the rows it sends (at most MAX_WATCHED), of those `visitor` (who
        the session is now) may read."""
        if len(watched) > MAX_WATCHED:
            raise ValueError(f"a stream watches at most {MAX_WATCHED} workspaces")
        try:
            ticket = self.streams.open(session, returning)
        except TooManyStreams:
            self._refused.add()
            raise
        feed = self.feed

        def readable(ids: Collection[str]) -> set[str]:  # by the visitor as it is now
            actor = visitor()
            return {ws.id for ws in feed.configured(ids) if sees(actor, ws)}

        # Only what the visitor may read is watched (and read by the feed's looks), and each
        # turn sends only what they may still read.
        mine = frozenset(readable(watched))
        body = stream(self._parts, feed, ticket, signed_in, mine, lambda: readable(mine))
        return EventStream(body, ticket, self.streams, headers)


async def stream(
    parts: Parts,
    feed: Feed,
    ticket: Ticket,
    signed_in: Callable[[], bool],
    watched: frozenset[str] | None,
    shown: Callable[[], Container[str]],
) -> AsyncIterator[str]:
    """One `workspace` event per watched workspace whose row changed, from the shared feed."""
    yield f"retry: {RECONNECT_MS}\nid: {ticket.serial}\n\n"
    seen = 0
    deadline = time.monotonic() + STREAM_SECONDS
    feed.subscribe(ticket.wake, watched)
    try:
        while not ticket.dropped:
            if parts.closing or parts.stopping or time.monotonic() >= deadline:
                return
            if not signed_in():
                return  # signed out, or its token removed, changed or without `read`
            ticket.wake.clear()  # before reading the feed, so that no news is missed
            news, seen = feed.since(seen, shown())
            if news:
                yield news
            # Woken by the feed's next look; the timeout notices a stop while the store is slow.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EVENT_INTERVAL):
                    await ticket.wake.wait()
        yield DROPPED
    finally:
        feed.unsubscribe(ticket.wake)
