"""The pure diff between the steps git wants and the steps a workspace holds."""

from __future__ import annotations

from collections.abc import Mapping

from syncd.config.types import DeleteLimit
from syncd.core.errors import PlanRefused
from syncd.core.model import Plan, StepChange, StepContent


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


def guard_plan(
    plan: Plan, live_total: int, allow_empty: bool, max_deletes: DeleteLimit | None = None
) -> None:
    """Refuse a plan that would leave the workspace empty, unless allowed; and, with
    `max_deletes`, a plan that deletes more steps than that at once.

    As Argo CD's `allowEmpty`, only an empty *result* is refused: a commit that renames every
    step (deleting all and creating as many) applies. An empty export usually means a wrong
    path or a botched commit, not an intent to wipe prod.
    """
    if live_total == 0:
        return  # nothing to lose
    after = live_total - len(plan.deletes) + len(plan.creates)
    if after <= 0 and not allow_empty:
        raise empty_refused(live_total, "the commit")
    if max_deletes is not None and len(plan.deletes) > max_deletes.allowed(live_total):
        raise PlanRefused(
            f"the commit would delete {len(plan.deletes)} of the {live_total} steps of the "
            f"workspace, over its `max_deletes: {max_deletes}` "
            f"(at most {max_deletes.allowed(live_total)}); raise `max_deletes` if that is intended"
        )


def empty_refused(live_total: int, cause: str) -> PlanRefused:
    """The guard's refusal of an empty result, whichever phase finds it (`cause` names what
    it saw: the commit, or a folder that is gone)."""
    return PlanRefused(
        f"{cause} would leave the workspace empty, deleting all {live_total} of its steps; "
        "set `allow_empty: true` on the workspace if that is intended"
    )
