"""Times as users read them: RFC 3339 in UTC, in the API, the CLI's --json and the logs.

The store keeps unix seconds (floats sort and subtract); they become text only on the way out.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds: 2026-11-29T23:30:00.123Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def rfc3339_or_none(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def parse_time(value: object) -> float:
    """Unix seconds from an RFC 3339 string, or from a number (what older servers sent).
    Raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError(f"a time without a zone: {value!r}")
        return when.timestamp()
    raise ValueError(f"not a time: {value!r}")
