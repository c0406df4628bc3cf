"""The pure diff between the steps git wants and the steps a workspace holds."""

from __future__ import annotations

from collections.abc import Mapping

from syncd.errors import PlanRefused
from syncd.model import Plan, StepChange, StepContent


def compute_plan(
    desired: Mapping[str, StepContent],
    live: Mapping[str, StepContent],
    unchanged_elsewhere: int = 0,
) -> Plan:
    """Plan to make `live` equal `desired`, authoritatively.

    Both maps may cover only part of a workspace (an incremental sync passes the names a commit
    touched plus those edited outside git); `unchanged_elsewhere` counts the steps left out.
    """
    creates: list[StepChange] = []
    updates: list[StepChange] = []
    deletes: list[StepChange] = []
    unchanged = unchanged_elsewhere
    for name in sorted(desired.keys() | live.keys()):
        want, have = desired.get(name), live.get(name)
        if want is not None and have is None:
            creates.append(StepChange("create", name, None, want))
        elif want is None and have is not None:
            deletes.append(StepChange("delete", name, have, None))
        elif want is not None and have is not None:
            if want == have:
                unchanged += 1
            else:
                updates.append(StepChange("update", name, have, want))
    return Plan(tuple(creates), tuple(updates), tuple(deletes), unchanged)


def guard_plan(plan: Plan, live_total: int, allow_empty: bool) -> None:
    """Refuse a plan that deletes every step the workspace has, unless allowed.

    An empty export usually means a wrong path or a botched commit, not an intent to wipe prod.
    """
    if allow_empty or live_total == 0:
        return
    if len(plan.deletes) >= live_total:
        raise wipe_refused(live_total, "the plan")


def wipe_refused(live_total: int, cause: str) -> PlanRefused:
    """The guard's refusal, whichever phase finds the wipe (`cause` names what it saw)."""
    return PlanRefused(
        f"{cause} would delete all {live_total} steps of the workspace; "
        "set `allow_empty: true` on the workspace if that is intended"
    )
