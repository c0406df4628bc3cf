"""The CLI in client mode against the real daemon: a second user, with none of the daemon's
secrets and no access to its config or state, reads and steers workspaces with a token.

Also the client's bad inputs (each one clear line and an exit code of its own), and local mode
without secrets (`status` needs none; `check-config` still reports every missing one)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import API_TOKEN, READ_TOKEN, WEBHOOK_SECRET, GitServer, write_step
from tests.support.daemon import Daemon, free_port, view

pytestmark = pytest.mark.timeout(240)

SECRETS = (API_TOKEN, READ_TOKEN, WEBHOOK_SECRET)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stranger(tmp_path: Path) -> dict[str, str]:
    """A second user's environment: no secret, and a config path that cannot be read."""
    home = tmp_path / "stranger"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "SYNCD_CONFIG": str(tmp_path / "not-yours" / "syncd.yaml"),
    }


def cli(
    env: dict[str, str], *args: str, git_server: GitServer | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    for secret in SECRETS + ((git_server.password,) if git_server else ()):
        assert secret not in done.stdout and secret not in done.stderr, "a secret was printed"
    return done


def test_a_second_user_reads_and_steers_with_tokens(
    daemon: Daemon, stranger: dict[str, str], tmp_path: Path, git_server: GitServer
) -> None:
    reader = stranger | {"SYNCD_TOKEN": READ_TOKEN}
    server = ["--server", daemon.url]
    write_step(daemon.tree, "hello")
    daemon.tree.commit("a step")
    daemon.tree.push()

    # read: status (global options before the command), diff, runs, health
    out = cli(reader, *server, "status", git_server=git_server)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("ID") and "auto" in out.stdout
    out = cli(reader, "status", "manual", "--json", *server)
    assert out.returncode == 0 and json.loads(out.stdout)["id"] == "manual"
    assert json.loads(out.stdout)["mode"] == view(daemon, "manual")["mode"]
    out = cli(reader, *server, "diff", "ws-manual")  # by name, as local mode accepts
    assert out.returncode == 1, out.stderr  # a difference: `hello` to create
    assert "create hello" in out.stdout and "manual (ws-manual) at" in out.stdout
    out = cli(reader, *server, "runs", "auto")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("RUN") and "runs (" in out.stdout
    out = cli(reader, *server, "health", "auto", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["workspace"] == "auto"
    out = cli(reader, *server, "health", "auto")
    assert out.returncode == 0 and out.stdout.startswith("auto (ws-auto): ")
    # the replicas: one process (SQLite), the one that answered marked
    out = cli(reader, *server, "replicas")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("REPLICA") and "* " in lines[1] and " alive " in lines[1]
    assert lines[2].startswith("one process: the store is not shared")

    # a read token may not sync: 403, its own exit code, one line
    out = cli(reader, *server, "sync", "manual", "--wait")
    assert out.returncode == 7 and "403" in out.stderr and len(out.stderr.splitlines()) == 1

    # a sync token from a file: sync --wait, then wait
    token_file = tmp_path / "token"
    token_file.write_text(API_TOKEN + "\n")
    syncer = stranger | {"SYNCD_SERVER": daemon.url}
    out = cli(syncer, "sync", "manual", "--wait", "--token-file", str(token_file))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("manual (ws-manual): synced to ") and "1 created" in out.stdout
    out = cli(syncer, "--token-file", str(token_file), "wait", "manual", "--timeout", "30s")
    assert out.returncode == 0 and "Synced" in out.stdout, out.stderr
    out = cli(syncer, "--token-file", str(token_file), "runs", "manual", "--json")
    run_id = json.loads(out.stdout)[0]["id"]
    out = cli(syncer, "--token-file", str(token_file), "run", run_id)
    assert out.returncode == 0 and "result:      succeeded" in out.stdout

    # an edit outside git keeps a manual workspace OutOfSync: wait gives up with exit 3
    with daemon.client() as c:
        edit = {"content": {"if": "true", "do": "edited()"}}
        assert c.put("/api/v1/workspaces/manual/steps/hello", json=edit).status_code == 200
    out = cli(syncer, "--token-file", str(token_file), "wait", "manual", "--timeout", "1s")
    assert out.returncode == 3 and "not synced after 1s" in out.stderr

    # suspend and resume (resume waits for its sync to the head, as local mode does)
    out = cli(syncer, "--token-file", str(token_file), "suspend", "auto")
    assert out.returncode == 0 and "automation suspended" in out.stdout
    assert view(daemon, "auto")["suspended"] is True
    out = cli(syncer, "--token-file", str(token_file), "resume", "auto")
    assert out.returncode == 0, out.stderr
    assert "resumed; synced to the branch head" in out.stdout
    for secret in SECRETS:
        assert secret not in daemon.log()


def test_the_client_says_what_is_wrong_with_the_server(
    daemon: Daemon, stranger: dict[str, str]
) -> None:
    reader = stranger | {"SYNCD_TOKEN": READ_TOKEN}
    cases = [
        (["--server", "ftp://example"], 4, "is not an http(s) URL"),
        (["--server", f"{daemon.url}/not-here"], 4, "does not look like syncd"),
        (["--server", f"http://127.0.0.1:{free_port()}"], 5, "cannot reach syncd"),
    ]
    for args, code, words in cases:
        out = cli(reader, *args, "status")
        assert out.returncode == code and words in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1
    wrong = stranger | {"SYNCD_TOKEN": "not-a-token-0123456789"}
    out = cli(wrong, "--server", daemon.url, "status")
    assert out.returncode == 6 and "401" in out.stderr and "not-a-token" not in out.stderr
    out = cli(stranger, "--server", daemon.url, "status")
    assert out.returncode == 6 and "no token given" in out.stderr
    out = cli(reader, "--server", daemon.url, "status", "nope")
    assert out.returncode == 2 and "no workspace 'nope'" in out.stderr


@pytest.fixture
def other_version() -> Iterator[str]:
    """A server that answers /openapi.json as syncd 9.0.0 would."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"openapi": "3.1.0", "info": {"version": "9.0.0"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_server_of_another_version_is_refused(
    other_version: str, stranger: dict[str, str]
) -> None:
    out = cli(stranger | {"SYNCD_TOKEN": READ_TOKEN}, "--server", other_version, "status")
    assert out.returncode == 8 and "runs syncd 9.0.0" in out.stderr


def test_local_status_needs_no_secret_and_check_config_lists_them(
    daemon: Daemon, stranger: dict[str, str]
) -> None:
    local = stranger | {"SYNCD_CONFIG": str(daemon.config_path)}
    out = cli(local, "status")
    assert out.returncode == 0, out.stderr
    assert "auto" in out.stdout and "manual" in out.stdout
    out = cli(local, "check-config")
    assert out.returncode == 2
    assert "SYNCD_TEST_API_TOKEN is not set" in out.stderr
    assert "SYNCD_TEST_GIT_TOKEN is not set" in out.stderr
    out = cli(local, "diff", "manual")  # needs the git password: a config problem, exit 2
    assert out.returncode == 2 and "needs a secret it cannot read" in out.stderr


def test_tls_to_the_server_is_verified_against_the_system_or_ca_file(
    git_server: GitServer, stranger: dict[str, str]
) -> None:
    """An https server with a private CA (the test's git server, which is not syncd): refused
    as unverifiable without --ca-file; with it, the TLS holds and the answer is not syncd's."""
    reader = stranger | {"SYNCD_TOKEN": READ_TOKEN}
    out = cli(reader, "--server", git_server.base_url, "status")
    assert out.returncode == 5 and "--ca-file" in out.stderr, out.stderr  # names the way out
    ca = ["--ca-file", str(git_server.ca_file)]
    out = cli(reader, "--server", git_server.base_url, *ca, "status")
    assert out.returncode == 4 and "does not look like syncd" in out.stderr, out.stderr
