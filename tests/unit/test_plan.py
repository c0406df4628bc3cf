"""The pure plan: authoritative create, update, delete; and the empty-workspace guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.errors import PlanRefused
from syncd.model import StepContent
from syncd.plan import compute_plan, guard_plan


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


def test_guard_refuses_deleting_everything() -> None:
    plan = compute_plan({}, {"a": c("x"), "b": c("y")})
    with pytest.raises(PlanRefused, match="allow_empty"):
        guard_plan(plan, live_total=2, allow_empty=False)
    guard_plan(plan, live_total=2, allow_empty=True)


def test_guard_allows_partial_deletes_and_empty_workspaces() -> None:
    guard_plan(compute_plan({"a": c("x")}, {"a": c("x"), "b": c("y")}), 2, False)
    guard_plan(compute_plan({}, {}), 0, False)


contents = st.builds(
    StepContent, st.text(max_size=20), st.text(max_size=20), st.booleans(), st.booleans()
)
workspaces = st.dictionaries(st.text(min_size=1, max_size=10), contents, max_size=20)


@given(workspaces, workspaces)
def test_applying_the_plan_yields_the_desired_state(desired: dict, live: dict) -> None:
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
def test_plan_against_itself_is_empty(ws: dict) -> None:
    assert compute_plan(ws, ws).empty
