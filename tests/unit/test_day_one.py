"""Day-one operations (issue 26) over fakes: waiting for a revision (the pure rule, the blocking
checks, the hold of one API request), who asked for a run and the commit it read, `resume` of
a manual workspace, `Unknown` while the remote cannot be read, and the CLI's plain words."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.cli import EXIT_USAGE, main
from syncd.cli import output as out
from syncd.core.errors import GitError, RevisionNotFound, RevisionNotOnBranch, StepFileError
from syncd.core.model import (
    Health,
    Mode,
    Run,
    RunResult,
    Status,
    SyncState,
    Trigger,
)
from syncd.git import GitSource
from syncd.http.openapi import openapi_document
from syncd.runs.merge import Join, Terms, merge
from syncd.service.actions import Actions, Inline, RunsHere
from syncd.service.audit import Actor
from syncd.service.waiting import BadRevision, Waiting, hold, judge, parse_revision, wait_view
from syncd.service.workspaces import Workspaces
from syncd.sync.engine import Engine, Observers
from syncd.sync.health import HealthKeeper
from syncd.sync.recording import failed_state
from tests.support.fakes import FakeGit, FakeStore, config, step_files, workspace

ROOT = Path(__file__).resolve().parents[2]
AUTO = workspace("ws")
MANUAL = workspace("man", Mode.MANUAL)


@dataclass
class World:
    store: FakeStore
    git: FakeGit
    engine: Engine
    service: Workspaces
    actions: Actions

    def live(self, ws: str) -> dict[str, str]:
        return {n: s.content.do for n, s in self.store.live_steps(ws).items()}


@pytest.fixture
def world(tmp_path: Path) -> World:
    ticks = count(1000)
    store = FakeStore(clock=lambda: float(next(ticks)))
    git = FakeGit()
    keeper = HealthKeeper(store, clock=lambda: float(next(ticks)))
    engine = Engine(store, git, observer=Observers((keeper,)), clock=lambda: float(next(ticks)))
    cfg = config(AUTO, MANUAL)
    service = Workspaces(lambda: cfg, store, GitSource(tmp_path), engine, health=keeper)
    return World(store, git, engine, service, Actions(service, Inline(), RunsHere(service)))


# -- waiting for a revision: the rule ----------------------------------------------------------


def run(result: RunResult, revision: str | None, dry_run: bool = False) -> Run:
    return Run("r1", "ws", Trigger.WEBHOOK, revision, result, 1.0, 2.0, dry_run=dry_run)


def test_the_rule_of_a_wait() -> None:
    lineage = {"a": {"a"}, "b": {"a", "b"}, "c": {"a", "b", "c"}}  # c descends from b from a

    def contains_from(target: str) -> Any:
        return lambda commit: target in lineage.get(commit, {commit})

    def verdict(target: str, state: SyncState, last: Run | None, health: Health) -> str:
        return judge(target, state, last, health, contains_from(target))

    at_b = SyncState("ws", Status.SYNCED, last_applied_revision="b")
    ok = run(RunResult.SUCCEEDED, "b")
    assert verdict("b", at_b, ok, Health.HEALTHY) == "applied"
    assert verdict("a", at_b, ok, Health.HEALTHY) == "applied"  # a descendant is applied
    assert verdict("c", at_b, ok, Health.HEALTHY) == "waiting"  # not yet
    assert verdict("b", at_b, ok, Health.DEGRADED) == "waiting"  # applied, not healthy
    assert verdict("b", at_b, ok, Health.SUSPENDED) == "waiting"
    # A run of the commit, or of a descendant, failed; an older commit's failure is not news.
    assert verdict("c", at_b, run(RunResult.FAILED, "c"), Health.DEGRADED) == "failed"
    assert verdict("b", at_b, run(RunResult.FAILED, "c"), Health.HEALTHY) == "applied"
    assert verdict("b", at_b, run(RunResult.FAILED, "c"), Health.DEGRADED) == "failed"
    assert verdict("c", at_b, run(RunResult.FAILED, "b"), Health.DEGRADED) == "waiting"
    assert verdict("c", at_b, run(RunResult.FAILED, None), Health.DEGRADED) == "waiting"
    assert verdict("c", at_b, run(RunResult.FAILED, "c", dry_run=True), Health.HEALTHY) == (
        "waiting"
    )
    marked = SyncState("ws", Status.OUT_OF_SYNC, last_applied_revision="b", failed_revision="c")
    assert verdict("c", marked, run(RunResult.PLANNED, "c"), Health.HEALTHY) == "failed"


def test_revisions_are_head_or_a_sha_and_nothing_else() -> None:
    assert parse_revision("HEAD") == parse_revision("head") == "HEAD"
    assert parse_revision("ABCDEF12") == "abcdef12"
    for bad in ("", "main", "abc", "x" * 41, "HEAD~1", "1" * 41):
        with pytest.raises(BadRevision, match="neither HEAD nor a commit sha"):
            parse_revision(bad)


def test_one_request_holds_until_the_answer_changes_or_its_time_is_up() -> None:
    answers = iter(["waiting", "waiting", "applied"])
    calls: list[str] = []

    async def check() -> dict[str, Any]:
        calls.append("check")
        return {"result": next(answers)}

    assert asyncio.run(hold(check, 30))["result"] == "applied" and len(calls) == 3

    async def never() -> dict[str, Any]:
        calls.append("never")
        return {"result": "waiting"}

    assert asyncio.run(hold(never, 0))["result"] == "waiting"  # one look, no wait
    assert calls.count("never") == 1


def test_waiting_resolves_head_and_sees_descendants(world: World) -> None:
    waiting = Waiting(world.service)
    v1 = world.git.commit(step_files({"greet": "v1"}), message="first\n\nbody")
    target = waiting.target(AUTO, "HEAD")
    assert target == v1 and waiting.target(AUTO, v1[:8]) == v1
    assert waiting.check(AUTO, target)["result"] == "waiting"
    v2 = world.git.commit(step_files({"greet": "v2"}))
    world.engine.sync(AUTO, Trigger.WEBHOOK)
    answer = waiting.check(AUTO, v1)  # v2 holds v1: applied
    assert answer["result"] == "applied" and answer["applied_revision"] == v2
    assert set(answer) == set(openapi_document()["components"]["schemas"]["WaitResult"]["required"])
    # A commit of another branch is named, and refused.
    other = world.git.commit(step_files({"greet": "x"}), branch="other")
    world.git.fetch(None, "other")  # type: ignore[arg-type]
    with pytest.raises(RevisionNotOnBranch, match=other[:12]):
        waiting.target(AUTO, other)
    with pytest.raises(RevisionNotFound):
        waiting.target(AUTO, "abcdef1234")


def test_a_failed_run_of_the_commit_ends_the_wait(world: World) -> None:
    waiting = Waiting(world.service)
    world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(AUTO, Trigger.WEBHOOK)
    bad = world.git.commit({"export/steps/broken.step.json": "{not json"})
    assert world.engine.sync(AUTO, Trigger.WEBHOOK).run.result is RunResult.FAILED
    answer = waiting.check(AUTO, waiting.target(AUTO, "HEAD"))
    assert answer["result"] == "failed" and answer["revision"] == bad
    assert answer["last_run"]["error"]


def test_the_wait_view_names_where_the_workspace_stands() -> None:
    state = SyncState("ws", Status.OUT_OF_SYNC, last_applied_revision="b")
    view = wait_view(AUTO, "c", "waiting", state, None, Health.HEALTHY)
    assert view == {
        "workspace": "ws",
        "revision": "c",
        "result": "waiting",
        "applied_revision": "b",
        "status": "OutOfSync",
        "health": "Healthy",
        "last_run": None,
    }


# -- who asked, and the commit read ------------------------------------------------------------


def test_runs_name_who_asked_and_the_commit_they_read(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}), message="Greet\nmore", author="Ann <a@x.org>")
    by_hook = world.engine.sync(AUTO, Trigger.WEBHOOK).run
    assert (by_hook.actor, by_hook.message, by_hook.author) == ("webhook", "Greet", "Ann <a@x.org>")

    async def sync_as(actor: Actor) -> Run:
        async with world.actions.act(actor, "sync", "ws") as act:
            return (await (await act.sync(None, False)).future).run

    assert asyncio.run(sync_as(Actor("ci", "api"))).actor == "ci"
    assert asyncio.run(sync_as(Actor("local:ann", "local"))).actor == "local:ann"
    stored = world.store.runs("ws", 10)
    assert [r.actor for r in stored][:3] == ["local:ann", "ci", "webhook"]
    assert stored[0].message == "Greet" and stored[0].author == "Ann <a@x.org>"
    # A source that cannot be read: the run has no commit, and names its trigger.
    world.git.outage = GitError("ls_remote: connection refused")
    failed = world.engine.sync(AUTO, Trigger.POLL).run
    assert (failed.actor, failed.message, failed.author) == ("poll", None, None)
    polled = world.engine.record_source_failure(AUTO, Trigger.POLL, world.git.outage).run
    assert polled.actor == "poll"


def test_a_person_joining_a_queued_request_is_named() -> None:
    hook, person = Terms(Trigger.WEBHOOK), Terms(Trigger.MANUAL, actor="ann")
    assert merge([hook], person) == Join(0, Terms(Trigger.MANUAL, actor="ann"))
    assert merge([person], hook) == Join(0, person)
    assert merge([person], Terms(Trigger.MANUAL, actor="bob")) == Join(
        0, Terms(Trigger.MANUAL, actor="bob")
    )


# -- resume of a manual workspace; Unknown while the remote cannot be read ---------------------


def test_resuming_a_manual_workspace_compares_and_applies_nothing(world: World) -> None:
    world.git.commit(step_files({"greet": "v1"}))
    world.engine.sync(MANUAL, Trigger.MANUAL)
    world.service.suspend(MANUAL)
    world.git.commit(step_files({"greet": "v2"}))

    async def resume(ws: str) -> Run:
        async with world.actions.act(Actor("ci", "api"), "resume", ws) as act:
            return (await (await act.resume()).future).run

    resumed = asyncio.run(resume("man"))
    assert resumed.result is RunResult.PLANNED and resumed.trigger is Trigger.POLL
    assert resumed.actor == "ci" and (resumed.created, resumed.updated) == (0, 1)
    assert world.live("man") == {"greet": "v1"}  # pending changes wait for a manual sync
    state = world.store.state("man")
    assert not state.suspended and state.status is Status.OUT_OF_SYNC
    # An automatic workspace still syncs to the head on resume.
    world.service.suspend(AUTO)
    again = asyncio.run(resume("ws"))
    assert again.result is RunResult.SUCCEEDED and world.live("ws") == {"greet": "v2"}


def test_a_remote_that_cannot_be_read_leaves_the_status_unknown() -> None:
    synced = SyncState("ws", Status.SYNCED, last_applied_revision="a", last_seen_revision="a")
    no_commit = run(RunResult.FAILED, None)
    assert failed_state(synced, no_commit, GitError("fetch: timed out")).status is Status.UNKNOWN
    # The branch gone (permanent), or a bad commit, is not a comparison that failed.
    gone = failed_state(synced, no_commit, RevisionNotFound("branch 'main' not found"))
    assert gone.status is Status.SYNCED
    bad = failed_state(synced, run(RunResult.FAILED, "b"), StepFileError("x: bad"))
    assert bad.status is Status.OUT_OF_SYNC


# -- the CLI's words ---------------------------------------------------------------------------


def view(error: str | None) -> dict[str, Any]:
    return {
        "id": "ws",
        "name": "prod",
        "mode": "automatic",
        "status": "Unknown",
        "health": {"status": "Degraded" if error else "Healthy", "error": error},
        "last_applied_revision": "a" * 40,
        "pinned_revision": None,
        "last_run": {"result": "failed", "trigger": "poll"},
    }


def test_the_status_table_says_when_it_cut_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    out.status_table([view("short")])
    assert "cut short" not in capsys.readouterr().out
    out.status_table([view("x" * 300)])
    shown = capsys.readouterr().out
    assert "x" * 119 + "…" in shown and "x" * 121 not in shown
    assert shown.rstrip().endswith(
        "(errors cut short; `syncd status --json` or `syncd health WS` shows them whole)"
    )
    out.status_table([view("first line\nsecond line")])
    assert "cut short" in capsys.readouterr().out


def test_runs_show_the_actor_and_the_commit(capsys: pytest.CaptureFixture[str]) -> None:
    done = run(RunResult.SUCCEEDED, "b" * 40)
    done.actor, done.message, done.author = "ci", "Greet in French", "Ann <a@x.org>"
    out.runs([done.to_dict(), run(RunResult.FAILED, None).to_dict() | {"error": "refused"}])
    lines = capsys.readouterr().out.splitlines()
    assert "ACTOR" in lines[0]
    assert " ci " in lines[1] and lines[1].endswith("Greet in French (Ann <a@x.org>)")
    assert lines[2].endswith("refused")
    out.run(done.to_dict())
    shown = capsys.readouterr().out
    assert "actor:       ci" in shown and "message:     Greet in French" in shown


def test_no_config_and_no_server_points_to_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SYNCD_SERVER", raising=False)
    monkeypatch.setenv("SYNCD_CONFIG", str(tmp_path / "etc" / "syncd.yaml"))
    assert main(["status"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--server" in err and "config refused" not in err and len(err.splitlines()) == 1
    assert main(["wait", "prod", "--revision", "HEAD"]) == EXIT_USAGE
    assert "--server" in capsys.readouterr().err


def test_every_alert_rule_is_documented() -> None:
    rules = yaml.safe_load((ROOT / "config/prometheus/syncd-alerts.yaml").read_text())
    names = [r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r]
    docs = (ROOT / "docs/metrics.md").read_text()
    assert "SyncdIntakeProcessesFailing" in names
    assert [n for n in names if f"`{n}`" not in docs] == []
