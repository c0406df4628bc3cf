"""`server.intake_workers`: more processes take connections on the daemon's port. A webhook
that asks for nothing is answered by whichever process took the connection; a matched push and
every other request reach the daemon; the counts end in the daemon's metrics; a reload reaches
them; one killed is started again; they stop with the daemon."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.test_daemon import github_push
from tests.support import API_TOKEN, GitServer, WorkTree, daemon_env, write_step
from tests.support.daemon import (
    Daemon,
    kill_daemon,
    metric,
    metrics_text,
    rewrite_config,
    start_daemon,
    wait_for,
)

WORKERS = 2
ROUNDS = 30  # requests a case, each on a connection of its own: most land on an intake process
ROTATED_SECRET = "rotated-webhook-secret"


@pytest.fixture
def fronted(git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path) -> Iterator[Daemon]:
    url, tree = repo
    d = start_daemon(
        tmp_path,
        git_server,
        tree,
        url,
        env_extra={"SYNCD_TEST_ROTATED_SECRET": ROTATED_SECRET},
        server_options={"intake_workers": WORKERS},
    )
    yield d
    kill_daemon(d)


def intake_pids(d: Daemon) -> list[int]:
    """The daemon's intake processes: its children running syncd.intake_front."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"syncd.http.intake.front" in cmdline and int(stat[1]) == d.process.pid:
            pids.append(int(entry.name))
    return sorted(pids)


def post_fresh(d: Daemon, headers: dict[str, str], body: bytes) -> httpx.Response:
    """One request on a connection of its own (the kernel hands each to one process)."""
    with httpx.Client(base_url=d.url, timeout=30) as c:
        return c.post("/hooks/github", content=body, headers=headers)


def unmatched_push(d: Daemon, n: int) -> tuple[dict[str, str], bytes]:
    """A push to the followed repository that touches no step: it matches no workspace."""
    return github_push(d, ["README.md"], delivery=f"unmatched-{n}")


def test_intake_processes_answer_webhooks_and_hand_the_rest_on(fronted: Daemon) -> None:
    d = fronted
    assert len(wait_for(lambda: len(intake_pids(d)) == WORKERS and intake_pids(d), 20, "two")) == 2
    for n in range(ROUNDS):
        answer = post_fresh(d, *unmatched_push(d, n))
        assert (answer.status_code, answer.json()) == (202, {"matched": [], "queued": []})
    headers, body = unmatched_push(d, 0)
    for _ in range(ROUNDS):
        answer = post_fresh(d, headers | {"X-Hub-Signature-256": "sha256=" + "0" * 64}, body)
        assert answer.status_code == 401
        assert "does not match the body" in answer.json()["error"]
    for _ in range(ROUNDS):
        with httpx.Client(base_url=d.url, timeout=30) as c:
            answer = c.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 200
        assert {w["id"] for w in answer.json()["workspaces"]} == {"auto", "manual"}
    # Counted where they were answered, added up in the daemon's metrics within a second or so.
    wait_for(
        lambda: (
            metric(
                metrics_text(d),
                "syncd_webhook_requests_total",
                provider="github",
                result="unmatched",
            )
            == ROUNDS
            and metric(
                metrics_text(d),
                "syncd_webhook_requests_total",
                provider="github",
                result="unauthorized",
            )
            == ROUNDS
        ),
        10,
        "the intake processes' counts in the daemon's metrics",
    )
    # A push that matched goes to the daemon, which queues it, applies it and drops its
    # redelivery, whichever process took each.
    path = write_step(d.tree, "fronted step", "fronted()")
    d.tree.commit("a step through an intake process")
    d.tree.push()
    headers, body = github_push(d, [path], delivery="matched-1")
    first = post_fresh(d, headers, body)
    assert first.status_code == 202 and sorted(first.json()["matched"]) == ["auto", "manual"]
    for _ in range(5):
        again = post_fresh(d, headers, body)
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
    with httpx.Client(base_url=d.url, timeout=30) as c:
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        wait_for(
            lambda: (
                "fronted step"
                in {
                    s["name"]
                    for s in c.get("/api/v1/workspaces/auto/steps", headers=auth).json()["steps"]
                }
            ),
            20,
            "the matched push applied",
        )


def test_a_reload_reaches_the_intake_processes(fronted: Daemon) -> None:
    d = fronted
    wait_for(lambda: len(intake_pids(d)) == WORKERS, 20, "the intake processes")
    doc = yaml.safe_load(d.config_path.read_text())
    doc["webhooks"]["github"] = {"secrets_env": ["SYNCD_TEST_ROTATED_SECRET"]}
    rewrite_config(d, doc)
    os.kill(d.process.pid, signal.SIGHUP)
    old_headers, body = unmatched_push(d, 1)
    wait_for(lambda: post_fresh(d, old_headers, body).status_code == 401, 20, "the reload")
    rotated = hmac.new(ROTATED_SECRET.encode(), body, hashlib.sha256).hexdigest()
    new_headers = old_headers | {"X-Hub-Signature-256": f"sha256={rotated}"}
    # Every process has the new secret (the settings reach them a moment after the reload).
    wait_for(
        lambda: all(post_fresh(d, new_headers, body).status_code == 202 for _ in range(ROUNDS)),
        10,
        "the new secret taken by every process",
    )
    assert all(post_fresh(d, old_headers, body).status_code == 401 for _ in range(ROUNDS))


def test_a_killed_intake_process_is_started_again_and_all_stop_with_the_daemon(
    fronted: Daemon,
) -> None:
    d = fronted
    before = wait_for(lambda: len(intake_pids(d)) == WORKERS and intake_pids(d), 20, "two")
    os.kill(before[0], signal.SIGKILL)
    # The listening socket stays open in the others: no connection is refused meanwhile.
    for n in range(ROUNDS):
        assert post_fresh(d, *unmatched_push(d, n)).status_code == 202
    after = wait_for(
        lambda: (
            len(intake_pids(d)) == WORKERS and before[0] not in intake_pids(d) and intake_pids(d)
        ),
        20,
        "the killed intake process started again",
    )
    assert before[1] in after
    assert "intake process exited, starting it again" in d.log()
    text = metrics_text(d)
    assert metric(text, "syncd_intake_process_exits_total") == 1
    assert metric(text, "syncd_intake_processes") == WORKERS
    assert d.stop() == 0
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in after), 10, "all gone")


def test_intake_processes_go_when_the_daemon_is_killed(fronted: Daemon) -> None:
    d = fronted
    pids = wait_for(lambda: len(intake_pids(d)) == WORKERS and intake_pids(d), 20, "two")
    d.process.kill()
    d.process.wait(10)
    # Their stdin (the daemon's pipe) ends: each stops, no orphan keeps the port.
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 15, "orphans gone")


def test_a_second_daemon_on_the_same_port_is_refused(
    fronted: Daemon, git_server: GitServer, tmp_path: Path
) -> None:
    """SO_REUSEPORT lets the intake processes share the port; not another syncd."""
    d = fronted
    second = tmp_path / "second"
    second.mkdir()
    config = yaml.safe_load(d.config_path.read_text())
    config["state_dir"] = str(second / "state")
    path = second / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "serve", "--config", str(path)],
        env=daemon_env(git_server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1:" in done.stderr and "in use" in done.stderr
