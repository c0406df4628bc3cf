"""Pages of the workspace list: `GET /api/v1/workspaces?limit=&cursor=&tag=&status=&health=`
and the console's list page choose their workspaces here, by one set of rules.

- Order: a page holds workspaces by id (ids are ASCII, `[A-Za-z0-9._-]`, compared as text) and
  starts after the id its cursor names. A workspace added or removed between two pages shifts
  nothing else: a walk over every page neither repeats nor skips one that was there throughout.
- The cursor is opaque to clients: base64url (unpadded) of `v1:` and the last id of the page
  before. One that does not decode, or of another version, is refused naming `cursor`. It only
  says where to start: whatever id it names, a page holds only what the caller may read.
- Without `limit` and `cursor` the answer is every matching workspace in config order, as
  before pages existed (the contract's list): the compatible default, which clients should
  leave for pages.
- Cost: the configured workspaces are sorted by id once per config (`Ordered`); a page starts
  at its cursor by bisection and looks at candidates (tag, then access, then a filter) only
  until it is full, then reads the store for its own rows. A `status` or `health` filter reads
  the candidates' states in growing batches (`Store.states`, `Store.healths`), never one
  workspace at a time; a rare filter may so look through every workspace, in memory and in a
  few statements per thousand.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from syncd.config import WorkspaceConfig
from syncd.core.access import Access
from syncd.core.errors import SyncdError
from syncd.core.model import Health, HealthRecord, Status, SyncState
from syncd.service.access import sees
from syncd.service.audit import Actor
from syncd.store import Store
from syncd.sync.health import told_by

if TYPE_CHECKING:
    from syncd.service.workspaces import Workspaces

MAX_LIMIT = 500  # the most a page of the API holds: about 400 KB of workspace views
DEFAULT_LIMIT = 100  # a page when a cursor comes without `limit`, and the console's page
# The console's page at most, and so the most ids one live stream watches: their ids travel
# in the stream's URL (128 characters each at most, under the 16 KiB a request head may take).
CONSOLE_MAX_LIMIT = 100
CURSOR_VERSION = "v1"
MAX_CURSOR = 256  # characters: a 128-character id and the version take 176
FIRST_BATCH = 64  # candidates whose state a filter reads at first; each batch doubles...
MAX_BATCH = 1000  # ...up to this many
MAX_ACCESSES = 256  # accesses (tokens, role sets) whose readable tags are kept per config
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
E = TypeVar("E", Status, Health)


class BadParameter(SyncdError):
    """A query parameter of a list that cannot be used: the API answers 400 naming it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class Query:
    """What a list asks for. `limit` None: everything (the compatible default)."""

    limit: int | None = None
    after: str | None = None  # the cursor's id: the page starts after it
    tag: str | None = None
    status: Status | None = None
    health: Health | None = None

    def filters(self) -> dict[str, str]:
        """The filters set, as query parameters (for the links to the next page)."""
        named = {"tag": self.tag, "status": self.status, "health": self.health}
        return {k: str(v) for k, v in named.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Page:
    workspaces: list[WorkspaceConfig]
    next_cursor: str | None  # None: this is the last page (or the whole list)


def parse(params: Mapping[str, str], default: int | None = None, most: int = MAX_LIMIT) -> Query:
    """A list's query from its parameters; BadParameter naming the one that cannot be used.
    `default`: the page without `limit` (None: everything, unless a cursor asks for pages).
    An empty value is no value (a form's "any")."""
    cursor = params.get("cursor") or None
    after = decode_cursor(cursor) if cursor is not None else None
    limit = _limit(params.get("limit") or None, most)
    if limit is None:
        limit = default
    if limit is None and after is not None:  # a cursor asks for pages, of the usual size
        limit = min(DEFAULT_LIMIT, most)
    return Query(
        limit,
        after,
        params.get("tag") or None,
        _choice(params, "status", Status),
        _choice(params, "health", Health),
    )


def _limit(raw: str | None, most: int) -> int | None:
    if raw is None:
        return None
    # isdigit() is also true of "²"; and a run of 5,000 digits is no page size either.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= most):
        raise BadParameter("limit", f"`limit` must be a whole number from 1 to {most}")
    return int(raw)


def _choice(params: Mapping[str, str], name: str, kind: type[E]) -> E | None:
    raw = params.get(name) or None
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        known = ", ".join(kind)
        raise BadParameter(name, f"`{name}` must be one of {known}") from None


def encode_cursor(last_id: str) -> str:
    text = f"{CURSOR_VERSION}:{last_id}".encode()
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor names; BadParameter when it is not one this syncd wrote."""
    bad = BadParameter("cursor", "`cursor` is not a cursor this API gave (pass next_cursor as is)")
    if len(cursor) > MAX_CURSOR or not _BASE64URL.fullmatch(cursor):
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise bad from None
    version, colon, last = text.partition(":")
    if version != CURSOR_VERSION or not colon or not last or not last.isprintable():
        raise bad
    return last


# -- choosing a page ---------------------------------------------------------------------------

# What a filter needs of a batch of candidates: each one's status and (when asked) health.
Conditions = Callable[[Sequence[WorkspaceConfig]], Mapping[str, tuple[Status, Health | None]]]


@dataclass(frozen=True, slots=True)
class _Sorted:
    source: Sequence[WorkspaceConfig]  # the config's tuple it was made from
    ordered: tuple[WorkspaceConfig, ...]  # by id
    ids: list[str]  # their ids, in that order (for bisect)
    index: dict[str, WorkspaceConfig]
    tags: dict[Access, list[str]]  # the tags each access may read (see Ordered.tags)


class Ordered:
    """The configured workspaces by id, sorted and indexed once per config (made again when a
    reload gives a new one): a page starts at its cursor by bisection, and the console's live
    rows find their workspaces by id, without a pass over them all. Shared by threads: each
    reads one made snapshot; two that remake it at once make the same."""

    def __init__(self) -> None:
        self._made = _Sorted((), (), [], {}, {})

    def _of(self, workspaces: Sequence[WorkspaceConfig]) -> _Sorted:
        made = self._made
        if made.source is not workspaces:
            ordered = tuple(sorted(workspaces, key=_id))
            index = {ws.id: ws for ws in ordered}
            ids = [ws.id for ws in ordered]
            made = self._made = _Sorted(workspaces, ordered, ids, index, {})
        return made

    def after(
        self, workspaces: Sequence[WorkspaceConfig], after: str | None
    ) -> Iterator[WorkspaceConfig]:
        """Those after the id `after` (all for None), by id, as they are asked for."""
        made = self._of(workspaces)
        start = 0 if after is None else bisect.bisect_right(made.ids, after)
        return itertools.islice(made.ordered, start, None)

    def configured(
        self, workspaces: Sequence[WorkspaceConfig], ids: Iterable[str]
    ) -> list[WorkspaceConfig]:
        """The workspaces of `ids` that are configured."""
        index = self._of(workspaces).index
        return [index[ws_id] for ws_id in ids if ws_id in index]

    def tags(self, workspaces: Sequence[WorkspaceConfig], actor: Actor) -> list[str]:
        """The tags of the workspaces `actor` may read, sorted (the console's tag filter, on
        every page): worked out once per config and access."""
        made = self._of(workspaces)
        found = made.tags.get(actor.access)
        if found is None:
            seen: set[str] = set()
            for ws in made.ordered:  # access is asked only of a workspace with a new tag
                if not seen.issuperset(ws.tags) and sees(actor, ws):
                    seen.update(ws.tags)
            found = sorted(seen)
            if len(made.tags) < MAX_ACCESSES:
                made.tags[actor.access] = found
        return found


def candidates(
    ordered: Ordered, workspaces: Sequence[WorkspaceConfig], query: Query
) -> Iterable[WorkspaceConfig]:
    """The workspaces a page may hold by what the config says of them (after the cursor and
    tagged), in the page's order: for pages, by id from the cursor on, as they are asked for
    (a page's cost is not the whole list's); for the whole list, in config order."""
    tag = query.tag
    if query.limit is None:
        return [ws for ws in workspaces if tag is None or tag in ws.tags]
    return (ws for ws in ordered.after(workspaces, query.after) if tag is None or tag in ws.tags)


def select(
    found: Iterable[WorkspaceConfig],
    readable: Callable[[WorkspaceConfig], bool],
    query: Query,
    conditions: Conditions,
) -> Page:
    """The page of `found` (candidates, in order) that the caller may read and the status and
    health filters keep. Both are asked only until one more than the page is found (so the
    next cursor is given only when another page holds something): a page's cost is its own,
    whatever the number of workspaces after it. A filter reads candidates in growing batches."""
    wanted = None if query.limit is None else query.limit + 1
    filtered = query.status is not None or query.health is not None
    chosen: list[WorkspaceConfig] = []
    batch: list[WorkspaceConfig] = []
    size = FIRST_BATCH

    def keep(batch: list[WorkspaceConfig]) -> list[WorkspaceConfig]:
        told = conditions(batch)
        return [ws for ws in batch if _keeps(query, *told[ws.id])]

    for ws in found:
        if wanted is not None and len(chosen) >= wanted:
            break
        if not readable(ws):
            continue
        if not filtered:
            chosen.append(ws)
            continue
        batch.append(ws)
        if len(batch) >= size:
            chosen += keep(batch)
            batch, size = [], min(size * 2, MAX_BATCH)
    if batch and (wanted is None or len(chosen) < wanted):
        chosen += keep(batch)
    if query.limit is None or len(chosen) <= query.limit:
        return Page(chosen, None)
    shown = chosen[: query.limit]
    return Page(shown, encode_cursor(shown[-1].id))


def _keeps(query: Query, status: Status, health: Health | None) -> bool:
    return (query.status in (None, status)) and (query.health in (None, health))


def _id(ws: WorkspaceConfig) -> str:
    return ws.id


# -- the use case ------------------------------------------------------------------------------


def page(service: Workspaces, actor: Actor, query: Query) -> Page:
    """The page of workspaces `actor` may read that `query` asks for (blocking: the store)."""
    found = candidates(service.ordered, service.config.workspaces, query)
    with_health = query.health is not None
    return select(
        found,
        lambda ws: sees(actor, ws),
        query,
        lambda batch: conditions(service.store, batch, with_health),
    )


def first_ids(service: Workspaces, actor: Actor, limit: int = DEFAULT_LIMIT) -> list[str]:
    """The ids of the first page of the unfiltered list (from the config alone: no filter)."""
    return [ws.id for ws in page(service, actor, Query(limit=limit)).workspaces]


def conditions(
    store: Store, batch: Sequence[WorkspaceConfig], with_health: bool
) -> dict[str, tuple[Status, Health | None]]:
    """Each workspace's status and (`with_health`) health, read in a few statements."""
    ids = [ws.id for ws in batch]
    states = store.states(ids)
    records = store.healths(ids) if with_health else {}
    return {
        ws.id: (
            states[ws.id].status,
            health_of(store, ws, states[ws.id], records.get(ws.id)) if with_health else None,
        )
        for ws in batch
    }


def health_of(
    store: Store, ws: WorkspaceConfig, state: SyncState, record: HealthRecord | None
) -> Health:
    """The health `HealthKeeper.current` tells, from a record read in a batch."""
    return told_by(store, ws, state, record).health
