"""The real daemon under test: `python -m syncd serve` on loopback against the https git server,
started, read from outside (API, metrics, /proc) and stopped; remotes of its own; figures.

Shared by the end-to-end and the reliability tests. The reliability tests are bounded by
default, so that CI runs every case; `SYNCD_RELIABILITY=full` raises trial counts and durations
(see `scaled`). Every such test prints its figures, and appends them as JSON lines to the file
named by `SYNCD_RELIABILITY_REPORT` when that is set (the README's table is built from it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped,unused-ignore]
from prometheus_client.parser import text_string_to_metric_families

from syncd.core.steps import SUFFIX, parse_step_file
from tests.support.configs import API_TOKEN, daemon_env, workspace, write_config, write_step
from tests.support.gitserver import GitServer, WorkTree

FULL = os.environ.get("SYNCD_RELIABILITY", "").lower() == "full"
STEPS_DIR = "export/steps"

Content = dict[str, Any]  # a step's content as the API shows it: if, do, enabled, valid


# -- starting and stopping ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    url: str
    config_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    tree: WorkTree
    repo_url: str

    def client(self, token: str | None = API_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n--- daemon log ---\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_daemon(
    tmp_path: Path,
    server: GitServer,
    tree: WorkTree,
    repo_url: str,
    workspaces: list[dict[str, Any]] | None = None,
    env_extra: dict[str, str] | None = None,
    serve_args: Sequence[str] = (),
    server_options: dict[str, Any] | None = None,
    **top: Any,
) -> Daemon:
    port = free_port()
    if workspaces is None:
        workspaces = [
            workspace("auto", repo_url, server, "automatic"),
            workspace("manual", repo_url, server, "manual"),
        ]
    config = write_config(
        tmp_path,
        workspaces,
        server={"listen": f"127.0.0.1:{port}", "self_heal_delay": "1s", **(server_options or {})},
        **top,
    )
    log_path = tmp_path / "daemon.log"
    env = daemon_env(server) | (env_extra or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "serve", "--config", str(config), *serve_args],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=os.getcwd(),
    )
    daemon = Daemon(f"http://127.0.0.1:{port}", config, process, log_path, tree, repo_url)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited {process.returncode}:\n{daemon.log()}")
        try:
            return httpx.get(f"{daemon.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    daemon.wait_until(ready, 30, "the daemon to be ready")
    return daemon


def kill_daemon(d: Daemon) -> None:
    """SIGKILL if still running: the `daemon` fixture's teardown."""
    if d.process.poll() is None:
        d.process.kill()
        d.process.wait(10)


# -- figures ---------------------------------------------------------------------------------


def scaled(ci: float, full: float, env: str | None = None) -> float:
    """A trial count or duration: `env` when set, else the full figure or the CI one."""
    if env and os.environ.get(env):
        return float(os.environ[env])
    return full if FULL else ci


def report(case: str, **figures: Any) -> None:
    """Print the figures of one case; append them to $SYNCD_RELIABILITY_REPORT as a JSON line."""
    line = {"case": case, "mode": "full" if FULL else "ci", **figures}
    print(f"\nreliability {case}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    path = os.environ.get("SYNCD_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=False) + "\n")


# -- a remote of its own, so that its request counters see one daemon alone --------------------


@dataclass
class Remote:
    server: GitServer
    name: str
    url: str
    tree: WorkTree

    def commit_and_push(self, message: str) -> str:
        """Commit the work tree and push it over https."""
        sha = self.tree.commit(message)
        self.tree.push()
        return sha

    def push_behind_the_server(self, message: str) -> str:
        """Commit, and push past the https server and whatever fault it is injecting."""
        sha = self.tree.commit(message)
        self.push_into(self.server)
        return sha

    def push_into(self, server: GitServer) -> None:
        """Push HEAD straight into `server`'s bare copy of the repository, on disk."""
        target = server.root / f"{self.name}.git"
        self.tree.git("push", "--quiet", str(target), "HEAD:refs/heads/main")


@contextlib.contextmanager
def remote(root: Path, steps: int = 3, password: str = "s3cret-token") -> Iterator[Remote]:
    """A started GitServer with one repository whose first commit holds `steps` steps."""
    with GitServer(root / "git", password=password) as server:
        url = server.create_repo("steps")
        tree = WorkTree(server, "steps", root / "work")
        for i in range(steps):
            write_step(tree, f"step {i}", f"first({i})")
        tree.commit("first")
        tree.push()
        yield Remote(server, "steps", url, tree)


def tree_steps(tree: WorkTree) -> dict[str, Content]:
    """The steps the work tree's checked-out commit holds, as the API would show them."""
    found: dict[str, Content] = {}
    for path in sorted((tree.path / STEPS_DIR).rglob(f"*{SUFFIX}")):
        name, content = parse_step_file(str(path), path.read_bytes())
        found[name] = content.to_dict()
    return found


# -- the daemon, from outside ---------------------------------------------------------------


def get(d: Daemon, path: str, **kwargs: Any) -> Any:
    with d.client() as c:
        r = c.get(path, **kwargs)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
    return r.json()


def view(d: Daemon, ws: str) -> dict[str, Any]:
    result: dict[str, Any] = get(d, f"/api/v1/workspaces/{ws}")
    return result


def live_steps(d: Daemon, ws: str) -> dict[str, Content]:
    return {s["name"]: s["content"] for s in get(d, f"/api/v1/workspaces/{ws}/steps")["steps"]}


def runs(d: Daemon, ws: str, limit: int = 1000) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get(d, f"/api/v1/workspaces/{ws}/runs?limit={limit}")["runs"]
    return found


def applied(d: Daemon, ws: str) -> str | None:
    revision: str | None = view(d, ws)["last_applied_revision"]
    return revision


def network_hiccup(run: dict[str, Any]) -> bool:
    """A run that failed talking to the remote: its loop retries it, a later run recovers."""
    error = run.get("error") or ""
    return run["result"] == "failed" and error.startswith(("fetch ", "ls_remote "))


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def metrics_text(d: Daemon) -> str:
    r = httpx.get(f"{d.url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def converged(d: Daemon, ws: str, tree: WorkTree) -> bool:
    """The workspace holds exactly the steps of the work tree's commit, applied and Synced."""
    v = view(d, ws)
    return (
        v["status"] == "Synced"
        and v["last_applied_revision"] == tree.head()
        and live_steps(d, ws) == tree_steps(tree)
    )


def rewrite_config(d: Daemon, doc: dict[str, Any]) -> None:
    """Replace the daemon's config file in one step, so a reload never reads half a file."""
    tmp = d.config_path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, d.config_path)


def stop_daemon(d: Daemon) -> None:
    """SIGTERM, then SIGKILL if it will not go: a test's teardown."""
    if d.process.poll() is None:
        d.process.terminate()
        try:
            d.process.wait(15)
        except Exception:
            d.process.kill()
            d.process.wait(10)


@dataclass(frozen=True)
class Usage:
    rss_kib: int  # resident set size
    fds: int  # open file descriptors
    pack_fds: int  # of which on git pack files (the mirrors')


def proc_usage(pid: int) -> Usage:
    """Memory and descriptors of a live process, from /proc."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    packs = sum("/objects/pack/" in t for t in targets)
    return Usage(rss, len(targets), packs)


def wait_for(check: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
