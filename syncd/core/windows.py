"""Change windows: whether an automatic workspace may apply now, and if not, when it may.

A window opens each time its cron `schedule` fires (read on the wall clock of its IANA
`timezone`) and stays open for `duration`, also counted on that wall clock: a freeze from
Friday 18:00 for 63h ends Monday 09:00 local time on either side of a DST change. Debian
cron's rules (cronsim's) say when a schedule fires across a change: a time skipped by the
spring-forward fires right after it, a time repeated by the fall-back fires once.

Changes are closed inside any `deny` window, and outside every `allow` window when there is
one. Pure: the time is given, nothing is read; every search is bounded (a look-back of one
firing per window, a look-ahead of `HORIZON` and `MAX_STEPS` jumps), so a schedule that never
lets changes through answers "not within the look-ahead" (`until` None) instead of looping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

HORIZON = 400 * 86400.0  # how far ahead the next opening is looked for
MAX_STEPS = 1000  # jumps from window edge to window edge within it
MAX_FIELDS = 5  # minute hour day-of-month month day-of-week, as crontab(5) has them


class Window(Protocol):
    """A window as the config gives it (`syncd.config.types.WindowConfig`)."""

    @property
    def kind(self) -> str: ...
    @property
    def schedule(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def timezone(self) -> str: ...
    @property
    def manual_sync(self) -> bool: ...


@dataclass(frozen=True)
class Gate:
    """What the windows say at one time. `until`: when changes may apply next (None when open,
    or when no opening is found within the look-ahead); `closing`: the windows that close it
    now; `manual_sync`: whether a person's sync may apply now (every closing window allows
    it)."""

    open: bool
    until: float | None = None
    closing: tuple[Window, ...] = ()

    @property
    def manual_sync(self) -> bool:
        return all(w.manual_sync for w in self.closing)


OPEN = Gate(True)


def schedule_problem(expr: str) -> str | None:
    """Why a cron expression cannot be a window's schedule (None: it can)."""
    if len(expr.split()) != MAX_FIELDS:
        return (
            "expected a cron expression of 5 fields (minute hour day month weekday), "
            f"got {len(expr.split())}"
        )
    try:
        _first_after(expr, "UTC", 0.0)
    except (CronSimError, ValueError) as e:
        return f"not a cron expression: {e}"
    except StopIteration:
        return "the schedule never fires"
    return None


def zone_problem(name: str) -> str | None:
    """Why a time zone name is not one zoneinfo knows (None: it is)."""
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {name!r} (an IANA name such as Europe/Berlin or UTC)"
    return None


def gate(windows: Sequence[Window], now: float) -> Gate:
    """Whether changes may apply at `now` (unix seconds), and if not, when they may next."""
    if not windows:
        return OPEN
    closing = _closing(windows, now)
    if not closing:
        return OPEN
    t: float | None = now
    for _ in range(MAX_STEPS):
        t = _next_edge(windows, t) if t is not None else None
        if t is None or t > now + HORIZON:
            break
        if not _closing(windows, t):
            return Gate(False, t, closing)
    return Gate(False, None, closing)


# -- one window -----------------------------------------------------------------------------


def _closing(windows: Sequence[Window], t: float) -> tuple[Window, ...]:
    """The windows that close changes at `t`: the deny windows inside which it is, else every
    allow window when there are some and it is inside none."""
    deny = tuple(w for w in windows if w.kind == "deny" and _end_if_inside(w, t) is not None)
    if deny:
        return deny
    allow = tuple(w for w in windows if w.kind == "allow")
    if allow and not any(_end_if_inside(w, t) is not None for w in allow):
        return allow
    return ()


def _next_edge(windows: Sequence[Window], t: float) -> float | None:
    """The next time after `t` at which changes may open: the latest end of the deny windows
    `t` is inside, else the next start of an allow window. None when there is none."""
    ends = [e for w in windows if w.kind == "deny" and (e := _end_if_inside(w, t)) is not None]
    if ends:
        return max(ends)
    starts = [s for w in windows if w.kind == "allow" and (s := _next_start(w, t)) is not None]
    return min(starts) if starts else None


def _end_if_inside(window: Window, t: float) -> float | None:
    """When the window's occurrence that holds `t` ends, or None when `t` is in none of them.
    The latest firing at or before `t` has the latest end: one look back is enough."""
    start = _last_at_or_before(window.schedule, window.timezone, t)
    if start is None:
        return None
    end = _end(start, window.duration)
    return end if start.timestamp() <= t < end else None


def _next_start(window: Window, t: float) -> float | None:
    try:
        return _first_after(window.schedule, window.timezone, t).timestamp()
    except StopIteration:
        return None


def _end(start: datetime, duration: float) -> float:
    """`duration` after `start` on its zone's wall clock (the same fold within a repeated hour,
    so that a short window in it is as long as it says); never before `start`."""
    wall = start.replace(tzinfo=None) + timedelta(seconds=duration)
    end = wall.replace(tzinfo=start.tzinfo, fold=start.fold).timestamp()
    return max(end, start.timestamp() + min(duration, 1.0))


# -- cron -----------------------------------------------------------------------------------


def _first_after(expr: str, zone: str, t: float) -> datetime:
    """The first firing strictly after `t`; StopIteration when none comes (cronsim looks 50
    years ahead)."""
    here = datetime.fromtimestamp(int(t), _zone(zone))
    return next(CronSim(expr, here))


def _last_at_or_before(expr: str, zone: str, t: float) -> datetime | None:
    """The last firing at or before `t` (firings fall on whole seconds)."""
    here = datetime.fromtimestamp(int(t) + 1, _zone(zone))
    try:
        return next(CronSim(expr, here, reverse=True))
    except StopIteration:
        return None


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC  # cronsim counts UTC without DST handling, as it should
    return ZoneInfo(name)
