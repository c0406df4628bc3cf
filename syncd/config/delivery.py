"""A workspace's `windows` (when automatic changes may apply) and `promotion` (after which
workspace, and how long after), per workspace or in `defaults`.

A part of `SectionParser` (which inherits them), as `report` is. A workspace's own key replaces
the default whole; `windows: []` or `promotion: null` turns a default off. A default
`promotion` is not applied to the workspace it names. Whether `promotion.after` names a
workspace, and whether promotions form a cycle, is checked once every file is read
(`syncd.config.load`), since the workspace named may come from an include.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from syncd.config.checks import MISSING, At, Checker, describe
from syncd.config.types import PromotionConfig, WindowConfig
from syncd.core.windows import schedule_problem, zone_problem

WINDOW_KEYS = ("kind", "schedule", "duration", "timezone", "manual_sync")
WINDOW_KINDS = ("allow", "deny")
PROMOTION_KEYS = ("after", "soak")
MAX_WINDOWS = 32  # each is looked at for every decision: a bounded few


class DeliverySections(Checker):
    """Parsers of `windows` and `promotion`."""

    def windows(self, at: At, value: Any) -> tuple[WindowConfig, ...]:
        items = self.items(at, value)
        if len(items) > MAX_WINDOWS:
            self.error(at, f"at most {MAX_WINDOWS} windows, got {len(items)}")
            return ()
        found = []
        for i, item in enumerate(items):
            before = len(self.problems)
            window = self.window(at.item(i), item)
            if window is not None and len(self.problems) == before:
                found.append(window)
        return tuple(found)

    def window(self, at: At, value: Any) -> WindowConfig | None:
        section = self.mapping(at, value, WINDOW_KEYS, required=("kind", "schedule", "duration"))
        if section is None:
            return None
        kind = section["kind"]
        if kind is not MISSING:
            kind = self.choice(at.key("kind"), kind, WINDOW_KINDS, "")
        schedule = self.string(at.key("schedule"), section.get("schedule"))
        if schedule and (problem := schedule_problem(schedule)) is not None:
            self.error(at.key("schedule"), f"{problem}, got {describe(schedule)}")
        duration = 0.0
        if section["duration"] is not MISSING:
            duration = self.positive_duration(at.key("duration"), section["duration"], 0.0)
        timezone = "UTC"
        if section.get("timezone") is not None:
            timezone = self.string(at.key("timezone"), section["timezone"]) or "UTC"
            if (problem := zone_problem(timezone)) is not None:
                self.error(at.key("timezone"), problem)
        manual = self.boolean(at.key("manual_sync"), section.get("manual_sync"), True)
        if kind not in WINDOW_KINDS or not schedule or duration <= 0:
            return None
        return WindowConfig(
            cast(Literal["allow", "deny"], kind), schedule, duration, timezone, manual
        )

    def promotion(self, at: At, value: Any) -> PromotionConfig | None:
        if value is None:
            return None
        section = self.mapping(at, value, PROMOTION_KEYS, required=("after",))
        if section is None:
            return None
        raw = section.get("after")
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)  # `after: 12345`, as ids are written
        after = self.string(at.key("after"), raw)
        soak = self.duration(at.key("soak"), section.get("soak"), 0.0)
        return PromotionConfig(after, soak) if after else None
