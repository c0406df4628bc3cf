"""The real daemon on loopback: push with git, deliver a signed webhook, see the result."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
import uuid
from typing import Any

from tests.support import READ_TOKEN, WEBHOOK_SECRET, write_step
from tests.support.daemon import Daemon


def github_push(
    d: Daemon, files: list[str], delivery: str | None = None, ref: str = "refs/heads/main"
) -> tuple[dict[str, str], bytes]:
    head = d.tree.head()
    body = json.dumps(
        {
            "ref": ref,
            "before": "0" * 39 + "1",
            "after": head,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {
                "clone_url": d.repo_url,
                "html_url": d.repo_url.removesuffix(".git"),
                "full_name": "acme/steps",
            },
            "commits": [{"id": head, "added": files, "modified": [], "removed": []}],
            "head_commit": {"id": head, "added": files, "modified": [], "removed": []},
        }
    ).encode()
    sig = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={sig}",
    }
    return headers, body


def deliver(d: Daemon, headers: dict[str, str], body: bytes, path: str = "/hooks/github") -> Any:
    with d.client(token=None) as c:
        return c.post(path, content=body, headers=headers)


def steps_of(d: Daemon, ws: str) -> dict[str, str]:
    with d.client() as c:
        r = c.get(f"/api/v1/workspaces/{ws}/steps")
        assert r.status_code == 200, r.text
        return {s["name"]: s["content"]["do"] for s in r.json()["steps"]}


def workspace_of(d: Daemon, ws: str) -> dict[str, Any]:
    with d.client() as c:
        workspace: dict[str, Any] = c.get(f"/api/v1/workspaces/{ws}").json()
        return workspace


def runs_of(d: Daemon, ws: str) -> list[dict[str, Any]]:
    with d.client() as c:
        runs: list[dict[str, Any]] = c.get(f"/api/v1/workspaces/{ws}/runs").json()["runs"]
        return runs


def settle(d: Daemon) -> None:
    """Wait for the startup comparison of both workspaces."""
    d.wait_until(lambda: runs_of(d, "auto") and runs_of(d, "manual"), what="startup runs")


def test_webhook_push_applies_automatic_and_marks_manual_out_of_sync(daemon: Daemon) -> None:
    settle(daemon)
    path = write_step(daemon.tree, "and-done/greeting done", "hello()")
    daemon.tree.commit("add a step")
    daemon.tree.push()
    r = deliver(daemon, *github_push(daemon, [path]))
    assert r.status_code == 202, r.text
    assert sorted(r.json()["matched"]) == ["auto", "manual"]
    daemon.wait_until(
        lambda: steps_of(daemon, "auto") == {"and-done/greeting done": "hello()"},
        what="the automatic workspace to apply the push",
    )
    daemon.wait_until(
        lambda: workspace_of(daemon, "manual")["status"] == "OutOfSync",
        what="the manual workspace to turn OutOfSync",
    )
    assert steps_of(daemon, "manual") == {}
    # The planned run records what it would change, not zeros.
    planned = workspace_of(daemon, "manual")["last_run"]
    assert planned["result"] == "planned" and planned["trigger"] == "webhook"
    assert (planned["created"], planned["updated"], planned["deleted"]) == (1, 0, 0)
    auto = workspace_of(daemon, "auto")
    assert auto["status"] == "Synced" and auto["last_applied_revision"] == daemon.tree.head()
    assert auto["last_run"]["trigger"] == "webhook"


def test_manual_sync_needs_the_right_token(daemon: Daemon) -> None:
    settle(daemon)
    write_step(daemon.tree, "greet", "hi()")
    daemon.tree.commit()
    daemon.tree.push()
    with daemon.client(token=None) as c:
        assert c.post("/api/v1/workspaces/manual/sync").status_code == 401
    with daemon.client(token="not-a-token") as c:
        r = c.post("/api/v1/workspaces/manual/sync")
        assert r.status_code == 401 and "not-a-token" not in r.text
    with daemon.client(token=READ_TOKEN) as c:
        assert c.post("/api/v1/workspaces/manual/sync").status_code == 403
    with daemon.client() as c:
        r = c.post("/api/v1/workspaces/manual/sync?wait=true", json={"dry_run": False})
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["result"] == "succeeded" and run["trigger"] == "manual"
        assert run["created"] == 1 and run["revision"] == daemon.tree.head()
        assert c.get(f"/api/v1/runs/{run['id']}").json()["id"] == run["id"]
        assert c.post("/api/v1/workspaces/nope/sync").status_code == 404
        assert c.post("/api/v1/workspaces/manual/sync", content=b"[1]").status_code == 400
        assert (
            c.post("/api/v1/workspaces/manual/sync", json={"revision": "../etc"}).status_code == 422
        )
    assert steps_of(daemon, "manual") == {"greet": "hi()"}


def test_outside_edit_is_overwritten_in_automatic_and_kept_in_manual(daemon: Daemon) -> None:
    write_step(daemon.tree, "greet", "git()")
    daemon.tree.commit()
    daemon.tree.push()
    with daemon.client() as c:
        for ws in ("auto", "manual"):
            r = c.post(f"/api/v1/workspaces/{ws}/sync?wait=true")
            assert r.json()["result"] == "succeeded", r.text
        body = {"content": {"if": "true", "do": "hand()"}}
        for ws in ("auto", "manual"):
            r = c.put(f"/api/v1/workspaces/{ws}/steps/greet", json=body)
            assert r.status_code == 200 and r.json()["origin"] == "outside"
        r = c.put("/api/v1/workspaces/auto/steps/a%2Fb%20c", json=body)
        assert r.status_code == 200 and r.json()["name"] == "a/b c"
    daemon.wait_until(
        lambda: steps_of(daemon, "auto") == {"greet": "git()"},
        what="self-heal of the automatic workspace",
    )
    time.sleep(1.5)
    assert steps_of(daemon, "manual") == {"greet": "hand()"}
    manual = workspace_of(daemon, "manual")
    assert manual["status"] == "OutOfSync"
    with daemon.client() as c:
        health = c.get("/api/v1/workspaces/manual/health").json()
        assert health["changed_outside_git"] == ["greet"]
        # No delivery yet: every configured secret shows as unused, by name, never by value.
        assert "github: env SYNCD_TEST_WEBHOOK_SECRET" in health["webhooks_unused"]
        assert WEBHOOK_SECRET not in json.dumps(health)
        diff = c.get("/api/v1/workspaces/manual/diff").json()
        assert [u["name"] for u in diff["update"]] == ["greet"]


def test_redelivery_and_unrelated_paths_start_no_run(daemon: Daemon) -> None:
    settle(daemon)
    before = len(runs_of(daemon, "auto"))
    daemon.tree.write("docs/readme.md", "unrelated")
    daemon.tree.commit()
    daemon.tree.push()
    r = deliver(daemon, *github_push(daemon, ["docs/readme.md"]))
    assert r.status_code == 202 and r.json()["matched"] == []
    path = write_step(daemon.tree, "greet")
    daemon.tree.commit()
    daemon.tree.push()
    headers, body = github_push(daemon, [path], delivery="delivery-1")
    assert deliver(daemon, headers, body).json()["matched"] == ["auto", "manual"]
    daemon.wait_until(lambda: len(runs_of(daemon, "auto")) == before + 1, what="one run")
    again = deliver(daemon, headers, body)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    time.sleep(1)
    assert len(runs_of(daemon, "auto")) == before + 1


def test_bad_webhooks_get_clear_answers(daemon: Daemon) -> None:
    headers, body = github_push(daemon, ["export/steps/x.step.json"])
    bad_sig = headers | {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    r = deliver(daemon, bad_sig, body)
    assert r.status_code == 401 and WEBHOOK_SECRET not in r.text
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert deliver(daemon, unsigned, body).status_code == 401
    big = b"x" * (2 * 1024 * 1024)
    assert deliver(daemon, headers, big).status_code == 413
    assert deliver(daemon, headers, body, "/hooks/nope").status_code == 404
    garbage = b"{not json"
    sig = hmac.new(WEBHOOK_SECRET.encode(), garbage, hashlib.sha256).hexdigest()
    r = deliver(daemon, headers | {"X-Hub-Signature-256": f"sha256={sig}"}, garbage)
    assert r.status_code == 400 and r.json()["error"]
    # Auto-detection tells GitHub from the headers.
    assert deliver(daemon, headers, body, "/hooks").status_code == 202
    with daemon.client() as c:
        health = c.get("/api/v1/workspaces/auto/health").json()
    assert "github: env SYNCD_TEST_WEBHOOK_SECRET" not in health["webhooks_unused"]
    assert health["webhook_last_seen"]["github"] is not None


def test_metrics_health_and_openapi(daemon: Daemon) -> None:
    write_step(daemon.tree, "greet")
    daemon.tree.commit()
    daemon.tree.push()
    with daemon.client() as c:
        assert c.post("/api/v1/workspaces/auto/sync?wait=true").json()["result"] == "succeeded"
    with daemon.client(token=None) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/openapi.json").json()["openapi"].startswith("3.")
        text = c.get("/metrics").text
    for name in (
        "syncd_sync_runs_total",
        "syncd_sync_duration_seconds_bucket",
        "syncd_workspace_status",
        "syncd_workspace_drift_steps",
        "syncd_git_operations_total",
        "syncd_git_operation_duration_seconds_bucket",
        "syncd_config_reloads_total",
        "syncd_notifications_sent_total",
        "syncd_build_info",
    ):
        assert name in text, name
    assert 'syncd_workspace_status{workspace="auto",status="Synced"} 1' in text
    # One series a workspace: its current status (Argo CD's way; the others are not 0 but gone).
    manual = [
        line
        for line in text.splitlines()
        if line.startswith("syncd_workspace_status{") and 'workspace="manual"' in line
    ]
    assert len(manual) == 1 and manual[0].endswith(" 1")


def test_sigterm_exits_cleanly(daemon: Daemon) -> None:
    settle(daemon)
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    assert "stopped" in daemon.log()
