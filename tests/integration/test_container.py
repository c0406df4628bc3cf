"""The Dockerfile, built and run where a Docker engine exists: it starts with a config and
secrets, /healthz answers, a signed webhook is applied, and `docker stop` ends it cleanly.

Host networking lets the container reach the test's https git server on loopback (Linux only).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import API_TOKEN, GitServer, WorkTree, daemon_env, workspace, write_step
from tests.support.configs import write_config
from tests.support.daemon import free_port
from tests.support.payloads import build

ROOT = Path(__file__).resolve().parents[2]


def _engine() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    return done.returncode == 0


pytestmark = [
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not _engine(), reason="no Docker engine here (`docker info` failed)"),
]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    tag = f"syncd-test:{uuid.uuid4().hex[:12]}"
    done = docker("build", "-t", tag, str(ROOT), timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    yield tag
    docker("rmi", "-f", tag)


def test_the_container_serves_applies_a_webhook_and_stops_cleanly(
    image: str, git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    port = free_port()
    config = write_config(
        tmp_path,
        [workspace("auto", url, git_server, "automatic")],
        server={"listen": f"127.0.0.1:{port}"},
        state_dir="/var/lib/syncd",
    )
    config.chmod(0o644)
    env = daemon_env(git_server)
    secrets = [k for k in env if k.startswith("SYNCD_TEST_")]
    name = f"syncd-test-{uuid.uuid4().hex[:12]}"
    ca_dir = str(Path(git_server.ca_file).parent)
    run = docker(
        "run", "-d", "--name", name, "--network", "host",
        "-v", f"{config}:/etc/syncd/syncd.yaml:ro", "-v", f"{ca_dir}:{ca_dir}:ro",
        *[a for k in secrets for a in ("-e", f"{k}={env[k]}")],
        image, "serve", "--listen", f"127.0.0.1:{port}", "--log-format", "json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, docker("logs", name).stderr[-4000:]
            time.sleep(0.5)

        write_step(tree, "from-the-webhook")
        head = tree.commit("a step for the container")
        tree.push()
        headers, body = build("github", url, "main", [], head, uuid.uuid4().hex)
        r = httpx.post(f"{base}/hooks/github", content=body, headers=headers, timeout=10)
        assert r.status_code == 202, r.text
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        deadline = time.monotonic() + 60
        while True:
            steps = httpx.get(f"{base}/api/v1/workspaces/auto/steps", headers=auth, timeout=5)
            if "from-the-webhook" in {s["name"] for s in steps.json()["steps"]}:
                break
            assert time.monotonic() < deadline, docker("logs", name).stderr[-4000:]
            time.sleep(0.5)

        assert docker("stop", "-t", "15", name, timeout=60).returncode == 0
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        logs = docker("logs", name)
        assert code == "0", logs.stderr[-4000:]
        for k in secrets:
            assert env[k] not in logs.stdout + logs.stderr
    finally:
        docker("rm", "-f", name)
