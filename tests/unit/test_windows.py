"""Change windows as a pure rule (`syncd.core.windows`): when changes may apply, when they may
next, across Europe/Berlin's DST changes and midnight; and the config's refusals of bad windows
and promotions, each naming its key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from syncd.config import Config, load_config
from syncd.config.types import PromotionConfig, WindowConfig
from syncd.core.errors import ConfigError
from syncd.core.windows import gate

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN).timestamp()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def deny(schedule: str, hours: float, zone: str = "Europe/Berlin", **kw: Any) -> WindowConfig:
    return WindowConfig("deny", schedule, hours * 3600, zone, **kw)


def allow(schedule: str, hours: float, zone: str = "Europe/Berlin") -> WindowConfig:
    return WindowConfig("allow", schedule, hours * 3600, zone)


FREEZE = deny("0 18 * * 5", 63)  # Friday 18:00 to Monday 09:00
OFFICE = allow("0 8 * * 1-5", 10)  # weekdays 08:00 to 18:00


def test_a_deny_window_holds_until_it_ends() -> None:
    assert gate([FREEZE], berlin(2025, 6, 6, 17, 59)).open  # Friday, before the freeze
    held = gate([FREEZE], berlin(2025, 6, 6, 18, 0))
    assert not held.open and held.until == berlin(2025, 6, 9, 9, 0)
    assert held.closing == (FREEZE,) and held.manual_sync
    assert gate([FREEZE], berlin(2025, 6, 9, 9, 0)).open  # the end is open


def test_outside_every_allow_window_changes_wait_for_the_next_one() -> None:
    assert gate([OFFICE], berlin(2025, 6, 10, 12, 0)).open  # a Tuesday noon
    evening = gate([OFFICE], berlin(2025, 6, 10, 19, 0))
    assert not evening.open and evening.until == berlin(2025, 6, 11, 8, 0)
    weekend = gate([OFFICE], berlin(2025, 6, 7, 12, 0))
    assert weekend.until == berlin(2025, 6, 9, 8, 0)
    # A deny window inside office hours: the next opening is after it, not at its start.
    lunch = deny("0 12 * * *", 1)
    assert gate([OFFICE, lunch], berlin(2025, 6, 10, 12, 30)).until == berlin(2025, 6, 10, 13)
    # Both together: Friday evening waits for Monday 09:00 (the freeze), not 08:00 (office).
    assert gate([FREEZE, OFFICE], berlin(2025, 6, 6, 20, 0)).until == berlin(2025, 6, 9, 9, 0)


def test_the_spring_forward_in_berlin() -> None:
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST. A window from 01:00 for 3h ends at 04:00 on
    # the wall clock, which is two real hours later.
    night = deny("0 1 * * *", 3)
    assert not gate([night], utc(2025, 3, 30, 1, 30)).open  # 03:30 CEST
    assert gate([night], utc(2025, 3, 30, 1, 30)).until == utc(2025, 3, 30, 2, 0)
    assert gate([night], utc(2025, 3, 30, 2, 0)).open  # 04:00 CEST
    # 02:30 does not exist that night: the window opens right after the jump, once.
    skipped = deny("30 2 * * *", 1)
    assert gate([skipped], utc(2025, 3, 30, 0, 59)).open  # 01:59 CET
    held = gate([skipped], utc(2025, 3, 30, 1, 0))  # 03:00 CEST
    assert not held.open and held.until == utc(2025, 3, 30, 2, 0)  # 04:00 CEST


def test_the_fall_back_in_berlin() -> None:
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET. From 01:00 for 3h ends at 04:00 CET,
    # four real hours later.
    night = deny("0 1 * * *", 3)
    assert gate([night], utc(2025, 10, 25, 22, 59)).open  # 00:59 CEST
    assert gate([night], utc(2025, 10, 25, 23, 0)).until == utc(2025, 10, 26, 3, 0)
    assert not gate([night], utc(2025, 10, 26, 2, 30)).open  # 03:30 CET
    # 02:30 comes twice: the window opens once, at the first, for its 10 minutes.
    twice = deny("30 2 * * *", 1 / 6)
    first = gate([twice], utc(2025, 10, 26, 0, 35))  # 02:35 CEST
    assert not first.open and first.until == utc(2025, 10, 26, 0, 40)
    assert gate([twice], utc(2025, 10, 26, 1, 35)).open  # 02:35 CET: not again


def test_a_window_spanning_midnight() -> None:
    late = deny("0 22 * * *", 4, zone="UTC")
    assert gate([late], utc(2025, 6, 10, 21, 59)).open
    assert gate([late], utc(2025, 6, 11, 1, 0)).until == utc(2025, 6, 11, 2, 0)
    nights = allow("0 22 * * *", 4, zone="UTC")  # changes only at night
    assert gate([nights], utc(2025, 6, 11, 1, 0)).open
    assert gate([nights], utc(2025, 6, 11, 3, 0)).until == utc(2025, 6, 11, 22, 0)


def test_a_window_that_never_opens_has_no_until_and_is_computed_quickly() -> None:
    always = deny("* * * * *", 2 / 60, zone="UTC", manual_sync=False)
    held = gate([always], utc(2025, 6, 10, 12, 0, 30))
    assert not held.open and held.until is None and not held.manual_sync
    # Overlapping occurrences are one closed stretch: its end is the last one's.
    assert gate([deny("0 * * * *", 1.5, "UTC")], utc(2025, 1, 1, 0, 10)).open is False


# -- the config -----------------------------------------------------------------------------


def load(tmp_path: Path, defaults: Any = None, *workspaces: dict[str, Any]) -> Config:
    src = {"url": "https://git.example/acme/steps.git"}
    doc: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "workspaces": [{"name": w["id"], "source": src, **w} for w in workspaces],
    }
    if defaults is not None:
        doc["defaults"] = defaults
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path, {})


def refused(tmp_path: Path, defaults: Any = None, *workspaces: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, defaults, *workspaces)
    return str(e.value)


def test_windows_and_promotion_are_read_and_a_workspaces_own_replace_the_defaults(
    tmp_path: Path,
) -> None:
    defaults = {
        "windows": [{"kind": "deny", "schedule": "0 18 * * 5", "duration": "63h",
                     "timezone": "Europe/Berlin", "manual_sync": False}],
        "promotion": {"after": "staging", "soak": "15m"},
    }  # fmt: skip
    own = [{"kind": "allow", "schedule": "0 8 * * 1-5", "duration": "10h"}]
    config = load(
        tmp_path,
        defaults,
        {"id": "staging"},
        {"id": "prod"},
        {"id": "lab", "windows": own, "promotion": None},
        {"id": "edge", "windows": []},
    )
    staging, prod, lab, edge = config.workspaces
    freeze = WindowConfig("deny", "0 18 * * 5", 63 * 3600, "Europe/Berlin", False)
    # A default promotion is not the workspace's it names: staging follows no one.
    assert staging.windows == (freeze,) and staging.promotion is None
    assert prod.windows == (freeze,) and prod.promotion == PromotionConfig("staging", 900)
    assert lab.windows == (WindowConfig("allow", "0 8 * * 1-5", 36000),)
    assert lab.promotion is None and edge.windows == ()


@pytest.mark.parametrize(
    ("window", "key", "words"),
    [
        ({"schedule": "61 * * * *"}, "schedule", "not a cron expression"),
        ({"schedule": "0 18 * *"}, "schedule", "5 fields"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "unknown time zone"),
        ({"duration": "0s"}, "duration", "more than 0"),
        ({"kind": "maybe"}, "kind", "expected one of allow, deny"),
        ({"when": "now"}, "when", "unknown key"),
    ],
)
def test_a_bad_window_is_refused_naming_its_key(
    tmp_path: Path, window: dict[str, Any], key: str, words: str
) -> None:
    bad = {"kind": "deny", "schedule": "0 18 * * 5", "duration": "1h"} | window
    text = refused(tmp_path, None, {"id": "prod", "windows": [bad]})
    assert f'workspaces[0] (id "prod").windows[0].{key}' in text and words in text, text
    # The same in defaults.
    text = refused(tmp_path, {"windows": [bad]}, {"id": "prod"})
    assert f"defaults.windows[0].{key}" in text, text


def test_bad_promotions_are_refused_naming_the_key(tmp_path: Path) -> None:
    text = refused(tmp_path, None, {"id": "prod", "promotion": {"after": "stagin"}})
    assert "workspaces[0] (id prod).promotion.after" in text.replace('"', "")
    assert 'no workspace "stagin"' in text
    text = refused(tmp_path, None, {"id": "prod", "promotion": {"after": "prod"}})
    assert "promoted after itself" in text
    text = refused(
        tmp_path,
        None,
        {"id": "a", "promotion": {"after": "b"}},
        {"id": "b", "promotion": {"after": "c"}},
        {"id": "c", "promotion": {"after": "a"}},
        {"id": "d", "promotion": {"after": "a"}},
    )
    assert text.count("promotions form a cycle") == 1, text
    assert '"a" -> "b" -> "c" -> "a"' in text
    text = refused(tmp_path, None, {"id": "prod", "promotion": {"soak": "1h"}})
    assert "promotion.after: is required" in text
