"""Health and honest rollbacks against the real daemon, the real https git server and a real SMTP
server: a remote that rejects the credentials turns the workspace Degraded at the next poll and
reaches the e-mail digest, then Healthy again; a pinned sync stays pinned across polls and a
restart until `resume`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support import READ_TOKEN, workspace, write_step
from tests.support.configs import daemon_env
from tests.support.daemon import (
    Daemon,
    Remote,
    applied,
    free_port,
    metric,
    metrics_text,
    remote,
    runs,
    start_daemon,
    stop_daemon,
    view,
    wait_for,
)

POLL = 1.0
OPS = "ops@example.com"


class Inbox:
    """An aiosmtpd handler that keeps every message's plain text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        content = str(body.get_content()) if body is not None else ""
        self.texts.append(f"{message['Subject']}\n{content}")
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def rm(tmp_path: Path) -> Iterator[Remote]:
    with remote(tmp_path) as r:
        yield r


def health(d: Daemon, ws: str) -> dict[str, Any]:
    found: dict[str, Any] = view(d, ws)["health"]
    return found


def status_text(d: Daemon, rm: Remote) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "syncd", "status", "--config", str(d.config_path)],
        env=daemon_env(rm.server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rejected_credentials_degrade_at_the_next_poll_reach_the_digest_and_heal(
    tmp_path: Path, rm: Remote, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    interval = 2.0
    notifications = {
        "interval": f"{interval:g}s",
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "from": "syncd@x.org"},
    }
    ws = workspace("auto", rm.url, rm.server, "automatic", poll_interval=f"{POLL:g}s", notify=[OPS])
    d = start_daemon(tmp_path, rm.server, rm.tree, rm.url, [ws], notifications=notifications)
    try:
        wait_for(lambda: applied(d, "auto") == rm.tree.head(), 30, "the startup sync")
        assert health(d, "auto")["status"] == "Healthy"
        # The remote starts rejecting every credential: Degraded within one poll.
        rm.server.set_fault("401")
        started = time.monotonic()
        wait_for(lambda: health(d, "auto")["status"] == "Degraded", 3 * POLL, "Degraded")
        degraded_after = time.monotonic() - started
        h = health(d, "auto")
        assert "rejected the credentials" in h["error"] and h["failures"] >= 1, h
        assert h["since"] is not None
        v = view(d, "auto")
        # The remote cannot be read: the comparison is unknown (as Argo CD says), whatever it holds
        assert v["status"] == "Unknown" and v["last_applied_revision"] is not None
        assert metric(metrics_text(d), "syncd_workspace_health", workspace="auto") == 1
        assert (
            metric(metrics_text(d), "syncd_workspace_health", workspace="auto", health="Degraded")
            == 1
        )
        assert "Degraded" in status_text(d, rm)
        # The digest names it within one interval (plus the time runs are left to settle).
        wait_for(lambda: inbox.texts, interval * 2 + 3, "the digest e-mail", every=0.2)
        assert any("ws-auto" in t and "rejected the credentials" in t for t in inbox.texts)
        # Later polls count the failure; it is recorded as a run once, not once a poll.
        wait_for(lambda: health(d, "auto")["failures"] >= 2, 10 * POLL, "a second failed poll")
        failed = [r for r in runs(d, "auto") if r["result"] == "failed"]
        assert len(failed) == 1 and failed[0]["trigger"] == "poll", failed
        # The remote is back: Healthy again, and the digest tells of the recovery.
        mails = len(inbox.texts)
        rm.server.set_fault(None)
        wait_for(lambda: health(d, "auto")["status"] == "Healthy", 30, "Healthy again")
        assert health(d, "auto")["failures"] == 0 and health(d, "auto")["error"] is None
        wait_for(lambda: len(inbox.texts) > mails, interval * 2 + 3, "the recovery e-mail")
        assert "recovered" in inbox.texts[-1] and "ws-auto" in inbox.texts[-1]
        print(f"\nDegraded {degraded_after:.2f}s after the remote began refusing (poll {POLL}s)")
    finally:
        stop_daemon(d)


def test_a_pinned_sync_stays_pinned_across_polls_and_a_restart_until_resume(
    tmp_path: Path, rm: Remote
) -> None:
    old = rm.tree.head()
    write_step(rm.tree, "step 1", "second()")
    head = rm.commit_and_push("second")
    ws = [workspace("auto", rm.url, rm.server, "automatic", poll_interval=f"{POLL:g}s")]

    def start() -> Daemon:
        return start_daemon(tmp_path, rm.server, rm.tree, rm.url, ws)

    d = start()
    try:
        wait_for(lambda: applied(d, "auto") == head, 30, "the startup sync")
        with d.client() as c:
            r = c.post("/api/v1/workspaces/auto/sync?wait=true", json={"revision": old})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["result"] == "succeeded" and answer["revision"] == old
        assert answer["suspended"] is True and answer["pinned_revision"] == old

        def pinned() -> bool:
            v = view(d, "auto")
            return bool(
                v["last_applied_revision"] == old
                and v["pinned_revision"] == old
                and v["status"] == "OutOfSync"
                and v["suspended"]
                and v["health"]["status"] == "Suspended"
            )

        assert pinned()
        time.sleep(4 * POLL)  # several polls: none undoes the rollback
        assert pinned()
        # A new commit is seen (last_seen_revision), and not applied.
        write_step(rm.tree, "step 2", "third()")
        newer = rm.commit_and_push("third")
        wait_for(lambda: view(d, "auto")["last_seen_revision"] == newer, 10, "the new head seen")
        time.sleep(2 * POLL)
        assert pinned()
        stop_daemon(d)
        d = start()
        time.sleep(3 * POLL)  # the startup comparison and a few polls
        assert pinned(), view(d, "auto")
        # Resume returns it to the head.
        with d.client() as c:
            r = c.post("/api/v1/workspaces/auto/resume")
        assert r.status_code == 202, r.text
        assert r.json()["suspended"] is False
        wait_for(lambda: applied(d, "auto") == newer, 20, "the head applied after resume")
        v = view(d, "auto")
        assert v["status"] == "Synced" and v["pinned_revision"] is None and not v["suspended"]
        assert v["health"]["status"] == "Healthy"
    finally:
        stop_daemon(d)


def test_suspend_over_the_api_is_kept_and_resume_ends_it(tmp_path: Path, rm: Remote) -> None:
    ws = [workspace("auto", rm.url, rm.server, "automatic", poll_interval=f"{POLL:g}s")]
    d = start_daemon(tmp_path, rm.server, rm.tree, rm.url, ws)
    try:
        first = rm.tree.head()
        wait_for(lambda: applied(d, "auto") == first, 30, "the startup sync")
        with d.client() as c:
            r = c.post("/api/v1/workspaces/auto/suspend")
            assert r.status_code == 200, r.text
            assert r.json()["suspended"] and r.json()["health"]["status"] == "Suspended"
            viewer = d.client(token=READ_TOKEN)
            assert viewer.post("/api/v1/workspaces/auto/suspend").status_code == 403
            viewer.close()
            assert c.post("/api/v1/workspaces/nope/resume").status_code == 404
        write_step(rm.tree, "step 9", "nine()")
        head = rm.commit_and_push("nine")
        wait_for(lambda: view(d, "auto")["last_seen_revision"] == head, 10, "the push seen")
        assert applied(d, "auto") == first and view(d, "auto")["status"] == "OutOfSync"
        with d.client() as c:
            assert c.post("/api/v1/workspaces/auto/resume").status_code == 202
        wait_for(lambda: applied(d, "auto") == head, 20, "the head applied after resume")
        assert not view(d, "auto")["suspended"]
    finally:
        stop_daemon(d)
