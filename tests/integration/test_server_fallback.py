"""syncd serves without uvicorn's optional C parts: httptools and uvloop are dependencies where
they install, and uvicorn falls back to h11 and asyncio where they do not. This runs the real
server on a loopback socket with the fallback pair and checks webhook intake end to end,
every refusal included; a second case hides httptools and uvloop from the import system, as
on a machine without them, and lets uvicorn choose.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol

from syncd.config import load_config
from syncd.daemon import Daemon, Server, make_server
from syncd.ops.sdnotify import Notifier
from tests.support import API_TOKEN, READ_TOKEN, WEBHOOK_SECRET, payloads, write_config
from tests.support.daemon import free_port

ENV = {
    "SYNCD_TEST_API_TOKEN": API_TOKEN,
    "SYNCD_TEST_READ_TOKEN": READ_TOKEN,
    "SYNCD_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
}
WATCHED = "https://127.0.0.1:9/watched.git"  # nothing listens on the discard port
OTHER = "https://127.0.0.1:9/other.git"


def _workspace() -> dict[str, object]:
    source = {"url": WATCHED, "branch": "main", "path": "export/steps"}
    return {"id": "w", "name": "w", "mode": "automatic", "source": source, "poll_interval": "0s"}


@pytest.fixture
def fallback_server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    config = load_config(
        write_config(tmp_path, [_workspace()], server={"max_body_bytes": 4096}), environ=ENV
    )
    port = free_port()
    server = make_server(
        Daemon(config, notifier=Notifier(environ={})), "127.0.0.1", port, http="h11", loop="asyncio"
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive()


def test_webhook_intake_with_h11_and_asyncio(fallback_server: tuple[Server, str]) -> None:
    server, url = fallback_server
    assert issubclass(server.config.http_protocol_class, H11Protocol)
    assert type(server.servers[0].get_loop()).__module__.startswith("asyncio")
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        headers, body = payloads.build("github", OTHER, "main", ["README.md"], "a" * 40, "d-1")
        answer = client.post("/hooks/github", content=body, headers=headers)
        assert (answer.status_code, answer.json()) == (202, {"matched": [], "queued": []})
        # a redelivery of a push no workspace follows: nothing started, nothing remembered
        again = client.post("/hooks/github", content=body, headers=headers)
        assert (again.status_code, again.json()) == (202, {"matched": [], "queued": []})
        # unsigned: 401 before the body is parsed
        forged = headers | {"X-Hub-Signature-256": "sha256=" + "0" * 64}
        assert client.post("/hooks/github", content=b"{", headers=forged).status_code == 401
        # signed, but not JSON: 400
        broken = b"{not json"
        signed = headers | payloads.signature_headers("github", broken)
        assert client.post("/hooks/github", content=broken, headers=signed).status_code == 400
        # over server.max_body_bytes: 413
        big = b"{" + b" " * 8192 + b"}"
        too_big = headers | payloads.signature_headers("github", big)
        assert client.post("/hooks/github", content=big, headers=too_big).status_code == 413
        assert client.post("/hooks/nowhere", content=body, headers=headers).status_code == 404
        # the watched repository: matched and queued
        headers, body = payloads.build(
            "github", WATCHED, "main", ["export/steps/a"], "b" * 40, "d-2"
        )
        answer = client.post("/hooks/github", content=body, headers=headers)
        assert (answer.status_code, answer.json()) == (202, {"matched": ["w"], "queued": ["w"]})


def test_serves_when_httptools_and_uvloop_cannot_be_imported(tmp_path: Path) -> None:
    """uvicorn's "auto" on a machine without the C parts: h11 and asyncio, and syncd serves."""
    config = write_config(tmp_path, [_workspace()])
    port = free_port()
    script = textwrap.dedent(
        f"""
        import sys, threading, time, httpx
        sys.modules["httptools"] = None  # as if not installed: importing raises ImportError
        sys.modules["uvloop"] = None
        from syncd.config import load_config
        from syncd.daemon import Daemon, make_server
        from syncd.ops.sdnotify import Notifier
        config = load_config({str(config)!r}, environ={ENV!r})
        server = make_server(Daemon(config, notifier=Notifier(environ={{}})), "127.0.0.1", {port})
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.02)
        loop = server.servers[0].get_loop()
        from uvicorn.protocols.http.h11_impl import H11Protocol
        h11 = issubclass(server.config.http_protocol_class, H11Protocol)
        print("H11Protocol" if h11 else server.config.http_protocol_class.__name__,
              type(loop).__module__)
        print(httpx.get("http://127.0.0.1:{port}/healthz", timeout=10).status_code)
        server.should_exit = True
        thread.join(30)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    assert done.returncode == 0, done.stderr
    chosen, status = done.stdout.splitlines()[:2]
    assert chosen.split() == ["H11Protocol", "asyncio.unix_events"]
    assert status == "200"
