"""A pull request's comment stays one, and current, when two replicas write it: two `PullPlans`
(each with its own reporter and lease holder, as two daemons have) on one store, planning the
same pull request at once against the fake GitHub (which checks every request against GitHub's
REST description), answering slowly so that their requests overlap. And a plan whose head is no
longer the pull request's head writes nothing.

On both real stores: replicas share PostgreSQL; SQLite takes the same lease statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from syncd.config import Config, WorkspaceConfig, load_config
from syncd.core import retry
from syncd.core.model import Plan, StepChange, StepContent
from syncd.report.hosts import build_host
from syncd.report.reporter import HostSet, Reporter
from syncd.service.pull_plans import PullPlans
from syncd.store import Store
from syncd.sync.previewing import Preview
from syncd.webhooks import PullRequest
from tests.support.hostapi.github import FakeGitHub
from tests.support.stores import REAL, open_store

REPO = "acme/steps"
URL = "https://git.example.com/acme/steps.git"
TOKEN = "ghp_pullPlansTestToken0123456789"
HEADS = ("a" * 40, "b" * 40)
QUICK = retry.Policy(base=0.05, cap=0.1, attempts=2)  # a comment on a moved head: tried again


class Previews:
    """The engine's preview, as a pull request's plan sees it: one create per commit."""

    def preview_commit(self, ws: WorkspaceConfig, revision: str) -> Preview:
        step = StepChange("create", f"step-{revision[:4]}", None, StepContent("true", "go()"))
        return Preview(ws.id, revision, Plan(creates=(step,)))


class Counts:
    def report(self, provider: str, kind: str, result: str) -> None:
        return None


@pytest.fixture(params=REAL)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(request.param), tmp_path, request)
    yield s
    s.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(trustme.CA())
    fake.tokens = {TOKEN}
    fake.start()
    yield fake
    fake.stop()


def config_for(host: FakeGitHub, tmp_path: Path) -> Config:
    (tmp_path / "ca.pem").write_bytes(host.ca.cert_pem.bytes())
    doc = {
        "state_dir": str(tmp_path / "state"),
        "providers": {
            "github": {"api_url": host.url, "token_env": "T", "ca_file": str(tmp_path / "ca.pem")}
        },
        "workspaces": [
            {
                "id": "prod",
                "name": "prod",
                "source": {"url": URL, "provider": "github"},
                "report": {"pull_requests": True},
            }
        ],
    }
    (tmp_path / "syncd.yaml").write_text(yaml.safe_dump(doc))
    return load_config(tmp_path / "syncd.yaml", {"T": TOKEN})


def event(head: str) -> PullRequest:  # the event's head is what the fetch gives
    return PullRequest("github", (URL,), "main", 5, head, "refs/pull/5/head", "opened")


async def plan_on(replicas: list[tuple[PullPlans, Reporter]], heads: list[str]) -> None:
    """Each replica plans the pull request with its head, at once; wait until all is sent."""
    for _, reporter in replicas:
        reporter.start()
    try:
        await asyncio.gather(
            *(
                plans.request(event(h), ("prod",))
                for (plans, _), h in zip(replicas, heads, strict=True)
            )
        )
        for _ in range(300):  # 15 s at most
            if all(not r.pending() for _, r in replicas) and not any(p._tasks for p, _ in replicas):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the plans were not sent within 15 s")
    finally:
        for _, reporter in replicas:
            await reporter.stop(flush=0)


def replicas(config: Config, store: Store, heads: list[str]) -> list[tuple[PullPlans, Reporter]]:
    made = []
    for head in heads:
        reporter = Reporter(HostSet(build_host), Counts(), lambda: config.providers, QUICK)

        def fetched(ws: WorkspaceConfig, ref: str, head: str = head) -> str:
            return head

        made.append(
            (PullPlans(lambda: config, Previews(), fetched, reporter, lambda: store), reporter)
        )
    return made


def test_two_replicas_keep_one_comment(host: FakeGitHub, store: Store, tmp_path: Path) -> None:
    config = config_for(host, tmp_path)
    host.set_pull_head(REPO, 5, HEADS[0])
    host.delay = 0.15  # each request: the two replicas' list-then-create would overlap
    asyncio.run(plan_on(replicas(config, store, [HEADS[0], HEADS[0]]), [HEADS[0], HEADS[0]]))
    assert len(host.comments[(REPO, 5)]) == 1
    assert host.violations == []


def test_a_plan_older_than_the_pull_requests_head_writes_nothing(
    host: FakeGitHub, store: Store, tmp_path: Path
) -> None:
    config = config_for(host, tmp_path)
    host.set_pull_head(REPO, 5, HEADS[1])  # pushed to since the event
    asyncio.run(plan_on(replicas(config, store, [HEADS[0]]), [HEADS[0]]))
    assert host.comments.get((REPO, 5), []) == []
    # Its status still goes on its own commit: a status names its commit, a comment does not.
    assert [s["context"] for s in host.statuses[(REPO, HEADS[0])]] == ["syncd/plan/prod"]
    asyncio.run(plan_on(replicas(config, store, [HEADS[1]]), [HEADS[1]]))
    (only,) = host.comments[(REPO, 5)]
    assert HEADS[1][:12] in only["body"] and "step-bbbb" in only["body"]
