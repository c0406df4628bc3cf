"""`syncd demo` as a new user runs it: git remote, daemon, push, webhook, all on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

TIMEOUT = 120


def syncd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_demo_pushes_a_change_and_shows_it_arrive() -> None:
    proc = syncd("demo")
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr}"
    for phase in range(1, 7):
        assert f"[{phase}/6]" in out
    # The startup sync: prod applies the 3 example steps, dev (manual) only plans them.
    assert re.search(r"prod\s+automatic\s+Synced\s+3\s", out), out
    assert re.search(r"dev\s+manual\s+OutOfSync\s+0\s", out), out
    assert "3 to create, 0 to update, 0 to delete" in out
    # The push arrives by webhook: prod applies it, dev shows the diff.
    pushed = re.search(r"pushed ([0-9a-f]{12}); POST /hooks/github -> 202", out)
    assert pushed, out
    head = pushed.group(1)
    assert f"prod applied {head}" in out
    assert "(trigger webhook): 1 created, 1 updated, 0 deleted" in out
    assert "dev stays OutOfSync" in out and "4 to create" in out
    assert "+++ b/orders/new order" in out and "+  const queue" in out
    # The manual sync of dev.
    assert f"dev synced manually: dev and prod both hold {head}" in out
    assert re.search(rf"dev\s+manual\s+Synced\s+4\s+{head}\s+succeeded \(manual\)", out), out
    assert out.rstrip().endswith("syncd demo: all steps passed")
    # The temporary dir is gone.
    work = re.search(r"files in (\S+)", out)
    assert work and not Path(work.group(1)).exists()


def test_demo_dir_is_kept_and_its_config_works_afterwards(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = syncd("demo", "--dir", str(work))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    config = work / "syncd.yaml"
    assert f"status:  . {work / 'demo.env'} && syncd status --config {config}" in proc.stdout
    env = dict(os.environ)
    for line in (work / "demo.env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    assert syncd("check-config", "--config", str(config), env=env).returncode == 0
    status = syncd("status", "--json", "--config", str(config), env=env)
    assert status.returncode == 0, status.stderr
    views = {v["id"]: v for v in json.loads(status.stdout)}
    assert {v["status"] for v in views.values()} == {"Synced"}
    assert views["dev"]["last_applied_revision"] == views["prod"]["last_applied_revision"]
    # A second run refuses to reuse the dir rather than mix two demos.
    again = syncd("demo", "--dir", str(work))
    assert again.returncode == 2 and "not empty" in again.stderr


def test_demo_names_the_phase_that_failed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = syncd("demo", "--port", str(port))
    assert proc.returncode == 1, proc.stdout
    assert f"FAILED at [2/6] config: cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_demo_serve_keeps_the_remote_until_interrupted(tmp_path: Path) -> None:
    """`--serve`: the remote stays up; the printed clone command works; Ctrl-C exits 0."""
    import queue
    import shlex
    import signal
    import threading

    work = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "demo", "--serve", "--dir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines: queue.Queue[str] = queue.Queue()
    out = proc.stdout
    assert out is not None

    def read() -> None:
        for line in out:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        seen: dict[str, str] = {}
        while "serve" not in seen:
            line = lines.get(timeout=TIMEOUT)  # Empty: the demo never got there
            key, _, value = line.strip().partition(":")
            if key in ("remote", "CA file", "config", "clone", "serve"):
                seen[key] = value.strip()
        assert seen["config"].startswith(str(work / "syncd.yaml"))
        assert seen["CA file"].startswith(str(work / "git/ca.pem"))
        clone = shlex.split(seen["clone"])
        assert clone[0].startswith("GIT_SSL_CAINFO=") and clone[1:3] == ["git", "clone"]
        done = subprocess.run(
            ["env", *clone], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert len(list((tmp_path / "steps/export/steps").rglob("*"))) >= 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr, stderr
