"""The pure plan: authoritative create, update, delete; and the empty-workspace guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.config import DeleteLimit
from syncd.core.errors import PlanRefused
from syncd.core.model import StepContent
from syncd.core.plan import compute_plan, guard_plan


def c(do: str, enabled: bool = True) -> StepContent:
    return StepContent("true", do, enabled)


def test_creates_updates_deletes_and_unchanged() -> None:
    desired = {"new": c("n"), "same": c("s"), "changed": c("after")}
    live = {"same": c("s"), "changed": c("before"), "gone": c("g")}
    plan = compute_plan(desired, live)
    assert [x.name for x in plan.creates] == ["new"]
    assert [x.name for x in plan.updates] == ["changed"]
    assert [x.name for x in plan.deletes] == ["gone"]
    assert plan.unchanged == 1
    assert "-  before" in plan.updates[0].diff and "+  after" in plan.updates[0].diff


def test_flag_change_is_an_update_with_a_diff() -> None:
    plan = compute_plan({"a": c("x", enabled=False)}, {"a": c("x")})
    assert len(plan.updates) == 1
    assert "-enabled: true" in plan.updates[0].diff
    assert "+enabled: false" in plan.updates[0].diff


def test_equal_sides_make_an_empty_plan() -> None:
    plan = compute_plan({"a": c("x")}, {"a": c("x")}, unchanged_elsewhere=10)
    assert plan.empty and plan.unchanged == 11


def test_guard_refuses_an_empty_result_unless_allowed() -> None:
    plan = compute_plan({}, {"a": c("x"), "b": c("y")})
    with pytest.raises(PlanRefused, match="allow_empty") as e:
        guard_plan(plan, live_total=2, allow_empty=False)
    assert "would leave the workspace empty, deleting all 2 of its steps" in str(e.value)
    guard_plan(plan, live_total=2, allow_empty=True)


def test_guard_allows_replacing_every_step_with_other_steps() -> None:
    # A rename of every step, or a first real export over a placeholder: not an empty result.
    live = {"placeholder": c("p")}
    plan = compute_plan({f"s{i}": c(str(i)) for i in range(2000)}, live)
    assert len(plan.deletes) == 1 and len(plan.creates) == 2000
    guard_plan(plan, live_total=1, allow_empty=False)
    renamed = compute_plan({"new-a": c("x"), "new-b": c("y")}, {"a": c("x"), "b": c("y")})
    guard_plan(renamed, live_total=2, allow_empty=False)


def test_guard_counts_the_live_steps_outside_an_incremental_plan() -> None:
    # The commit deletes the 2 steps it touched; 8 more stay: not empty.
    plan = compute_plan({}, {"a": c("x"), "b": c("y")}, unchanged_elsewhere=8)
    guard_plan(plan, live_total=10, allow_empty=False)


def test_guard_allows_partial_deletes_and_empty_workspaces() -> None:
    guard_plan(compute_plan({"a": c("x")}, {"a": c("x"), "b": c("y")}), 2, False)
    guard_plan(compute_plan({}, {}), 0, False)


@pytest.mark.parametrize(
    ("limit", "deletes", "refused"),
    [
        (DeleteLimit(count=3), 3, False),
        (DeleteLimit(count=3), 4, True),
        (DeleteLimit(count=0), 1, True),
        (DeleteLimit(percent=20), 2, False),  # 20% of 10 live steps
        (DeleteLimit(percent=20), 3, True),
        (DeleteLimit(percent=100), 10, False),
    ],
)
def test_max_deletes_refuses_mass_deletions(
    limit: DeleteLimit, deletes: int, refused: bool
) -> None:
    live = {f"s{i}": c(str(i)) for i in range(10)}
    desired = {f"s{i}": c(str(i)) for i in range(deletes, 10)} | {"other": c("o")}
    plan = compute_plan(desired, live)
    assert len(plan.deletes) == deletes
    if refused:
        with pytest.raises(PlanRefused, match=f"would delete {deletes} of the 10 steps") as e:
            guard_plan(plan, 10, allow_empty=True, max_deletes=limit)
        assert f"max_deletes: {limit}" in str(e.value)
    else:
        guard_plan(plan, 10, allow_empty=True, max_deletes=limit)


contents = st.builds(
    StepContent, st.text(max_size=20), st.text(max_size=20), st.booleans(), st.booleans()
)
workspaces = st.dictionaries(st.text(min_size=1, max_size=10), contents, max_size=20)


@given(workspaces, workspaces)
def test_applying_the_plan_yields_the_desired_state(
    desired: dict[str, StepContent], live: dict[str, StepContent]
) -> None:
    plan = compute_plan(desired, live)
    result = dict(live)
    for ch in plan.creates + plan.updates:
        assert ch.after is not None
        result[ch.name] = ch.after
    for ch in plan.deletes:
        del result[ch.name]
    assert result == desired
    assert len(plan.changes) + plan.unchanged == len(desired.keys() | live.keys())


@given(workspaces)
def test_plan_against_itself_is_empty(ws: dict[str, StepContent]) -> None:
    assert compute_plan(ws, ws).empty
