"""A workspace's `history` key (also in `defaults`): how much of its run history the store keeps.

A part of `SectionParser` (through `WorkspaceSections`, which inherits it). `keep_runs` is a
count of runs (at least 1), `keep_days` a number of days (more than 0; `90`, or `0.5` for twelve
hours): a number, not a duration string, because the key says its unit. Either may be left out,
and both together prune what either lets go. A workspace's `history` replaces the default's as a
whole (`history: {}` keeps everything even when `defaults` prunes). Without any, nothing is
pruned, as before the key existed.
"""

from __future__ import annotations

import math
from typing import Any

from syncd.config.checks import At, Checker, describe
from syncd.config.types import HistoryConfig

HISTORY_KEYS = ("keep_runs", "keep_days")
# A hundred years: beyond it a cut-off would be before any run could have started.
MAX_KEEP_DAYS = 36_500


class HistorySections(Checker):
    """The parser of `history`."""

    def history(self, at: At, value: Any, default: HistoryConfig) -> HistoryConfig:
        if value is None:
            return default
        section = self.mapping(at, value, HISTORY_KEYS)
        if section is None:
            return default
        keep_runs = None
        if section.get("keep_runs") is not None:
            keep_runs = self.integer(at.key("keep_runs"), section["keep_runs"], 0, 1) or None
        return HistoryConfig(
            keep_runs=keep_runs, keep_days=self.keep_days(at.key("keep_days"), section)
        )

    def keep_days(self, at: At, section: dict[str, Any]) -> float | None:
        value = section.get("keep_days")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint = " (a number of days, without a unit)" if isinstance(value, str) else ""
            self.error(at, f"expected a number of days such as 90, got {describe(value)}{hint}")
            return None
        if not math.isfinite(value) or not 0 < value <= MAX_KEEP_DAYS:
            self.error(at, f"must be more than 0 and at most {MAX_KEEP_DAYS} days, got {value}")
            return None
        return float(value)
