"""The test git server itself: real git clients can clone and push, auth is enforced, faults
behave as documented."""

from __future__ import annotations

import base64
import http.client
import os
import ssl
import time
from pathlib import Path

import pytest

from tests.support import GitServer, WorkTree

pytestmark = pytest.mark.timeout(60)


def _get(server: GitServer, path: str, auth: tuple[str, str] | None) -> http.client.HTTPResponse:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


def test_clone_and_push_round_trip(
    git_server: GitServer, repo: tuple[str, WorkTree], tmp_path: Path
) -> None:
    url, tree = repo
    tree.write("export/steps/a.step.json", '{"name": "a"}')
    # Larger than git's 1 MiB post buffer: the push goes out with chunked transfer encoding.
    tree.write("big.bin", os.urandom(3 * 1024 * 1024))
    sha = tree.commit("add a step")
    before = git_server.snapshot()
    tree.push()
    assert git_server.snapshot()["receive_pack"] > before["receive_pack"]

    heads = git_server.run_git("ls-remote", url).stdout
    assert f"{sha}\trefs/heads/main" in heads

    other = WorkTree(git_server, tree.repo_name, tmp_path / "other")
    assert other.head() == sha
    assert (other.path / "big.bin").stat().st_size == 3 * 1024 * 1024


def test_push_to_a_new_branch(git_server: GitServer, repo: tuple[str, WorkTree]) -> None:
    url, tree = repo
    tree.write("x.txt", "x")
    sha = tree.commit()
    tree.push("feature")
    assert f"{sha}\trefs/heads/feature" in git_server.run_git("ls-remote", url).stdout


def test_auth_is_required(git_server: GitServer, repo: tuple[str, WorkTree]) -> None:
    url, _ = repo
    path = f"/{url.rsplit('/', 1)[1]}/info/refs?service=git-upload-pack"

    anonymous = _get(git_server, path, None)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")

    assert _get(git_server, path, ("bot", "wrong")).status == 401
    assert _get(git_server, path, (git_server.username, git_server.password)).status == 200

    failed = git_server.run_git("ls-remote", url, password="wrong", check=False)
    assert failed.returncode != 0
    assert "Authentication failed" in failed.stderr


def test_faults(git_server: GitServer, repo: tuple[str, WorkTree]) -> None:
    url, _ = repo
    path = f"/{url.rsplit('/', 1)[1]}/info/refs?service=git-upload-pack"
    creds = (git_server.username, git_server.password)

    git_server.set_fault("500")
    assert _get(git_server, path, creds).status == 500

    git_server.set_fault("401")
    assert _get(git_server, path, creds).status == 401

    git_server.set_fault("refuse")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _get(git_server, path, creds)

    git_server.set_fault("slow", delay=0.5)
    started = time.monotonic()
    assert _get(git_server, path, creds).status == 200
    assert time.monotonic() - started >= 0.5

    git_server.set_fault(None)
    assert _get(git_server, path, creds).status == 200


def test_counts_requests_by_kind(git_server: GitServer, repo: tuple[str, WorkTree]) -> None:
    url, _ = repo
    before = git_server.snapshot()
    git_server.run_git("ls-remote", url)
    after = git_server.snapshot()
    assert after["info_refs"] > before["info_refs"]
    # git's protocol v2 lists refs with a POST to git-upload-pack after info/refs.
    assert after["upload_pack"] - before["upload_pack"] <= 1
    assert after["total"] > before["total"]


def test_certificate_names(git_server: GitServer) -> None:
    ctx = ssl.create_default_context(cafile=str(git_server.ca_file))
    for host in ("127.0.0.1", "localhost"):
        conn = http.client.HTTPSConnection(host, git_server.port, context=ctx, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 401
