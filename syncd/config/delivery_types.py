"""The types of a workspace's delivery keys: its change `windows`, its `promotion` gate and its
run `history`. Frozen, no I/O (`types` re-exports them; `delivery` and `history` parse them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WindowConfig:
    """A change window (`windows:`): from each time `schedule` (a cron expression, read in
    `timezone`) fires, for `duration` seconds. Inside a `deny` window, or outside every `allow`
    window when any exists, an automatic workspace applies nothing by itself."""

    kind: Literal["allow", "deny"]
    schedule: str
    duration: float
    timezone: str = "UTC"  # an IANA name
    manual_sync: bool = True  # a manual sync inside a closed window is allowed


@dataclass(frozen=True)
class PromotionConfig:
    """`promotion:`: apply only commits that workspace `after` has applied (or a descendant of
    them) and stayed Healthy with for `soak` seconds."""

    after: str
    soak: float = 0.0


@dataclass(frozen=True)
class HistoryConfig:
    """`history:`: runs beyond the newest `keep_runs`, or older than `keep_days`, are pruned
    (the newest successful run always stays); None keeps them."""

    keep_runs: int | None = None
    keep_days: float | None = None
