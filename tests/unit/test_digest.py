"""The pure digest: who is told what, shared e-mails, cursors, recovery notes, the text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.config import SourceConfig, WorkspaceConfig
from syncd.core.model import Mode, Run, RunResult, Trigger
from syncd.notify.digest import (
    MAX_ERROR_CHARS,
    MAX_FAILURES,
    Cursor,
    Report,
    State,
    compose,
    counts,
    plan,
    summarize,
    watchers,
)
from syncd.ops.logs import register_secrets

T0 = 1_700_000_000.0
REV = "0123456789abcdef0123456789abcdef01234567"
OPS, ALICE, BOB = "ops@example.com", "alice@example.com", "bob@example.com"


def ws(ws_id: str, name: str, *notify: str) -> WorkspaceConfig:
    return WorkspaceConfig(
        id=ws_id,
        name=name,
        tags=(),
        mode=Mode.AUTOMATIC,
        source=SourceConfig(f"https://git.example.com/acme/{name}.git"),
        poll_interval=0.0,
        allow_empty=False,
        notify=notify,
        file=Path("syncd.yaml"),
    )


def run(
    ws_id: str,
    result: RunResult,
    at: float,
    error: str | None = None,
    *,
    dry_run: bool = False,
    revision: str | None = REV,
) -> Run:
    if result is RunResult.FAILED and error is None:
        error = f"sync of {ws_id} failed at {at}"
    return Run(
        f"r{at}", ws_id, Trigger.POLL, revision, result, at - 1, at, error=error, dry_run=dry_run
    )


PROD = ws("1", "prod", OPS, ALICE)
DEV = ws("2", "dev", OPS)
WORKSPACES = (PROD, DEV)


# --- Who watches what --------------------------------------------------------------------------


def test_watchers_key_on_the_lower_cased_address_in_config_order() -> None:
    workspaces = [ws("1", "a", "Ops@Example.com", ALICE), ws("2", "b", OPS, OPS), ws("3", "c")]
    out = watchers(workspaces)
    assert list(out) == [OPS, ALICE]
    # The address as first written stands for the recipient; each workspace is listed once.
    assert [(address, w.id) for address, w in out[OPS]] == [
        ("Ops@Example.com", "1"),
        (OPS, "2"),
    ]
    assert [w.id for _, w in out[ALICE]] == ["1"]


def test_dry_runs_do_not_count() -> None:
    assert counts(run("1", RunResult.FAILED, T0))
    assert counts(run("1", RunResult.SUCCEEDED, T0))
    assert counts(run("1", RunResult.PLANNED, T0))  # news only when it ends failures
    assert not counts(run("1", RunResult.FAILED, T0, dry_run=True))


# --- Batching ----------------------------------------------------------------------------------


def test_recipients_told_the_same_share_one_email() -> None:
    runs = {PROD.id: [run(PROD.id, RunResult.FAILED, T0 + 10)]}
    cursors = {OPS: Cursor(T0), ALICE: Cursor(T0)}
    todo = plan(watchers(WORKSPACES), cursors, runs, T0 + 100)
    [digest] = todo.digests
    assert digest.to == [OPS, ALICE]
    assert [r.workspace for r in digest.reports] == [PROD.id]
    assert {a.key: a.after for a in digest.addressees} == {
        OPS: Cursor(T0 + 100, frozenset({PROD.id})),
        ALICE: Cursor(T0 + 100, frozenset({PROD.id})),
    }
    assert todo.told == {}


def test_recipients_told_differently_get_their_own_email() -> None:
    runs = {
        PROD.id: [run(PROD.id, RunResult.FAILED, T0 + 10)],
        DEV.id: [run(DEV.id, RunResult.FAILED, T0 + 20)],
    }
    cursors = {OPS: Cursor(T0), ALICE: Cursor(T0)}
    todo = plan(watchers(WORKSPACES), cursors, runs, T0 + 100)
    assert [d.to for d in todo.digests] == [[OPS], [ALICE]]
    ops, alice = todo.digests
    assert [r.name for r in ops.reports] == ["prod", "dev"]
    assert [r.name for r in alice.reports] == ["prod"]
    assert ops.addressees[0].after == Cursor(T0 + 100, frozenset({PROD.id, DEV.id}))


# --- Cursors -----------------------------------------------------------------------------------


def test_a_cursor_hides_what_it_was_told_and_moves_without_an_email() -> None:
    runs = {PROD.id: [run(PROD.id, RunResult.FAILED, T0 + 10)]}
    # Alice was told up to the failure (inclusive); ops is already at `until`.
    cursors = {OPS: Cursor(T0 + 100), ALICE: Cursor(T0 + 10, frozenset({PROD.id}))}
    todo = plan(watchers(WORKSPACES), cursors, runs, T0 + 100)
    assert todo.digests == ()
    # Nothing to tell alice: her cursor moves at once, keeping what she knows is failing.
    assert todo.told == {ALICE: Cursor(T0 + 100, frozenset({PROD.id}))}


def test_state_follows_the_configured_recipients() -> None:
    state = State(watermark=T0, cursors={OPS: Cursor(T0 + 5, frozenset({"1"})), BOB: Cursor(T0)})
    state.follow([OPS, ALICE])
    # Bob is no longer configured: forgotten. Alice is new: she starts at the watermark.
    assert state.cursors == {OPS: Cursor(T0 + 5, frozenset({"1"})), ALICE: Cursor(T0)}


def test_state_round_trips_through_its_row() -> None:
    state = State(T0, T0 + 1, {OPS: Cursor(T0 + 2, frozenset({"2", "1"})), ALICE: Cursor(T0)})
    text = state.dump()
    assert '"failing": ["1", "2"]' in text and '"cursor": ' in text
    assert State.load(text) == state
    assert State.load('{"watermark": 5}') == State(5.0)


@pytest.mark.parametrize("text", ["not json", "{}", '{"watermark": "x"}', '{"watermark": null}'])
def test_an_unreadable_state_row_raises(text: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        State.load(text)


@given(
    st.dictionaries(
        st.sampled_from([OPS, ALICE]),
        st.builds(Cursor, st.floats(T0 - 50, T0 + 150), st.frozensets(st.sampled_from("12"))),
        min_size=2,
    ),
    st.lists(
        st.tuples(st.sampled_from("12"), st.sampled_from(list(RunResult)), st.integers(0, 100)),
        max_size=12,
    ),
)
def test_every_recipient_behind_is_either_emailed_once_or_moved_on(
    cursors: dict[str, Cursor], raw: list[tuple[str, RunResult, int]]
) -> None:
    runs: dict[str, list[Run]] = {}
    for ws_id, result, at in sorted(raw, key=lambda x: x[2]):
        r = run(ws_id, result, T0 + at)
        if counts(r):
            runs.setdefault(ws_id, []).append(r)
    until = T0 + 100
    todo = plan(watchers(WORKSPACES), cursors, runs, until)
    emailed = [a.key for d in todo.digests for a in d.addressees]
    behind = {k for k, c in cursors.items() if c.at < until}
    assert len(emailed) == len(set(emailed))
    assert set(emailed) | set(todo.told) == behind and not set(emailed) & set(todo.told)
    assert all(d.reports for d in todo.digests)
    assert all(a.after.at == until for d in todo.digests for a in d.addressees)
    assert all(c.at == until for c in todo.told.values())


# --- Recovery notes ----------------------------------------------------------------------------


def test_a_workspace_told_failing_that_succeeds_gets_a_recovery_note() -> None:
    runs = {PROD.id: [run(PROD.id, RunResult.SUCCEEDED, T0 + 10, revision="f" * 40)]}
    [report], failing = summarize([PROD, DEV], runs, T0, {PROD.id, DEV.id})
    assert report == Report(PROD.id, "prod", recovered_at=T0 + 10, recovered_revision="f" * 40)
    assert not report.failing
    # Dev had no run: it stays failing, and there is nothing new to say about it.
    assert failing == {DEV.id}


def test_failed_and_recovered_in_one_interval_is_told_as_recovered() -> None:
    runs = {
        DEV.id: [
            run(DEV.id, RunResult.FAILED, T0 + 10, "dev broke briefly"),
            run(DEV.id, RunResult.SUCCEEDED, T0 + 20),
        ]
    }
    [report], failing = summarize([DEV], runs, T0, set())
    assert failing == frozenset()
    assert report.recovered_at == T0 + 20 and [f.error for f in report.failures] == [
        "dev broke briefly"
    ]
    body = compose([report], from_addr="syncd@example.com", to=[OPS], now=T0).get_content()
    assert "dev (workspace 2): recovered, succeeded at 2023-11-14T22:13:40Z (0123456789ab)" in body
    assert "before that: 1 failed run" in body and "dev broke briefly" in body


def test_a_manual_workspace_whose_source_reads_again_is_told_as_recovered_and_waiting() -> None:
    """Its run after the failures plans and applies nothing: the changes wait for a person."""
    runs = {
        DEV.id: [
            run(DEV.id, RunResult.FAILED, T0 + 10, "remote unreachable"),
            run(DEV.id, RunResult.PLANNED, T0 + 20),
        ]
    }
    [report], failing = summarize([DEV], runs, T0, set())
    assert failing == frozenset() and report.waiting and not report.failing
    body = compose([report], from_addr="syncd@example.com", to=[OPS], now=T0).get_content()
    assert "dev (workspace 2): recovered, planned at 2023-11-14T22:13:40Z (0123456789ab);" in body
    assert "its changes wait for a manual sync" in body


def test_a_planned_run_of_a_healthy_workspace_is_not_news() -> None:
    runs = {DEV.id: [run(DEV.id, RunResult.PLANNED, T0 + 10)]}
    assert summarize([DEV], runs, T0, set()) == ((), frozenset())


def test_a_success_of_a_healthy_workspace_is_not_news() -> None:
    runs = {PROD.id: [run(PROD.id, RunResult.SUCCEEDED, T0 + 10)]}
    assert summarize([PROD], runs, T0, set()) == ((), frozenset())


def test_the_failing_come_first_then_the_recovered() -> None:
    runs = {
        PROD.id: [run(PROD.id, RunResult.SUCCEEDED, T0 + 10)],
        DEV.id: [run(DEV.id, RunResult.FAILED, T0 + 10)],
    }
    reports, failing = summarize([PROD, DEV], runs, T0, {PROD.id})
    assert [(r.name, r.failing) for r in reports] == [("dev", True), ("prod", False)]
    assert failing == {DEV.id}


# --- The message -------------------------------------------------------------------------------


def test_the_message_never_shows_a_registered_secret() -> None:
    register_secrets(["digest-unit-secret-42"])
    runs = {PROD.id: [run(PROD.id, RunResult.FAILED, T0 + 10, "auth as digest-unit-secret-42")]}
    reports, _ = summarize([PROD], runs, T0, set())
    msg = compose(reports, from_addr="syncd@example.com", to=[OPS], now=T0 + 20)
    assert "digest-unit-secret-42" not in msg.as_string()
    assert "error: auth as ***" in msg.get_content()


def test_long_and_multi_line_errors() -> None:
    long = "x" * (MAX_ERROR_CHARS + 10)
    runs = {
        PROD.id: [
            run(PROD.id, RunResult.FAILED, T0 + 1, "first line\nsecond line"),
            run(PROD.id, RunResult.FAILED, T0 + 2, long),
            run(PROD.id, RunResult.FAILED, T0 + 3, "", revision=None),
        ]
    }
    reports, _ = summarize([PROD], runs, T0, set())
    body = compose(reports, from_addr="syncd@example.com", to=[OPS], now=T0).get_content()
    assert "    error: first line\n           second line\n" in body
    assert "x" * MAX_ERROR_CHARS + " [...]\n" in body and "x" * (MAX_ERROR_CHARS + 1) not in body
    assert "revision=(no revision)\n    error: \n" in body


def test_failures_are_capped_per_workspace_newest_first() -> None:
    n = MAX_FAILURES + 3
    runs = {PROD.id: [run(PROD.id, RunResult.FAILED, T0 + i, f"e{i}") for i in range(1, n + 1)]}
    [report], _ = summarize([PROD], runs, T0, set())
    assert len(report.failures) == MAX_FAILURES and report.more == 3
    assert report.failures[0].error == f"e{n}"
    body = compose([report], from_addr="syncd@example.com", to=[OPS], now=T0).get_content()
    assert f"failing, {n} failed runs" in body and "... and 3 more" in body


def test_headers() -> None:
    msg = compose([Report("1", "prod")], from_addr="syncd@example.com", to=[OPS, ALICE], now=T0)
    assert msg["Subject"] == "syncd: 1 workspace failing (prod)"
    assert msg["From"] == "syncd@example.com" and msg["To"] == f"{OPS}, {ALICE}"
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content().startswith("syncd digest of 2023-11-14T22:13:20Z: ")
    recovered = [Report("1", "a", recovered_at=T0), Report("2", "b", recovered_at=T0)]
    subject = compose(recovered, from_addr="syncd@example.com", to=[OPS], now=T0)["Subject"]
    assert subject == "syncd: 2 workspaces recovered (a, b)"
