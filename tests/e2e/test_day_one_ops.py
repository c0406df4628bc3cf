"""Day-one operations against one real daemon (kept to one start: CI time is tight).

The daemon serves TLS itself (`server.tls`, a test CA from trustme): the CLI in client mode
reaches it with `--ca-file`, and without it is told to give `--ca-file`; a new certificate
is served to new connections after SIGHUP. Its git token comes from a file that starts out
wrong: writing the right one into the file is picked up without SIGHUP (the daemon watches
credential files), and a token file that disappears degrades only the workspace that needs
it, whose health names the file. A state directory that cannot be written makes /readyz 503.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.support import API_TOKEN, GitServer, WorkTree, workspace, write_config, write_step
from tests.support.configs import daemon_env
from tests.support.daemon import free_port

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


def _wait(check: Any, what: str, log: Path, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text(errors='replace')}")


def _served_cert(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def tls_daemon(
    tmp_path: Path, git_server: GitServer, repo: tuple[str, WorkTree]
) -> Iterator[dict[str, Any]]:
    url, tree = repo
    write_step(tree, "one")
    tree.commit("one step")
    tree.push()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    token = tmp_path / "secrets" / "git-token"
    token.parent.mkdir()
    token.write_text("not-the-token\n")
    port = free_port()
    ws = workspace("auto", url, git_server, "automatic")
    ws["source"].pop("password_env")
    ws["source"]["password_file"] = str(token)
    other = workspace("other", url, git_server, "manual")
    config = write_config(
        tmp_path,
        [ws, other],
        server={
            "listen": f"127.0.0.1:{port}",
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "trusted_proxies": ["127.0.0.1/32"],
            "public_url": f"https://127.0.0.1:{port}",
        },
    )
    log = tmp_path / "daemon.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "serve", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=daemon_env(git_server),
    )
    base = f"https://127.0.0.1:{port}"
    trusting = ssl.create_default_context(cafile=str(ca_file))

    def ready() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            return httpx.get(f"{base}/readyz", verify=trusting, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(ready, "the TLS daemon to be ready", log)
    try:
        yield {
            "base": base,
            "port": port,
            "ca": ca,
            "ca_file": ca_file,
            "cert": cert,
            "key": key,
            "token": token,
            "git": git_server,
            "tree": tree,
            "log": log,
            "process": process,
            "state": tmp_path / "state",
        }
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_tls_listener_token_rotation_and_local_failures(tls_daemon: dict[str, Any]) -> None:
    d = tls_daemon
    base, ca_file, log = d["base"], d["ca_file"], d["log"]
    api = httpx.Client(
        base_url=base,
        verify=ssl.create_default_context(cafile=str(ca_file)),
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )

    # The CLI in client mode: with --ca-file it reads; without, it is told to give one.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ca_file.parent),
        "PYTHONPATH": str(ROOT),
        "SYNCD_TOKEN": API_TOKEN,
    }
    ok = _cli("--server", base, "--ca-file", str(ca_file), "status", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "auto" in ok.stdout
    refused = _cli("--server", base, "status", env=env)
    assert refused.returncode != 0
    assert "--ca-file" in refused.stderr and "not trusted" in refused.stderr, refused.stderr

    # The token file held the wrong token: auto is Degraded by the remote's refusal.
    def health(ws: str) -> dict[str, Any]:
        answer: dict[str, Any] = api.get(f"/api/v1/workspaces/{ws}/health").json()
        return answer

    _wait(lambda: health("auto")["health"]["status"] == "Degraded", "auth failure", log)
    # Rotation: the right token written into the file, no SIGHUP: picked up and synced.
    tmp = d["token"].with_name(".git-token.new")
    tmp.write_text(d["git"].password + "\n")
    os.replace(tmp, d["token"])

    def synced() -> bool:
        view = api.get("/api/v1/workspaces/auto").json()
        return bool(view.get("last_applied_revision") == d["tree"].head())

    _wait(synced, "the rotated token to be used", log)
    assert health("auto")["health"]["status"] == "Healthy"
    assert d["git"].password not in log.read_text(errors="replace")

    # SIGHUP serves a new certificate to new connections.
    before = _served_cert(d["port"], ca_file)
    leaf = d["ca"].issue_cert("127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(d["cert"]))
    leaf.private_key_pem.write_to_path(str(d["key"]))
    d["process"].send_signal(signal.SIGHUP)
    _wait(lambda: _served_cert(d["port"], ca_file) != before, "the new certificate", log)

    # The token file disappears: auto's next sync fails naming it; nothing else stops.
    d["token"].unlink()
    _wait(lambda: "secret cannot be read" in log.read_text(errors="replace"), "reload", log)
    answer = api.post("/api/v1/workspaces/auto/sync", json={"wait": True}, timeout=60).json()
    runs = api.get("/api/v1/workspaces/auto/runs").json()["runs"]
    assert runs[0]["result"] == "failed", (answer, runs[0])
    assert str(d["token"]) in runs[0]["error"]
    assert str(d["token"]) in (health("auto")["health"]["error"] or "")
    assert api.get("/readyz").status_code == 200
    assert health("other")["health"]["status"] != "Degraded"

    # The state directory turns unusable (a file where it was): /readyz says so.
    state: Path = d["state"]
    aside = state.with_name("state.aside")
    os.rename(state, aside)
    state.write_text("not a directory")
    try:
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert "state directory" in ready.text
    finally:
        state.unlink()
        os.rename(aside, state)
    assert api.get("/readyz").status_code == 200
