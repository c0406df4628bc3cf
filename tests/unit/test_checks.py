"""Checks after an apply (`syncd.sync.checks`), against a real HTTP server on 127.0.0.1 that
answers 200, 500 or not at all, and real commands; and the `checks` config with its errors
naming the key. Retries are slept by a fake `sleep` (they are counted, not waited)."""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from syncd.config import load_config
from syncd.config.types import CheckConfig, CommandCheck, HttpCheck
from syncd.core.errors import ConfigError
from syncd.core.model import Mode
from syncd.sync.checks import run_check, run_checks

HANG = threading.Event()  # set at teardown: the hanging handler lets go


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        Handler.hits[path] = Handler.hits.get(path, 0) + 1
        if path == "/hang":
            HANG.wait(5)
            return
        if path == "/flaky" and Handler.hits[path] < 3:
            self._answer(503, b"warming up")
            return
        code = 500 if path == "/500" else 200
        self._answer(code, b"ok: version 2" if code == 200 else b"broken")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    HANG.set()
    server.shutdown()
    server.server_close()


def http(name: str, url: str, retries: int = 0, **spec: Any) -> CheckConfig:
    return CheckConfig(name, http=HttpCheck(url, **spec), timeout=0.5, retries=retries)


def command(name: str, *argv: str, timeout: float = 2.0, retries: int = 0) -> CheckConfig:
    return CheckConfig(name, command=CommandCheck(argv), timeout=timeout, retries=retries)


def test_an_http_check_passes_on_the_status_and_body_expected(base: str) -> None:
    [ok, body_ok] = run_checks(
        (http("up", f"{base}/ok"), http("v2", f"{base}/ok", expect_body=r"version \d"))
    )
    assert (ok.result, ok.detail) == ("ok", "status 200")
    assert body_ok.result == "ok"


def test_an_http_check_fails_on_another_status_or_body_after_its_retries(base: str) -> None:
    slept: list[float] = []
    check = CheckConfig("api", http=HttpCheck(f"{base}/500?token=s3cret"), retries=2, interval=7)
    result = run_check(check, sleep=slept.append)
    assert result.result == "failed"
    assert result.detail == f"GET {base}/500: status 500, expected 200 (after 3 tries)"
    assert "s3cret" not in result.detail  # the query (where tokens hide) is never said
    assert slept == [7, 7]
    [body] = run_checks((http("v3", f"{base}/ok", expect_body="version 3"),))
    assert body.result == "failed" and "does not match 'version 3'" in body.detail


def test_a_check_that_passes_on_a_retry_passes(base: str) -> None:
    result = run_check(http("warm", f"{base}/flaky", retries=3), sleep=lambda _: None)
    assert result.result == "ok" and Handler.hits["/flaky"] == 3


def test_an_http_check_that_hangs_fails_at_its_timeout(base: str) -> None:
    [result] = run_checks((http("slow", f"{base}/hang"),))
    assert result.result == "failed"
    assert result.detail == f"GET {base}/hang: no answer within 0.5s"


def test_a_refused_connection_fails_the_check() -> None:
    [result] = run_checks((http("down", "http://127.0.0.1:9/"),))
    assert result.result == "failed" and result.detail.startswith("GET http://127.0.0.1:9/: ")


def test_a_command_check_passes_on_exit_0_and_fails_on_another_exit() -> None:
    py = sys.executable
    ok, bad = run_checks(
        (
            command("true", py, "-c", "pass"),
            command("false", py, "-c", "import sys; print('db down'); sys.exit(1)"),
        )
    )
    assert (ok.result, ok.detail) == ("ok", "exit status 0")
    assert (bad.result, bad.detail) == ("failed", f"{py}: exit status 1: db down")


def test_a_command_check_that_outlives_its_timeout_fails() -> None:
    [result] = run_checks((command("sleepy", "sleep", "5", timeout=0.2),))
    assert (result.result, result.detail) == ("failed", "sleep: did not exit within 0.2s")
    assert result.duration < 5  # killed at the timeout, not waited for


def test_a_command_that_does_not_exist_fails() -> None:
    [result] = run_checks((command("nope", "/nonexistent/check"),))
    assert result.result == "failed" and "No such file" in result.detail


# -- the config ------------------------------------------------------------------------------


def ws(ws_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": ws_id, "name": ws_id, "source": {"url": "https://h.invalid/x"}, **extra}


def load(tmp_path: Path, doc: dict[str, Any]) -> Any:
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), **doc}))
    return load_config(path, {})


def refused(tmp_path: Path, doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, doc)
    return str(e.value)


SMOKE = {"name": "smoke", "http": {"url": "https://app.example/healthz"}}


