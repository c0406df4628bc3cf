"""Reading the audit as a caller may: the query from its parameters (the API's and the
console's, alike), and a page of the entries the caller may see. One home, so that the API,
the console and the CLI refuse the same parameters in the same words and show the same entries.

Who sees what: an entry of a workspace is shown to those who may read that workspace (its tags
as configured now); an entry of a workspace no longer configured, to those whose id globs
match its id (its tags are not known any more, so `tag:` patterns do not match it; a holder of
`*` sees it); an entry of no workspace (a sign-in, a config reload), to every holder of `audit`.

The store answers a query newest first; entries the caller may not see are left out after it,
so a page is read in batches until it holds `limit` entries or the entries run out, at most
MAX_SCANNED entries per page. A page cut short by that bound still has a `next_cursor`: the
caller asks again from there (a page may then hold fewer than `limit` entries, even none).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from syncd.config import WorkspaceConfig
from syncd.core.audit_model import MAX_FIELD, MAX_LIMIT, AuditEntry, AuditQuery
from syncd.core.times import parse_time
from syncd.service.audit import Actor
from syncd.store import Store

DEFAULT_LIMIT = 100
MAX_SCANNED = 5000  # entries read for one page at most
BATCH = 200  # entries read from the store at a time, at least
_EPOCH = re.compile(r"\d{1,12}(\.\d{1,9})?")
_CURSOR = re.compile(r"[1-9]\d{0,17}")  # an entry's id: below 10**18, within BIGINT


class BadParameter(ValueError):
    """A query parameter that cannot be used: `name` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"`{name}` {message}")
        self.name, self.message = name, message


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[AuditEntry]
    next_cursor: str | None  # None: no older entries


def parse_since(text: str) -> float:
    """Unix seconds from RFC 3339 with a zone (`2026-03-01T12:00:00Z`, `...+01:00`) or from
    seconds since the epoch (`1767225600`, `1767225600.5`); ValueError otherwise."""
    spec = text.strip()
    if _EPOCH.fullmatch(spec):
        return float(spec)
    if len(spec) > 40:
        raise ValueError("is too long for a time")
    try:
        seconds = parse_time(spec)
    except ValueError:
        raise ValueError(
            "must be an RFC 3339 time with a zone (2026-03-01T12:00:00Z) or seconds since the epoch"
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a time after 1970")
    return seconds


def parse_query(params: Mapping[str, str]) -> AuditQuery:
    """The query of `workspace`, `actor`, `since`, `limit` and `cursor`; BadParameter naming
    the first one that cannot be used."""
    text: dict[str, str | None] = {}
    for name in ("workspace", "actor"):
        value = params.get(name) or None
        if value is not None and len(value) > MAX_FIELD:
            raise BadParameter(name, f"may be at most {MAX_FIELD} characters")
        text[name] = value
    since = None
    if params.get("since"):
        try:
            since = parse_since(params["since"])
        except ValueError as e:
            raise BadParameter("since", str(e)) from None
    limit = DEFAULT_LIMIT
    raw = params.get("limit")
    if raw is not None:
        if not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
            raise BadParameter("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(raw)
    before = None
    cursor = params.get("cursor")
    if cursor:
        if not _CURSOR.fullmatch(cursor):
            raise BadParameter("cursor", "is not a cursor this server gave (`next_cursor`)")
        before = int(cursor)
    return AuditQuery(text["workspace"], text["actor"], since, before, limit)


class Visibility:
    """Which entries an actor may see, over the workspaces configured now."""

    def __init__(self, actor: Actor, workspaces: Iterable[WorkspaceConfig]) -> None:
        self.access = actor.access
        self.tags = {ws.id: ws.tags for ws in workspaces}

    def sees(self, ws_id: str | None) -> bool:
        if ws_id is None:
            return True
        # A workspace no longer configured: by its id alone (no tags known).
        return self.access.sees(ws_id, self.tags.get(ws_id, ()))


def read_page(
    store: Store,
    actor: Actor,
    workspaces: Iterable[WorkspaceConfig],
    query: AuditQuery,
    max_scanned: int = MAX_SCANNED,
) -> Page:
    """Up to `query.limit` entries the actor may see, newest first (blocking: the store)."""
    shown = Visibility(actor, workspaces)
    if query.workspace is not None and not shown.sees(query.workspace):
        return Page([], None)  # as for a workspace with no entries: its existence is not told
    found: list[AuditEntry] = []
    cursor, scanned = query.before_id, 0
    size = min(MAX_LIMIT, max(BATCH, query.limit + 1))
    while scanned < max_scanned:  # bounded: each round reads at least one entry, or ends
        batch = store.audit_entries(replace(query, before_id=cursor, limit=size))
        for entry in batch:
            scanned += 1
            cursor = entry.id
            if shown.sees(entry.workspace):
                found.append(entry)
                if len(found) > query.limit:  # one more than asked: there is a next page
                    last = found[query.limit - 1]
                    return Page(found[: query.limit], str(last.id))
        if len(batch) < size:
            return Page(found, None)  # the entries ran out
    return Page(found, None if cursor is None else str(cursor))
