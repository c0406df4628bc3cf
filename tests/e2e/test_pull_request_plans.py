"""Promotion you can review (issue #22), in the real daemon: a real https git server holding
`refs/pull/N/head`, GitHub's own `pull_request` webhook example (signed), and a fake GitHub API
that checks every request syncd sends against GitHub's published REST description.

One daemon, checks in order (CI time is tight):
- the startup sync sets `pending` then `success` on the applied commit;
- a pull request gets the status `syncd/plan/<name>` and exactly one comment, which agree with
  `GET /preview?revision=` for its head; a redelivery and a second push edit that one comment;
- a pull request with a broken step file gets `failure` naming the file;
- the host answering 500 delays the merged commit's status (tried again), never its sync;
- the provider's token is nowhere in the log, the metrics, the API's answers or the comment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from syncd.demo.webhook import github_push, signature_headers
from tests.support import WEBHOOK_SECRET, GitServer, WorkTree, workspace, write_step
from tests.support.console import sign_in
from tests.support.daemon import (
    Daemon,
    get,
    kill_daemon,
    metric,
    metrics_text,
    start_daemon,
    view,
)
from tests.support.hostapi.github import FakeGitHub

WS = "prod"
NAME = "ws-prod"  # tests.support.configs.workspace names it so
REPO = "acme/steps"
HOST_TOKEN = "ghp_e2eHostTokenNeverShown0123456789"
EXAMPLE = Path(__file__).parents[1] / "unit" / "payloads" / "pulls"


def pull_request_webhook(
    repo_url: str, number: int, head: str, action: str, delivery: str | None = None
) -> tuple[dict[str, str], bytes]:
    """GitHub's `pull_request` example, retargeted at this repository's main, signed."""
    payload: dict[str, Any] = json.loads((EXAMPLE / "github_pull_request_opened.json").read_text())
    payload["action"] = action
    payload["number"] = number
    pull = payload["pull_request"]
    pull["number"], pull["state"], pull["head"]["sha"] = number, "open", head
    pull["base"]["ref"] = "main"
    pull["base"]["repo"]["clone_url"] = repo_url
    payload["repository"]["clone_url"] = repo_url
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    return headers | signature_headers(body, WEBHOOK_SECRET), body


def open_pull(tree: WorkTree, number: int) -> str:
    """Push the work tree's HEAD as pull request `number`'s head ref, as GitHub keeps it."""
    tree.git("push", "--quiet", "--force", "origin", f"HEAD:refs/pull/{number}/head")
    return tree.head()


def deliver(d: Daemon, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    with d.client(token=None) as c:
        answer = c.post("/hooks/github", content=body, headers=headers)
    assert answer.status_code in (200, 202), answer.text  # 200: a redelivery
    result: dict[str, Any] = answer.json()
    return result


def console_page(d: Daemon, path: str) -> str:
    with d.client(token=None) as c:
        sign_in(c)
        answer = c.get(path)
    assert answer.status_code == 200, answer.text
    return answer.text


def statuses(host: FakeGitHub, sha: str, context: str) -> list[dict[str, Any]]:
    with host._lock:
        return [s for s in host.statuses.get((REPO, sha), []) if s.get("context") == context]


def comments(host: FakeGitHub, number: int) -> list[dict[str, Any]]:
    with host._lock:
        return list(host.comments.get((REPO, number), []))


@pytest.fixture
def setup(git_server: GitServer, tmp_path: Path) -> Iterator[tuple[Daemon, FakeGitHub, WorkTree]]:
    url = git_server.create_repo(REPO)
    tree = WorkTree(git_server, REPO, tmp_path / "work")
    write_step(tree, "greet", "hello()")
    write_step(tree, "sweep", "sweep()")
    tree.commit("two steps")
    tree.push()
    ca = trustme.CA()
    (tmp_path / "host-ca.pem").write_bytes(ca.cert_pem.bytes())
    host = FakeGitHub(ca)
    host.tokens = {HOST_TOKEN}
    host.start()
    providers = {
        "github": {
            "api_url": host.url,
            "token_env": "SYNCD_TEST_HOST_TOKEN",
            "ca_file": str(tmp_path / "host-ca.pem"),
        }
    }
    ws = workspace(
        WS,
        url,
        git_server,
        "automatic",
        source={"provider": "github"},
        report={"pull_requests": True},
    )
    d = start_daemon(
        tmp_path,
        git_server,
        tree,
        url,
        workspaces=[ws],
        env_extra={"SYNCD_TEST_HOST_TOKEN": HOST_TOKEN},
        server_options={"public_url": "https://syncd.example.com"},
        providers=providers,
    )
    yield d, host, tree
    kill_daemon(d)
    host.stop()


def test_the_plan_on_the_pull_request_and_the_deploy_on_the_commit(
    setup: tuple[Daemon, FakeGitHub, WorkTree],
) -> None:
    d, host, tree = setup
    main = tree.head()
    # 1. the startup sync reports on the commit it applied: pending, then success
    done = d.wait_until(lambda: statuses(host, main, f"syncd/{NAME}")[-1:], what="a status")
    d.wait_until(
        lambda: statuses(host, main, f"syncd/{NAME}")[-1]["state"] == "success", what="success"
    )
    states = [s["state"] for s in statuses(host, main, f"syncd/{NAME}")]
    assert states[-1] == "success" and set(states) <= {"pending", "success"}, done
    last = statuses(host, main, f"syncd/{NAME}")[-1]
    assert last["description"] == "applied: +2 ~0 -0"
    assert last["target_url"] == f"https://syncd.example.com/ui/workspaces/{WS}"

    # 2. a pull request: one step changed, one added
    tree.git("checkout", "--quiet", "-b", "promote")
    write_step(tree, "greet", "hello('prod')")
    write_step(tree, "audit", "audit()")
    tree.commit("promote dev")
    head = open_pull(tree, 7)
    host.set_pull_head(REPO, 7, head)
    headers, body = pull_request_webhook(d.repo_url, 7, head, "opened", delivery="pr-7-a")
    assert deliver(d, headers, body)["matched"] == [WS]
    plan = d.wait_until(lambda: statuses(host, head, f"syncd/plan/{NAME}"), what="plan status")
    d.wait_until(lambda: comments(host, 7), what="the plan comment")
    preview = get(d, f"/api/v1/workspaces/{WS}/preview?revision={head}")
    assert preview["would_apply"] and len(preview["create"]) == 1 and len(preview["update"]) == 1
    assert plan[-1]["state"] == "success" and plan[-1]["description"] == "would apply: +1 ~1 -0"
    first = comments(host, 7)
    assert len(first) == 1 and first[0]["body"].startswith("<!-- syncd:plan ")
    assert "audit" in first[0]["body"] and head[:12] in first[0]["body"]
    assert get(d, f"/api/v1/workspaces/{WS}")["last_applied_revision"] == main  # nothing applied

    # 3. a redelivery changes nothing; a second push edits the same comment
    assert deliver(d, headers, body)["duplicate"] is True
    write_step(tree, "audit", "audit(strict=True)")
    tree.commit("stricter audit")
    second = open_pull(tree, 7)
    host.set_pull_head(REPO, 7, second)
    deliver(d, *pull_request_webhook(d.repo_url, 7, second, "synchronize"))
    d.wait_until(lambda: second[:12] in comments(host, 7)[0]["body"], what="the comment edited")
    assert len(comments(host, 7)) == 1 and comments(host, 7)[0]["id"] == first[0]["id"]

    # 4. a pull request with a broken step file: failure naming the file
    tree.git("checkout", "--quiet", "-b", "broken", main)
    tree.write("export/steps/bad.step.json", "{not json")
    tree.commit("a broken step")
    bad = open_pull(tree, 8)
    host.set_pull_head(REPO, 8, bad)
    deliver(d, *pull_request_webhook(d.repo_url, 8, bad, "opened"))
    failed = d.wait_until(lambda: statuses(host, bad, f"syncd/plan/{NAME}"), what="failure")
    assert failed[-1]["state"] == "failure" and "bad.step.json" in failed[-1]["description"]

    # 5. the merge, with the host failing at first: the sync goes on, the status follows
    tree.git("checkout", "--quiet", "promote")
    host.fail_next(2, 500)
    tree.push()  # main = the pull request's head (a fast-forward merge)
    merged = github_push(d.repo_url, second, WEBHOOK_SECRET, before=main, added=["export/steps"])
    assert deliver(d, *merged)["matched"] == [WS]
    d.wait_until(
        lambda: get(d, f"/api/v1/workspaces/{WS}")["last_applied_revision"] == second,
        what="the merge applied",
    )
    d.wait_until(
        lambda: any(s["state"] == "success" for s in statuses(host, second, f"syncd/{NAME}")),
        timeout=30,
        what="the merged commit's success status, after retries",
    )
    text = metrics_text(d)
    assert metric(text, "syncd_reports_total", provider="github", kind="commit_status",
                  result="retry") >= 1  # fmt: skip
    assert metric(text, "syncd_reports_total", provider="github", kind="comment",
                  result="ok") >= 2  # fmt: skip
    assert host.violations == []

    # 6. the token revoked at the host: syncs go on, health and the console name the provider
    host.tokens = {"ghp_someoneElsesToken"}
    write_step(tree, "sweep", "sweep(all=True)")
    third = tree.commit("sweep everything")
    tree.push()
    fixed = github_push(d.repo_url, third, WEBHOOK_SECRET, before=second, added=["export/steps"])
    deliver(d, *fixed)
    d.wait_until(lambda: view(d, WS)["last_applied_revision"] == third, what="applied anyway")
    failure = d.wait_until(
        lambda: get(d, f"/api/v1/workspaces/{WS}/health")["report_error"], what="report_error"
    )
    assert failure["provider"] == "github" and "401" in failure["error"], failure
    page = console_page(d, f"/ui/workspaces/{WS}")
    assert "Report to github" in page and "401" in page

    # 7. the token stays secret everywhere
    health = json.dumps(get(d, f"/api/v1/workspaces/{WS}/health"))
    everywhere = [d.log(), metrics_text(d), health, page, *(c["body"] for c in comments(host, 7))]
    assert not any(HOST_TOKEN in part for part in everywhere)
