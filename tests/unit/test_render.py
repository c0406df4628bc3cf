"""The words of reports: each run's and each plan's commit status, and the pull request's
comment: its verdicts and tables, its escaping of a stranger's step names and refusals, and its
cut to the host's limit."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.model import Mode, Plan, Run, RunResult, StepChange, StepContent, Trigger
from syncd.report.host import State
from syncd.report.render import (
    MARKER,
    plan_comment,
    plan_status,
    run_status,
    running,
    signed_marker,
)
from syncd.sync.previewing import Preview
from tests.support.fakes import workspace

SHA = "0123456789abcdef0123456789abcdef01234567"
URL = "https://syncd.example.com/"
WS = workspace("prod", Mode.MANUAL)  # named "workspace prod"


def change(action: str, name: str, do: str = "done()") -> StepChange:
    before = StepContent("true", "old()") if action != "create" else None
    after = StepContent("true", do) if action != "delete" else None
    return StepChange(action, name, before, after)  # type: ignore[arg-type]


PLAN = Plan(
    creates=(change("create", "a/new"),),
    updates=(change("update", "b/changed"), change("update", "c/changed")),
    deletes=(change("delete", "d/gone"),),
    unchanged=7,
)


def run(result: RunResult, **extra: object) -> Run:
    fields: dict[str, object] = {"created": 1, "updated": 2, "deleted": 3, "revision": SHA}
    fields.update(extra)
    return Run("r1", "prod", Trigger.WEBHOOK, result=result, started_at=1.0, **fields)  # type: ignore[arg-type]


def test_run_statuses() -> None:
    done = run_status(WS, run(RunResult.SUCCEEDED), PLAN, URL)
    assert done is not None
    assert (done.state, done.context, done.description) == (
        State.SUCCESS,
        "syncd/workspace prod",
        "applied: +1 ~2 -3",
    )
    assert done.target_url == "https://syncd.example.com/ui/workspaces/prod"
    long_error = "bad step file " + "x" * 300 + "\nsecond line"
    failed = run_status(WS, run(RunResult.FAILED, error=long_error), None, None)
    assert failed is not None and failed.state is State.FAILURE and failed.target_url is None
    assert failed.description.startswith("bad step file x") and len(failed.description) == 140
    assert "second" not in failed.description
    waits = run_status(WS, run(RunResult.PLANNED), PLAN, URL)
    assert waits is not None and waits.state is State.PENDING
    assert waits.description == "waits for a manual sync: +1 ~2 -1"
    held = run_status(workspace("prod", Mode.AUTOMATIC), run(RunResult.PLANNED), PLAN, URL)
    assert held is not None and held.state is State.PENDING
    assert held.description.startswith("held back (") and held.description.endswith("+1 ~2 -1")
    empty = run_status(WS, run(RunResult.PLANNED, created=0, updated=0, deleted=0), Plan(), URL)
    assert empty is not None and (empty.state, empty.description) == (
        State.SUCCESS,
        "in sync: nothing to apply",
    )
    assert run_status(WS, run(RunResult.PLANNED, dry_run=True), PLAN, URL) is None
    assert run_status(WS, run(RunResult.SUCCEEDED, dry_run=True), PLAN, URL) is None
    assert run_status(WS, run(RunResult.FAILED, revision=None, error="down"), None, URL) is None
    working = running(WS, SHA, URL)
    assert (working.state, working.context, working.description) == (
        State.PENDING,
        "syncd/workspace prod",
        "syncing",
    )


def test_plan_statuses() -> None:
    would = plan_status(WS, Preview("prod", SHA, PLAN), URL)
    assert (would.state, would.context, would.description) == (
        State.SUCCESS,
        "syncd/plan/workspace prod",
        "would apply: +1 ~2 -1",
    )
    assert would.target_url == f"https://syncd.example.com/ui/workspaces/prod/preview/{SHA}"
    nothing = plan_status(WS, Preview("prod", SHA, Plan(unchanged=3)), None)
    assert nothing.description == "would apply: no changes" and nothing.target_url is None
    refused = "export/steps/x.step.json: not JSON " + "y" * 200 + "\nexport/steps/z: bad"
    refusal = plan_status(WS, Preview("prod", SHA, None, refused), URL)
    assert refusal.state is State.FAILURE and len(refusal.description) == 140
    assert refusal.description.startswith("export/steps/x.step.json: not JSON")


def test_the_comment_says_each_workspace_its_verdict_table_and_diffs() -> None:
    dev = workspace("dev")
    refused = Preview("dev", SHA, None, "unverified: no signature\nsecond line")
    body = plan_comment([(WS, Preview("prod", SHA, PLAN, signed_by="alice")), (dev, refused)],
                        SHA, 65536, URL)  # fmt: skip
    assert body.startswith(MARKER + "\n")
    assert "syncd plan for 0123456789ab" in body
    assert "### workspace prod (prod, manual)" in body
    assert "**Would apply**: +1 ~2 -1 (7 unchanged)" in body
    assert "| create | a/new |" in body and "| delete | d/gone |" in body
    assert body.count("```diff\n") == 4 and "+  done()" in body
    assert "Signed by alice." in body
    assert "[This plan in the syncd console](https://syncd.example.com/ui/workspaces/prod/" \
        f"preview/{SHA})" in body  # fmt: skip
    assert "### workspace dev (dev, automatic)" in body
    assert "**Would not apply**:\n\n```text\nunverified: no signature\nsecond line\n```" in body
    assert "cut to fit" not in body
    # The same inputs, the same text: the reporter compares it to decide whether to edit.
    again = plan_comment([(WS, Preview("prod", SHA, PLAN, signed_by="alice")), (dev, refused)],
                         SHA, 65536, URL)  # fmt: skip
    assert again == body
    empty = plan_comment([(WS, Preview("prod", SHA, Plan(unchanged=2)))], SHA, 65536, None)
    assert "no changes" in empty and "| Action |" not in empty and "console" not in empty


def outside_fences(body: str) -> str:
    """The lines a Markdown reader parses as Markdown: all but those of fenced code blocks, as
    CommonMark closes them (a line of at least as many backticks as opened, and nothing else)."""
    kept, fence = [], ""
    for line in body.splitlines():
        bare = line.strip()
        if not fence and (opened := re.match(r"^ {0,3}(`{3,})[^`]*$", line)):
            fence = opened.group(1)
        elif fence and re.fullmatch(r"`+", bare) and len(bare) >= len(fence):
            fence = ""
        elif not fence:
            kept.append(line)
    return "\n".join(kept)


def test_a_strangers_names_and_refusals_are_inert() -> None:
    evil = 'x | <img src=x onerror="alert(1)"> `code` @admin #1 [l](http://e) *b*\nnext'
    fence_breaker = "a\n```\n# heading\n````\n<script>x</script>"
    plan = Plan(creates=(change("create", evil, do=fence_breaker),))
    preview = Preview("prod", SHA, plan)
    body = plan_comment([(WS, preview)], SHA, 65536, None)
    table = next(line for line in body.splitlines() if line.startswith("| create |"))
    assert table.count("|") == 3  # the name's pipe is no cell
    markdown = outside_fences(body)
    for raw in ("<img", "<script", "<b>", "`code`", "@admin", " #1 ", "[l]", "*b*", "\nnext"):
        assert raw not in markdown
    assert "&#60;img" in table and "&#124;" in table and "&#64;admin" in table
    # The diff's fence is longer than any run of backticks inside it: nothing closes it early.
    fences = re.findall(r"^(`{3,})diff$", body, re.MULTILINE)
    assert fences == ["`````"]
    assert body.count("\n`````\n") == 1  # and closed by its own length
    # The refusal sits in a fenced block (longer than its backticks), never as Markdown, and a
    # refused commit lists none of the live steps it would have changed.
    refused = Preview("prod", SHA, plan, refused="bad: <b>name</b> | ```")
    body = plan_comment([(WS, refused)], SHA, 65536, None)
    assert "````text\nbad: <b>name</b> | ```\n````" in body
    assert "| create |" not in body and "```diff" not in body


def test_the_marker_names_its_pull_request_under_a_key() -> None:
    a, b = signed_marker(b"k1", "acme/steps", 7), signed_marker(b"k1", "acme/steps", 8)
    assert a != b and a != signed_marker(b"k2", "acme/steps", 7)
    assert a.startswith("<!-- syncd:plan ") and a.endswith(" -->")
    body = plan_comment([(WS, Preview("prod", SHA, Plan()))], SHA, 65536, None, marker=a)
    assert body.startswith(a + "\n")


def big_plan(n: int, lines: int = 20) -> Plan:
    do = "\n".join(f"step_{i}()" for i in range(lines))
    return Plan(updates=tuple(change("update", f"step/{i:04}", do) for i in range(n)))


def test_a_long_comment_loses_whole_diffs_from_the_end_and_says_so() -> None:
    preview = Preview("prod", SHA, big_plan(50))
    full = plan_comment([(WS, preview)], SHA, 1_000_000, None)
    body = plan_comment([(WS, preview)], SHA, 6000, None)
    assert len(full) > 6000 >= len(body)
    assert body.startswith(MARKER)
    assert "Diffs cut to fit the host's limit of 6000 characters" in body
    assert f"`syncd diff prod --revision {SHA}`" in body
    assert body.count("| update |") == 50  # the table is whole
    kept = body.count("```diff")
    assert 0 < kept < 50
    assert f"step/{kept - 1:04}</code>" in body and f"step/{kept:04}</code>" not in body
    # Past the diffs, the tables' rows go from the end, and the link is to the console.
    tight = plan_comment([(WS, Preview("prod", SHA, big_plan(400, 1)))], SHA, 3000, URL)
    assert len(tight) <= 3000 and "```diff" not in tight
    assert "Diffs and tables cut to fit" in tight and "more changes not listed" in tight
    assert f"[the syncd console]({URL.rstrip('/')}/ui/workspaces/prod/preview/{SHA})" in tight


def test_many_workspaces_past_the_limit_leave_the_last_out() -> None:
    many = [(workspace(f"w{i:03}"), Preview(f"w{i:03}", SHA, None, "x" * 300)) for i in range(60)]
    body = plan_comment(many, SHA, 2000, URL)
    assert len(body) <= 2000 and body.startswith(MARKER)
    assert "more workspaces not shown" in body and "### workspace w000" in body


names = st.text(min_size=1, max_size=60)
previews = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(["create", "update", "delete"]), names), max_size=30),
        st.none() | st.text(max_size=400),
    ),
    min_size=0,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(previews, st.integers(min_value=1000, max_value=40_000), st.booleans())
def test_any_comment_fits_its_limit_and_starts_with_the_marker(
    given_previews: list[tuple[list[tuple[str, str]], str | None]], limit: int, linked: bool
) -> None:
    pairs = []
    for i, (changes, refused) in enumerate(given_previews):
        plan = Plan(creates=tuple(change(action, name) for action, name in changes))
        pairs.append((workspace(f"w{i}"), Preview(f"w{i}", SHA, plan, refused)))
    body = plan_comment(pairs, SHA, limit, URL if linked else None)
    assert len(body) <= limit
    assert body.startswith(MARKER)
