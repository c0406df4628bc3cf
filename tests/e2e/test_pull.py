"""`syncd pull` and the export endpoint against the real daemon and the real https git server.

Workspaces: dev and ops (manual, seeded from their own branches), prod (automatic, tracks `prod`).
The dev -> git -> prod round trip: pull dev into a checkout, commit, push to `prod`, sync prod.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.core.model import StepContent
from syncd.core.steps import render_step_file, step_file_name
from tests.support import READ_TOKEN, GitServer, WorkTree, workspace
from tests.support.daemon import Daemon, free_port, start_daemon

pytestmark = pytest.mark.timeout(180)

NASTY = {
    "and-done/greeting done": ("data.kind == 'greet'", "return { ok: `yes ${data.x}` };"),
    "ünïcödé/名前 with space": ("true", "/* a comment */ x(); */ y();"),
    "a b": ("true", "{{}}}"),
    "a/b": ("true", "`\\`"),
    "deep/er/still deeper/x": ("(a) => { return 1 }", 'say("hi")\n  return;'),
    "emoji 😀": ("true", "*/"),
    "../../escape": ("true", "escape()"),
    "/abs/x": ("true", "abs()"),
    "..": ("true", "dots()"),
    ".git/config": ("true", "gitconfig()"),
}


@pytest.fixture
def pd(git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path) -> Iterator[Daemon]:
    url, tree = repo
    for branch in ("seed", "seed-ops", "prod"):
        tree.push(branch)
    d = start_daemon(
        tmp_path,
        git_server,
        tree,
        url,
        [
            workspace("dev", url, git_server, "manual", source={"branch": "seed"}),
            workspace("ops", url, git_server, "manual", source={"branch": "seed-ops"}),
            workspace("prod", url, git_server, "automatic", source={"branch": "prod"}),
        ],
    )
    yield d
    if d.process.poll() is None:
        d.process.kill()
        d.process.wait(10)


def seed(
    d: Daemon, steps: dict[str, tuple[str, str]], ws: str = "dev", disabled: set[str] | None = None
) -> None:
    """Give a manual workspace these live steps, through git: commit, push, sync; the names in
    `disabled` are disabled steps."""
    branch = {"dev": "seed", "ops": "seed-ops"}[ws]
    d.tree.git("checkout", "--quiet", "-B", branch)
    if (d.tree.path / "export").exists():
        d.tree.remove("export")
    for i, (name, (if_, do)) in enumerate(steps.items()):
        # Files named by number: `a b` and `a/b` would share a file (reading ignores names).
        content = StepContent(if_, do, enabled=name not in (disabled or set()))
        d.tree.write(f"export/steps/{i}.step.json", render_step_file(name, content))
    d.tree.commit(f"seed {ws}")
    d.tree.push(branch, force=True)
    d.tree.git("checkout", "--quiet", "main")
    sync(d, ws)
    assert set(steps_of(d, ws)) == set(steps)


def sync(d: Daemon, ws: str) -> None:
    with d.client() as c:
        r = c.post(f"/api/v1/workspaces/{ws}/sync?wait=true")
        assert r.status_code == 200 and r.json()["result"] == "succeeded", r.text


def steps_of(d: Daemon, ws: str) -> dict[str, dict[str, Any]]:
    with d.client() as c:
        r = c.get(f"/api/v1/workspaces/{ws}/steps")
        assert r.status_code == 200, r.text
        return {s["name"]: s["content"] for s in r.json()["steps"]}


def checkout(d: Daemon, where: Path) -> Path:
    d.tree.server.run_git("clone", "--quiet", d.repo_url, str(where))
    return where


def pull(
    d: Daemon, cwd: Path, *args: str, env: dict[str, str] | None = None, server: bool = True
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SYNCD_TOKEN", "ALOMA_KEY")}
    base.pop("SYNCD_SERVER", None)
    extra = {"SYNCD_TOKEN": READ_TOKEN} if env is None else env
    flags = ["--server", d.url] if server else []
    return subprocess.run(
        [sys.executable, "-m", "syncd", "pull", *flags, *args],
        cwd=cwd,
        env=base | extra,
        capture_output=True,
        text=True,
        timeout=60,
    )


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def test_pull_takes_its_token_from_a_file(pd: Daemon, tmp_path: Path) -> None:
    seed(pd, {"greet": ("true", "hello()")})
    work = checkout(pd, tmp_path / "work")
    token = tmp_path / "token"
    token.write_text(READ_TOKEN + "\n")
    out = pull(pd, work, "dev", "--token-file", str(token), env={})
    assert out.returncode == 0, out.stderr
    assert any(p.endswith(".step.json") for p in files_of(work))


def test_pull_by_id_and_by_aloma_yaml(pd: Daemon, tmp_path: Path) -> None:
    seed(pd, {"greet": ("true", "hello()"), "and-done/greeting done": ("x", "bye()")})
    one = checkout(pd, tmp_path / "one")
    out = pull(pd, one, "dev")
    assert out.returncode == 0, out.stderr
    assert "Pulling workspace ws-dev (id: dev): 2 steps" in out.stdout
    assert "wrote   src/steps/and-done/greeting done.mts" in out.stdout
    assert "4 written, 0 changed, 0 removed, 0 unchanged" in out.stdout
    live = steps_of(pd, "dev")
    for name, content in live.items():
        data = (one / "export/steps" / step_file_name(name)).read_bytes()
        assert data == render_step_file(name, StepContent.from_dict(content))
    mts = (one / "src/steps/and-done/greeting done.mts").read_text()
    assert mts.startswith("/**\n  Name:       and-done/greeting done\n")
    assert "export const match = () => (x);" in mts and "Workspace:  dev" in mts

    # The same from .aloma.yaml, with the SDK's variable names, in a subfolder of the checkout.
    two = checkout(pd, tmp_path / "two")
    (two / ".aloma.yaml").write_text("pull:\n  workspaces:\n    - dev\n")
    out = pull(pd, two, env={"ALOMA_KEY": READ_TOKEN, "SYNCD_SERVER": pd.url}, server=False)
    assert out.returncode == 0, out.stderr
    files = files_of(two)
    files.pop(".aloma.yaml")
    assert files == files_of(one)

    again = pull(pd, two)
    assert again.returncode == 0 and "0 written, 0 changed, 0 removed, 4 unchanged" in again.stdout


def test_round_trip_dev_to_git_to_prod(pd: Daemon, tmp_path: Path) -> None:
    seed(pd, NASTY)
    work = checkout(pd, tmp_path / "work")
    out = pull(pd, work, "dev")
    assert out.returncode == 0, out.stderr
    server = pd.tree.server
    server.run_git("add", "-A", cwd=work)
    server.run_git("commit", "--quiet", "-m", "Promote dev", cwd=work)
    server.run_git("push", "--quiet", "origin", "HEAD:refs/heads/prod", cwd=work)
    sync(pd, "prod")
    dev, prod = steps_of(pd, "dev"), steps_of(pd, "prod")
    assert prod == dev and len(prod) == len(NASTY)


def test_stale_files_are_removed_and_other_files_kept(pd: Daemon, tmp_path: Path) -> None:
    seed(pd, {"a": ("true", "a()"), "b/c": ("true", "c()")})
    work = checkout(pd, tmp_path / "work")
    assert pull(pd, work, "dev").returncode == 0
    (work / "src/steps/helper.mts").write_text("export const helper = 1;\n")
    (work / "export/steps/README.md").write_text("steps\n")
    with pd.client() as c:
        assert c.delete("/api/v1/workspaces/dev/steps/b%2Fc").status_code == 204
    out = pull(pd, work, "dev")
    assert out.returncode == 0, out.stderr
    assert "removed export/steps/b__c.step.json" in out.stdout
    assert "removed src/steps/b/c.mts" in out.stdout
    assert not (work / "export/steps/b__c.step.json").exists()
    assert not (work / "src/steps/b").exists()
    assert (work / "src/steps/a.mts").is_file() and (work / "export/steps/a.step.json").is_file()
    assert (work / "src/steps/helper.mts").is_file()
    assert (work / "export/steps/README.md").is_file()


def test_names_never_write_outside_the_checkout(pd: Daemon, tmp_path: Path) -> None:
    seed(pd, NASTY)
    outer = tmp_path / "outer"
    outer.mkdir()
    work = checkout(pd, outer / "work")
    before_outer = sorted(p.name for p in outer.iterdir())
    before_git = {p: p.stat().st_mtime_ns for p in (work / ".git").rglob("*")}
    out = pull(pd, work, "dev")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in outer.iterdir()) == before_outer
    assert {p: p.stat().st_mtime_ns for p in (work / ".git").rglob("*")} == before_git
    written = files_of(work)
    assert all(p.startswith(("src/steps/", "export/steps/", "README")) for p in written)
    assert len([p for p in written if p.endswith(".step.json")]) == len(NASTY)

    # A folder of the layout that is a symlink out of the checkout is refused.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = checkout(pd, tmp_path / "other")
    (other / "export").mkdir()
    (other / "export/steps").symlink_to(elsewhere)
    out = pull(pd, other, "dev")
    assert out.returncode == 1 and "outside" in out.stderr
    assert list(elsewhere.iterdir()) == []


def test_pull_refuses_with_clear_messages(pd: Daemon, tmp_path: Path) -> None:
    work = checkout(pd, tmp_path / "work")
    plain = tmp_path / "plain"
    plain.mkdir()
    out = pull(pd, plain, "dev")
    assert out.returncode == 2 and "not inside a git checkout" in out.stderr
    out = pull(pd, work)
    assert out.returncode == 2 and "pull:\n  workspaces:\n    - a-workspace-id" in out.stderr
    (work / ".aloma.yaml").write_text("pull:\n  workspaces: []\n")
    out = pull(pd, work)
    assert out.returncode == 2 and "lists none" in out.stderr
    out = pull(pd, work, "dev", env={})
    assert out.returncode == 2
    assert "SYNCD_TOKEN" in out.stderr and "scopes: [read]" in out.stderr
    out = pull(pd, work, "nope")
    assert out.returncode == 2 and "no workspace 'nope'" in out.stderr
    out = pull(pd, work, "dev", "--token-file", str(tmp_path / "missing"), env={})
    assert out.returncode == 2 and "--token-file" in out.stderr and "cannot be read" in out.stderr
    out = pull(pd, work, "dev", env={"SYNCD_TOKEN": "wrong-token"})
    assert out.returncode == 1 and "401" in out.stderr and "wrong-token" not in out.stderr
    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "pull",
            "dev",
            "--server",
            f"http://127.0.0.1:{free_port()}",
        ],
        cwd=work,
        env=os.environ | {"SYNCD_TOKEN": READ_TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1 and "cannot reach syncd" in down.stderr
    # One name in two workspaces pulled together cannot be written twice.
    seed(pd, {"greet": ("true", "dev()")})
    seed(pd, {"greet": ("true", "ops()")}, ws="ops")
    out = pull(pd, work, "dev", "ops")
    assert out.returncode == 1 and "'greet' is in workspaces dev, ops" in out.stderr
    assert not (work / "src").exists() and not (work / "export").exists()


def test_export_through_the_daemon(pd: Daemon, git_server: GitServer, tmp_path: Path) -> None:
    seed(pd, {"greet": ("true", "hello()"), "and-done/greeting done": ("x", "{ `*/` }")})
    body = {"branch": "promote/dev", "message": "Promote dev"}
    url = "/api/v1/workspaces/dev/export"
    with pd.client(token=None) as c:
        assert c.post(url, json=body).status_code == 401
    with pd.client(token=READ_TOKEN) as c:
        r = c.post(url, json=body)
        assert r.status_code == 403 and "export" in r.json()["error"]
    with pd.client() as c:
        r = c.post(url, json=body)
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["branch"] == "promote/dev" and result["changed"] is True
        assert result["files"] == 4
        again = c.post(url, json=body).json()
        assert again == result | {"changed": False}
        assert c.post(url, json={"branch": "bad..name"}).status_code == 422
        assert c.post(url, content=b"{not json").status_code == 400
        assert c.post("/api/v1/workspaces/nope/export", json=body).status_code == 404
        # prod follows `prod`: pushing there deploys at once, so it needs saying.
        r = c.post("/api/v1/workspaces/dev/export", json={"branch": "prod"})
        assert r.status_code == 409 and "allow_tracked_branch" in r.json()["error"]
        metrics = c.get("/metrics").text
    assert 'syncd_git_operations_total{op="push",result="ok"} 1.0' in metrics

    clone = tmp_path / "clone"
    git_server.run_git("clone", "--quiet", "--branch", "promote/dev", pd.repo_url, str(clone))
    head = git_server.run_git("log", "-1", "--format=%H|%an <%ae>|%s", cwd=clone).stdout.strip()
    assert head == f"{result['commit']}|syncd <syncd@localhost>|Promote dev"
    for name, content in steps_of(pd, "dev").items():
        data = (clone / "export/steps" / step_file_name(name)).read_bytes()
        assert data == render_step_file(name, StepContent.from_dict(content))
    assert "{ `*/` }" in (clone / "src/steps/and-done/greeting done.mts").read_text()

    # Allowed explicitly, the export to prod's branch deploys: prod then equals dev.
    with pd.client() as c:
        r = c.post(url, json={"branch": "prod", "allow_tracked_branch": True})
        assert r.status_code == 200, r.text
    sync(pd, "prod")
    assert steps_of(pd, "prod") == steps_of(pd, "dev")


def test_pull_and_export_name_the_disabled_steps_they_leave_out_or_carry_them(
    pd: Daemon, tmp_path: Path
) -> None:
    seed(pd, {"on": ("true", "on()"), "off": ("true", "off()")}, disabled={"off"})
    # By default, as the SDK: the disabled step is left out, and the output says so and why.
    plain = checkout(pd, tmp_path / "plain")
    out = pull(pd, plain, "dev")
    assert out.returncode == 0, out.stderr
    assert "Pulling workspace ws-dev (id: dev): 1 steps" in out.stdout
    assert "  left out 1 step (disabled):\n    off: disabled\n" in out.stdout
    assert "a promotion that merges this checkout deletes them" in out.stdout
    assert not (plain / "export/steps/off.step.json").exists()
    # --include-disabled carries it as disabled: a step file, and no .mts for the SDK to enable.
    full = checkout(pd, tmp_path / "full")
    out = pull(pd, full, "dev", "--include-disabled")
    assert out.returncode == 0, out.stderr
    assert "(id: dev): 2 steps" in out.stdout and "left out" not in out.stdout
    data = (full / "export/steps/off.step.json").read_bytes()
    assert data == render_step_file("off", StepContent("true", "off()", enabled=False))
    assert not (full / "src/steps/off.mts").exists() and (full / "src/steps/on.mts").exists()

    url = "/api/v1/workspaces/dev/export"
    with pd.client() as c:
        r = c.post(url, json={"branch": "promote/plain"})
        assert r.status_code == 200, r.text
        [skipped] = r.json()["left_out"]
        assert (skipped["name"], skipped["reason"]) == ("off", "disabled") and skipped["id"]
        body = {"branch": "prod", "allow_tracked_branch": True, "include_disabled": True}
        r = c.post(url, json=body)
        assert r.status_code == 200 and r.json()["left_out"] == [], r.text
        r = c.post(url, json={"branch": "x", "include_disabled": "yes"})
        assert r.status_code == 422 and "include_disabled" in r.json()["error"]
    # The promotion carried the disabled step as disabled.
    sync(pd, "prod")
    assert steps_of(pd, "prod") == steps_of(pd, "dev")
    assert steps_of(pd, "prod")["off"]["enabled"] is False
