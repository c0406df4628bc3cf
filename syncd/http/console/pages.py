"""What the console's templates show, shaped from the service's views. Pure: no I/O.

Every string here goes through Jinja2's autoescape; nothing is marked safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from syncd.core.model import Plan, StepChange
from syncd.core.times import parse_time
from syncd.core.urls import commit_url
from syncd.service.paging import DEFAULT_LIMIT, Query

MAX_CHANGES = 200  # changes shown on a workspace's page; the API's diff has them all
MAX_DIFF_LINES = 400  # lines of one change's diff
MAX_LINE_CHARS = 2000


def short(sha: str | None) -> str:
    return sha[:10] if sha else ""


def age(when: float | str | None, now: float) -> str:
    """`12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`; empty for no time. `when` is unix
    seconds or an RFC 3339 time as the views give it."""
    if when is None:
        return ""
    try:
        seconds = parse_time(when)
    except ValueError:
        return ""
    ago = max(0.0, now - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if ago >= size:
            return f"{int(ago // size)} {unit} ago"
    return f"{int(ago)} s ago"


def health_label(view: dict[str, Any]) -> str:
    """The view's own health where it has one; else told from the last run."""
    health = view.get("health")
    if isinstance(health, str):
        return health
    if isinstance(health, dict) and isinstance(health.get("status"), str):
        return str(health["status"])
    last = view.get("last_run")
    if last is None:
        return "Unknown"
    return "Failing" if last.get("result") == "failed" else "Healthy"


def row(view: dict[str, Any], now: float) -> dict[str, Any]:
    """One workspace as the table and the live events show it."""
    last = view.get("last_run") or None
    applied = view.get("last_applied_revision")
    stamp = (last.get("finished_at") or last.get("started_at")) if last else None
    when = parse_time(stamp) if stamp is not None else None  # unix seconds, for the live ages
    return {
        "id": view["id"],
        "name": view["name"],
        "tags": view.get("tags", []),
        "mode": view["mode"],
        "status": view["status"],
        "suspended": bool(view.get("suspended")),
        "pinned_revision": view.get("pinned_revision"),
        "blocked": view.get("blocked"),  # {"reason", "until", "detail"} or None
        "health": health_label(view),
        "applied": short(applied),
        "applied_full": applied or "",
        "applied_url": commit_url(view["source"]["url"], applied) if applied else None,
        "signed_by": view.get("signed_by") or "",  # whose verified signature it carries
        "last_run_result": last.get("result") if last else "",
        "last_run_id": last.get("id") if last else "",
        "last_run_at": when,
        "last_run_age": age(when, now),
        "last_run_error": (last.get("error") or "") if last else "",
        "changed_outside": view.get("changed_outside", 0),
    }


def paging_links(prefix: str, query: Query, next_cursor: str | None) -> dict[str, str | None]:
    """The list page's links: to the next page (carrying its cursor) and back to the first,
    each with the page's filters and size. None where there is no such page."""
    keep = query.filters()
    if query.limit is not None and query.limit != DEFAULT_LIMIT:
        keep["limit"] = str(query.limit)
    return {
        "next": f"{prefix}/?{urlencode({**keep, 'cursor': next_cursor})}" if next_cursor else None,
        "first": f"{prefix}/{'?' if keep else ''}{urlencode(keep)}" if query.after else None,
    }


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add, del, hunk, meta, same
    text: str


@dataclass(frozen=True)
class ChangeView:
    action: str
    name: str
    lines: tuple[DiffLine, ...]
    hidden_lines: int  # lines left out of a very large diff


def diff_lines(diff: str, limit: int = MAX_DIFF_LINES) -> tuple[tuple[DiffLine, ...], int]:
    all_lines = diff.splitlines()
    shown = []
    for text in all_lines[:limit]:
        if text.startswith(("+++", "---")):
            kind = "meta"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " … (line cut)"
        shown.append(DiffLine(kind, text))
    return tuple(shown), max(0, len(all_lines) - limit)


def plan_changes(plan: Plan, limit: int = MAX_CHANGES) -> tuple[list[ChangeView], int]:
    """The plan's changes with their diffs, at most `limit`; and how many were left out."""
    changes: tuple[StepChange, ...] = plan.changes
    views = []
    for change in changes[:limit]:
        lines, hidden = diff_lines(change.diff)
        views.append(ChangeView(change.action, change.name, lines, hidden))
    return views, max(0, len(changes) - limit)