def test_checks_parse_with_their_defaults_and_on_check_failure_by_mode(tmp_path: Path) -> None:
    doc = {
        "defaults": {"checks": [SMOKE]},
        "workspaces": [
            ws("auto", mode="automatic"),
            ws("manual"),
            ws("own", checks=[{"name": "cli", "command": {"argv": ["true"]}, "retries": 0}]),
            ws("none", mode="automatic", checks=[], on_check_failure="keep"),
        ],
    }
    found = {w.id: w for w in load(tmp_path, doc).workspaces}
    smoke = CheckConfig("smoke", http=HttpCheck("https://app.example/healthz"))
    assert found["auto"].checks == (smoke,) and found["auto"].mode is Mode.AUTOMATIC
    assert found["auto"].on_check_failure == "rollback"
    assert (found["manual"].checks, found["manual"].on_check_failure) == ((smoke,), "keep")
    assert found["own"].checks == (CheckConfig("cli", command=CommandCheck(("true",)), retries=0),)
    assert (found["none"].checks, found["none"].on_check_failure) == ((), "keep")


@pytest.mark.parametrize(
    ("check", "said"),
    [
        (
            {"name": "a", "http": {"url": "ftp://h.example/"}},
            "checks[0].http.url: must be an http(s) URL with a host",
        ),
        (
            {"name": "a", "http": {"url": "https://h/"}, "command": {"argv": ["true"]}},
            "checks[0]: needs exactly one of http and command, got http and command",
        ),
        ({"name": "a"}, "checks[0]: needs exactly one of http and command, got none"),
        (
            {"name": "a", "command": {"argv": ["true"]}, "retries": -1},
            "checks[0].retries: must be 0 to 100, got -1",
        ),
        (
            {"name": "a", "http": {"url": "https://h/", "expect_body": "(unclosed"}},
            "checks[0].http.expect_body: is not a regular expression",
        ),
        (
            {"name": "a", "http": {"url": "https://u:pw@h/"}},
            "checks[0].http.url: must not hold credentials",
        ),
        ({"name": "a", "command": {"argv": []}}, "checks[0].command.argv: expected a list"),
    ],
)
def test_a_bad_check_is_refused_naming_the_key(
    tmp_path: Path, check: dict[str, Any], said: str
) -> None:
    message = refused(tmp_path, {"workspaces": [ws("a", checks=[check])]})
    assert said in message
    assert "pw@" not in message


def test_check_names_are_unique_and_on_check_failure_is_a_choice(tmp_path: Path) -> None:
    twice = [SMOKE, {**SMOKE, "http": {"url": "https://other.example/"}}]
    assert 'checks[1].name: duplicate check name "smoke"' in refused(
        tmp_path, {"workspaces": [ws("a", checks=twice)]}
    )
    said = refused(tmp_path, {"workspaces": [ws("a", on_check_failure="rollbak")]})
    assert "on_check_failure: expected one of rollback, keep" in said


def test_a_command_gets_its_env_and_never_the_daemons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env`: a value as written, and one from the daemon's environment (`NAME_env`); the
    daemon's own variables (its secrets) are not passed on."""
    monkeypatch.setenv("SMOKE_TOKEN_SOURCE", "t0ken-from-the-daemon")
    monkeypatch.setenv("SYNCD_TEST_GIT_TOKEN", "the-daemons-secret")
    probe = (
        "import os, sys; ok = os.environ.get('TARGET') == 'staging' and "
        "os.environ.get('SMOKE_TOKEN') == 't0ken-from-the-daemon' and "
        "'SYNCD_TEST_GIT_TOKEN' not in os.environ; sys.exit(0 if ok else 3)"
    )
    env = {"TARGET": "staging", "SMOKE_TOKEN_env": "SMOKE_TOKEN_SOURCE"}
    check = {"name": "env", "command": {"argv": [sys.executable, "-c", probe], "env": env}}
    path = tmp_path / "syncd.yaml"
    doc = {"state_dir": str(tmp_path / "state"), "workspaces": [ws("a", checks=[check])]}
    path.write_text(yaml.safe_dump(doc))
    config = load_config(path, {"SMOKE_TOKEN_SOURCE": "t0ken-from-the-daemon"})
    (result,) = run_checks(config.workspaces[0].checks, sleep=lambda _s: None)
    assert result.result == "ok", result.detail
    assert "t0ken-from-the-daemon" in config.secret_values()  # scrubbed from logs


def test_an_https_check_trusts_its_ca_file(tmp_path: Path) -> None:
    """A check of a service behind a private CA: refused without `ca_file`, passes with it."""
    ca = trustme.CA()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/ok"
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        (untrusted,) = run_checks((http("tls", url),), sleep=lambda _s: None)
        assert untrusted.result == "failed" and "ConnectError" in untrusted.detail
        (trusted,) = run_checks((http("tls", url, ca_file=ca_file),), sleep=lambda _s: None)
        assert trusted.result == "ok", trusted.detail
    finally:
        server.shutdown()
        server.server_close()
