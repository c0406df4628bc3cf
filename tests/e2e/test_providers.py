"""Every provider's push, end to end: git push, the host's signed webhook, the step applied.

One daemon and one repository serve the whole module (two workspaces on it: `auto` and
`manual`); each case pushes its own step, so the cases stay independent in what they check.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import WEBHOOK_SECRET, GitServer, WorkTree, payloads, write_step
from tests.support.daemon import Daemon, start_daemon

OTHER_BRANCH = "feature/other"
CASES = [(v, f"/hooks/{payloads.ENDPOINT[v]}") for v in payloads.VARIANTS] + [
    (v, "/hooks") for v in payloads.AUTO_DETECTED
]


@pytest.fixture(scope="module")
def hub(git_server: GitServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """The daemon, on a repository of its own with a first step, both workspaces compared."""
    tmp = tmp_path_factory.mktemp("providers")
    name = f"providers-{uuid.uuid4().hex[:8]}"
    url = git_server.create_repo(name)
    tree = WorkTree(git_server, name, tmp / "work")
    tree.write("README.md", "# providers\n")
    write_step(tree, "seed")  # the folder must exist for a sync to succeed
    tree.commit("initial commit")
    tree.push()
    d = start_daemon(tmp, git_server, tree, url)
    try:
        d.wait_until(lambda: runs(d, "auto") and runs(d, "manual"), what="startup runs")
        yield d
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.stop()
        if d.process.poll() is None:
            d.process.kill()
            d.process.wait(10)


@pytest.fixture(scope="module")
def other_head(hub: Daemon) -> str:
    """A real commit with a step on another branch; main is left where it was."""
    write_step(hub.tree, "elsewhere", "other()")
    head = hub.tree.commit("a step on another branch")
    hub.tree.push(OTHER_BRANCH)
    hub.tree.git("reset", "--quiet", "--hard", "HEAD~1")
    return head


# --- helpers ----------------------------------------------------------------------------------


def deliver(d: Daemon, path: str, headers: dict[str, str], body: bytes) -> Any:
    with d.client(token=None) as c:
        return c.post(path, content=body, headers=headers)


def steps(d: Daemon, ws: str) -> dict[str, str]:
    with d.client() as c:
        r = c.get(f"/api/v1/workspaces/{ws}/steps")
        assert r.status_code == 200, r.text
        return {s["name"]: s["content"]["do"] for s in r.json()["steps"]}


def workspace(d: Daemon, ws: str) -> dict[str, Any]:
    with d.client() as c:
        r = c.get(f"/api/v1/workspaces/{ws}")
        assert r.status_code == 200, r.text
        view: dict[str, Any] = r.json()
        return view


def runs(d: Daemon, ws: str) -> list[dict[str, Any]]:
    with d.client() as c:
        found: list[dict[str, Any]] = c.get(f"/api/v1/workspaces/{ws}/runs").json()["runs"]
        return found


def sync_manual(d: Daemon) -> None:
    """Bring the manual workspace to the branch head, so a later push shows as OutOfSync."""
    with d.client() as c:
        r = c.post("/api/v1/workspaces/manual/sync?wait=true", json={"dry_run": False})
        assert r.status_code == 200 and r.json()["result"] == "succeeded", r.text
    assert workspace(d, "manual")["status"] == "Synced"


def push_step(d: Daemon, label: str) -> tuple[str, str, str, str]:
    """Commit and push a new step; (step name, its `do`, the file, the new head)."""
    name, do = f"{label}/hello world", f"hello_{label.replace('-', '_')}()"
    path = write_step(d.tree, name, do)
    d.tree.commit(f"add a step for {label}")
    d.tree.push()
    return name, do, path, d.tree.head()


# --- pushes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "path"), CASES, ids=[f"{v}-{p}" for v, p in CASES])
def test_push_applies_automatic_and_marks_manual_out_of_sync(
    hub: Daemon, variant: str, path: str
) -> None:
    sync_manual(hub)
    before = hub.tree.head()
    label = f"{variant}{path.replace('/hooks', '').replace('/', '-') or '-auto'}"
    name, do, file, head = push_step(hub, label)
    delivery = str(uuid.uuid4())
    headers, body = payloads.build(
        variant, hub.repo_url, "main", [file], head, delivery, before=before
    )

    r = deliver(hub, path, headers, body)

    assert r.status_code == 202, r.text
    assert sorted(r.json()["matched"]) == ["auto", "manual"]
    assert sorted(r.json()["queued"]) == ["auto", "manual"]
    hub.wait_until(
        lambda: (
            steps(hub, "auto").get(name) == do
            and workspace(hub, "auto")["last_applied_revision"] == head
        ),
        what=f"the automatic workspace to apply the {variant} push",
    )
    hub.wait_until(
        lambda: (
            (ws := workspace(hub, "manual"))["status"] == "OutOfSync"
            and ws["last_seen_revision"] == head
        ),
        what=f"the manual workspace to see the {variant} push",
    )
    assert name not in steps(hub, "manual")
    auto, manual = workspace(hub, "auto"), workspace(hub, "manual")
    assert auto["status"] == "Synced"
    assert auto["last_run"]["trigger"] == "webhook" and auto["last_run"]["revision"] == head
    assert manual["last_run"]["trigger"] == "webhook"
    assert manual["last_run"]["result"] == "planned"
    # The host retries a delivery it thinks failed: the same delivery starts nothing new.
    again = deliver(hub, path, headers, body)
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text


@pytest.mark.parametrize(("variant", "path"), CASES, ids=[f"{v}-{p}" for v, p in CASES])
def test_push_to_another_branch_matches_nothing(
    hub: Daemon, other_head: str, variant: str, path: str
) -> None:
    runs_before = {ws: len(runs(hub, ws)) for ws in ("auto", "manual")}
    headers, body = payloads.build(
        variant,
        hub.repo_url,
        OTHER_BRANCH,
        ["export/steps/elsewhere.step.json"],
        other_head,
        str(uuid.uuid4()),
    )
    r = deliver(hub, path, headers, body)
    assert r.status_code == 202, r.text
    assert r.json() == {"matched": [], "queued": []}
    assert {ws: len(runs(hub, ws)) for ws in ("auto", "manual")} == runs_before


@pytest.mark.parametrize("variant", payloads.VARIANTS)
def test_a_push_signed_with_another_secret_is_refused(hub: Daemon, variant: str) -> None:
    headers, body = payloads.build(
        variant, hub.repo_url, "main", ["export/steps/x.step.json"], "a" * 40, "forged"
    )
    forged = headers | payloads.signature_headers(variant, body, secret="not the secret")
    r = deliver(hub, f"/hooks/{payloads.ENDPOINT[variant]}", forged, body)
    assert r.status_code == 401, r.text
    assert r.json()["error"] and WEBHOOK_SECRET not in r.text


SIGNATURES = ("X-Forgejo-Signature", "X-Gitea-Signature", "X-Gogs-Signature", "X-Hub-Signature-256")


@pytest.mark.parametrize("kept", SIGNATURES)
def test_any_one_signature_header_of_forgejo_is_enough(
    hub: Daemon, other_head: str, kept: str
) -> None:
    headers, body = payloads.build(
        "forgejo", hub.repo_url, OTHER_BRANCH, [], other_head, str(uuid.uuid4())
    )
    alone = {k: v for k, v in headers.items() if k not in SIGNATURES or k == kept}
    alone.pop("X-Hub-Signature")  # sha1: syncd does not read it
    assert deliver(hub, "/hooks/gitea", alone, body).status_code == 202
    unsigned = {k: v for k, v in alone.items() if k != kept}
    assert deliver(hub, "/hooks/gitea", unsigned, body).status_code == 401


# --- pings and ignored events -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hooks/github", "/hooks"])
def test_github_ping_answers_200(hub: Daemon, path: str) -> None:
    r = deliver(hub, path, *payloads.github_ping(hub.repo_url, str(uuid.uuid4())))
    assert r.status_code == 200, r.text
    assert r.json() == {"ping": "ok"}


@pytest.mark.parametrize("path", ["/hooks/gitlab", "/hooks"])
def test_gitlab_tag_push_is_ignored(hub: Daemon, path: str) -> None:
    runs_before = len(runs(hub, "auto"))
    headers, body = payloads.gitlab_tag_push(
        hub.repo_url, "v1.0.0", hub.tree.head(), str(uuid.uuid4())
    )
    r = deliver(hub, path, headers, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"ignored": True, "matched": [], "queued": []}
    assert len(runs(hub, "auto")) == runs_before


@pytest.mark.parametrize("path", ["/hooks/bitbucket-server", "/hooks"])
def test_bitbucket_server_diagnostics_ping_answers_200(hub: Daemon, path: str) -> None:
    r = deliver(hub, path, *payloads.bitbucket_server_ping(str(uuid.uuid4())))
    assert r.status_code == 200, r.text
    assert r.json() == {"ping": "ok"}
