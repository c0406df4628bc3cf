"""The real CLI, in client mode, against a hostile server on 127.0.0.1 (tests.support.hostile),
and with tokens that cannot go into a header: each case is one clear line on stderr, an exit
code of docs/cli.md's list, no traceback, the token never printed, and an end within the
deadline however slowly the server sends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.hostile import MODES, hostile_server

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hostile-Q7zX9wK2vR5mH3pL"
LIMITS = ("--deadline", "2", "--max-answer", "1")

# mode -> (exit status, words on stderr)
EXPECTED = {
    "huge": (4, "the answer is larger than 1 MiB; refused"),
    "huge-declared": (4, "the answer is larger than 1 MiB; refused"),
    "drip-head": (5, "no whole answer within the deadline of 2 s (--deadline)"),
    "drip-body": (5, "no whole answer within the deadline of 2 s (--deadline)"),
    "deep": (4, "the server's answer is nested too deeply"),
    "deep-object": (4, "the server's answer is nested too deeply"),
    "html": (4, "the answer is not JSON"),
    "truncated": (5, "the answer broke off after 16 bytes"),
    "wrong-types": (4, "`workspaces` is not a list of objects"),
    "missing-keys": (4, "an answer syncd would not give (KeyError: 'last_run')"),
    "not-http": (4, "not an HTTP answer"),
    "echo": (1, "HTTP 500: refused: Authorization: Bearer [the token]"),
}


def _env(**more: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ROOT / "tests"),  # read by nothing here
        "PYTHONPATH": str(ROOT),
        "SYNCD_CONFIG": "/nonexistent/syncd.yaml",
        **more,
    }


def cli(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=str(cwd),
    )
    said = done.stdout + done.stderr
    assert "Traceback" not in said, done.stderr
    assert TOKEN not in said and TOKEN[-12:] not in said, "the token was printed"
    return done


def test_every_mode_is_covered() -> None:
    assert set(EXPECTED) == set(MODES)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_a_hostile_answer_ends_in_one_clear_line(mode: str) -> None:
    code, words = EXPECTED[mode]
    with hostile_server(mode) as server:
        started = time.monotonic()
        out = cli(_env(SYNCD_TOKEN=TOKEN), "--server", server.url, *LIMITS, "status")
        took = time.monotonic() - started
    assert out.returncode == code, (out.returncode, out.stderr)
    assert words in out.stderr and out.stderr.startswith("syncd: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stdout == "" or mode == "missing-keys"  # there, the table's head came first
    assert took < 60  # generous: the deadline is 2 s, the server would drip for 100 s
    assert server.seen == ["GET /openapi.json", "GET /api/v1/workspaces?limit=500"]


def test_the_default_answer_limit_holds_without_the_option() -> None:
    """10 GiB announced: refused by its Content-Length, at the default 64 MiB."""
    with hostile_server("huge-declared") as server:
        out = cli(_env(SYNCD_TOKEN=TOKEN), "--server", server.url, "status")
    assert out.returncode == 4 and "larger than 64 MiB" in out.stderr, out.stderr


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("drip-body", "no whole answer within the deadline of 2 s"),
        ("deep", "nested too deeply"),
        ("huge", "larger than 1 MiB"),
        ("echo", "[the token]"),
    ],
)
def test_pull_says_the_same_in_one_line(mode: str, words: str, tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # a checkout, as far as pull looks
    with hostile_server(mode) as server:
        out = cli(
            _env(SYNCD_TOKEN=TOKEN), "pull", "ws", "--server", server.url, *LIMITS, cwd=tmp_path
        )
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("syncd pull: ") and words in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "export").exists()  # nothing written


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (TOKEN.encode() + b"\r\n\r", "has more than one line and contains a carriage return"),
        (TOKEN.encode() + b"\r", "contains a carriage return"),
        (TOKEN.encode() + b"\nsecond-line\n", "has more than one line"),
        (TOKEN.encode() + b" \n", "contains a space or a tab"),
    ],
)
def test_a_token_file_that_cannot_be_sent_is_refused_by_name(
    content: bytes, words: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(content)
    with hostile_server("html") as server:
        for args in (
            ["--server", server.url, "--token-file", str(token_file), "status"],
            ["pull", "ws", "--server", server.url, "--token-file", str(token_file)],
        ):
            out = cli(_env(), *args, cwd=tmp_path)
            assert out.returncode == 2, out.stderr
            assert f"--token-file {token_file}: the token {words}" in out.stderr, out.stderr
            assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""
    assert server.seen == []  # refused before a byte went out


def test_a_token_variable_that_cannot_be_sent_is_refused_by_name() -> None:
    with hostile_server("html") as server:
        for name in ("SYNCD_TOKEN", "ALOMA_KEY"):
            out = cli(_env(**{name: TOKEN + "\r"}), "--server", server.url, "status")
            assert out.returncode == 2, out.stderr
            assert out.stderr.startswith(f"syncd: ${name}: the token contains a carriage return")
    assert server.seen == []


def test_a_good_token_file_with_windows_line_ends_still_works(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(TOKEN.encode() + b"\r\n")
    with hostile_server("echo") as server:
        out = cli(_env(), "--server", server.url, "--token-file", str(token_file), "status")
    assert out.returncode == 1 and "[the token]" in out.stderr, out.stderr
    assert server.authorizations == [f"Bearer {TOKEN}"]  # sent as is, line end dropped
