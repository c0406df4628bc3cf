"""The real daemon's log: JSON lines with one key per field, logfmt text, audit lines for every
mutating API call, failures at warning, and never a secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import API_TOKEN, GitServer, WorkTree, write_step
from tests.support.configs import READ_TOKEN, WEBHOOK_SECRET
from tests.support.daemon import Daemon, kill_daemon, start_daemon
from tests.unit.test_logs import RFC3339_UTC, parse_logfmt


def exercise(d: Daemon) -> None:
    """A good sync, a failed one, a step edit and delete, and a refused call."""
    with d.client() as c:
        d.wait_until(
            lambda: c.get("/api/v1/workspaces/manual/runs").json()["runs"], what="startup run"
        )
        write_step(d.tree, "greet", "hello()")
        d.tree.commit("add greet")
        d.tree.push()
        ok = c.post("/api/v1/workspaces/manual/sync?wait=1")
        assert ok.status_code == 200 and ok.json()["result"] == "succeeded", ok.text
        d.tree.write("export/steps/broken.step.json", "{ not json")
        d.tree.commit("break a step file")
        d.tree.push()
        failed = c.post("/api/v1/workspaces/manual/sync?wait=1")
        assert failed.status_code == 200 and failed.json()["result"] == "failed", failed.text
        put = c.put("/api/v1/workspaces/auto/steps/edited", json={"if": "true", "do": "x()"})
        assert put.status_code == 200, put.text
        assert c.delete("/api/v1/workspaces/auto/steps/edited").status_code == 204
        assert c.post("/api/v1/workspaces/manual/suspend").status_code == 200
        assert c.post("/api/v1/workspaces/manual/resume").status_code in (200, 202)
        assert c.post("/api/v1/workspaces/nope/sync").status_code == 404


def audits(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in lines if doc["event"] == "audit"]


def assert_no_secret(text: str, server: GitServer) -> None:
    for secret in (API_TOKEN, READ_TOKEN, WEBHOOK_SECRET, server.password):
        assert secret not in text


def test_json_log_lines_parse_and_carry_their_fields(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    d = start_daemon(tmp_path, git_server, tree, url, serve_args=["--log-format", "json"])
    try:
        exercise(d)
    finally:
        kill_daemon(d)
    text = d.log()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all(isinstance(doc, dict) for doc in lines)
    for doc in lines:
        assert {"ts", "level", "logger", "event"} <= doc.keys(), doc
        assert RFC3339_UTC.match(doc["ts"]), doc
    ends = [doc for doc in lines if doc["event"] in ("sync end", "sync failed")]
    assert any(doc["event"] == "sync end" and doc["workspace"] == "manual" for doc in ends)
    [*_, failed] = [d for d in ends if d["event"] == "sync failed" and d["workspace"] == "manual"]
    assert failed["level"] == "warning" and failed["workspace"] == "manual"
    assert failed["result"] == "failed" and "broken" in failed["error"] and failed["run"]
    assert isinstance(failed["created"], int)
    actions = [(a["action"], a["workspace"], a["result"], a["token"]) for a in audits(lines)]
    assert actions == [
        ("sync", "manual", "ok", "ci"),
        ("sync", "manual", "ok", "ci"),
        ("step.put", "auto", "ok", "ci"),
        ("step.delete", "auto", "ok", "ci"),
        ("suspend", "manual", "ok", "ci"),
        ("resume", "manual", "ok", "ci"),
        ("sync", "nope", "refused", "ci"),
    ]
    assert audits(lines)[2]["step"] == "edited" and audits(lines)[-1]["status"] == 404
    assert_no_secret(text, git_server)


def test_text_log_lines_are_logfmt(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    d = start_daemon(tmp_path, git_server, tree, url)
    try:
        exercise(d)
    finally:
        kill_daemon(d)
    text = d.log()
    lines = [parse_logfmt(line) for line in text.splitlines() if line.strip()]
    assert all(RFC3339_UTC.match(doc["ts"]) for doc in lines)
    [*_, failed] = [doc for doc in lines if doc["event"] == "sync failed"]
    assert failed["level"] == "warning" and "broken" in failed["error"]
    assert [a["action"] for a in audits(lines)] == ["sync"] * 2 + [
        "step.put",
        "step.delete",
        "suspend",
        "resume",
        "sync",
    ]
    assert_no_secret(text, git_server)
