"""Log lines: logfmt text or JSON lines, one key per field, with registered secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.core.model import Run, RunResult, Trigger
from syncd.core.times import parse_time, rfc3339
from syncd.ops import logs
from syncd.ops.logs import fields

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict reading of logfmt: key=value, a value with spaces or quotes in double quotes
    with backslash escapes. JSON-quoted strings are what logfmt parsers unescape."""
    out: dict[str, str] = {}
    pattern = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|[^\s"=]+)(?:\s|$)')
    pos = 0
    while pos < len(line):
        m = pattern.match(line, pos)
        assert m, f"not logfmt at {line[pos:]!r}"
        key, raw = m.group(1), m.group(2)
        out[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = m.end()
    return out


def test_text_lines_are_logfmt_and_scrubbed(capture: io.StringIO) -> None:
    logs.register_secrets(["hunter2-secret"])
    logs.setup_logging("text", stream=capture)
    logging.getLogger("syncd.test").warning(
        "sync failed",
        extra=fields(workspace="prod", token="hunter2-secret", error='it\'s "bad"\nreally', n=3),
    )
    line = capture.getvalue().rstrip("\n")
    assert "\n" not in line and "hunter2-secret" not in line
    doc = parse_logfmt(line)
    assert RFC3339_UTC.match(doc["ts"])
    assert doc["level"] == "warning" and doc["logger"] == "syncd.test"
    assert doc["event"] == "sync failed" and doc["workspace"] == "prod"
    assert doc["token"] == "***" and doc["error"] == 'it\'s "bad"\nreally' and doc["n"] == "3"
    # what shlex (a POSIX reading of quotes) makes of it agrees on plain values
    assert "workspace=prod" in shlex.split(line)


def test_json_lines_carry_fields_as_keys_and_are_scrubbed(capture: io.StringIO) -> None:
    logs.register_secrets(["hunter3-secret"])
    logs.setup_logging("json", stream=capture)
    try:
        raise ValueError("boom hunter3-secret")
    except ValueError:
        logging.getLogger("syncd.test").exception(
            "sync crashed", extra=fields(workspace="prod", run="r1", error=None, created=2)
        )
    doc = json.loads(capture.getvalue().strip().splitlines()[0])
    assert list(doc)[:4] == ["ts", "level", "logger", "event"]
    assert RFC3339_UTC.match(doc["ts"])
    assert doc["level"] == "error" and doc["event"] == "sync crashed"
    assert doc["workspace"] == "prod" and doc["run"] == "r1" and doc["created"] == 2
    assert "error" not in doc  # None is left out
    assert "ValueError" in doc["exc"]
    assert "hunter3-secret" not in capture.getvalue()


def test_fields_never_overwrite_the_base_keys(capture: io.StringIO) -> None:
    logs.setup_logging("json", stream=capture)
    logging.getLogger("syncd.test").info("x", extra=fields(level="nope", event="e"))
    doc = json.loads(capture.getvalue())
    assert doc["level"] == "info" and doc["event"] == "x"
    assert doc["field_level"] == "nope" and doc["field_event"] == "e"


def test_foreign_loggers_format_too(capture: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the daemon runs uvicorn (log_config=None): its loggers hand their lines to the root.
    # A test that ran uvicorn with its own logging config may have left them otherwise.
    for name in ("uvicorn", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    logs.setup_logging("text", stream=capture)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    # Its own line: a thread an earlier test left (a store call finishing) may log too.
    (line,) = [x for x in capture.getvalue().splitlines() if "logger=uvicorn.error" in x]
    doc = parse_logfmt(line)
    assert doc["event"] == "Invalid HTTP request received." and doc["logger"] == "uvicorn.error"


def test_times_are_rfc3339_utc_and_read_back() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1.2345) == "1970-01-01T00:00:01.234Z"
    assert parse_time("1970-01-01T00:00:01.234Z") == pytest.approx(1.234)
    assert parse_time("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_time(12.5) == 12.5  # what servers before RFC 3339 times sent
    for bad in ("yesterday", "1970-01-01T00:00:00", True, None):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_api_objects_carry_rfc3339_times() -> None:
    run = Run("r1", "ws", Trigger.MANUAL, None, RunResult.FAILED, 1.0, finished_at=2.5)
    doc = run.to_dict()
    assert doc["started_at"] == "1970-01-01T00:00:01.000Z"
    assert doc["finished_at"] == "1970-01-01T00:00:02.500Z"
    assert (
        Run("r2", "ws", Trigger.POLL, None, RunResult.PLANNED, 1.0).to_dict()["finished_at"] is None
    )


def test_short_values_are_not_registered() -> None:
    logs.register_secrets(["ab", ""])
    assert logs.scrub("a b ab") == "a b ab"


def test_the_cli_registers_the_secrets_it_can_read(
    tmp_path: Path, capture: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.cli.local import load_lazy

    logs.setup_logging("text", "info", capture)
    path = tmp_path / "syncd.yaml"
    path.write_text(
        "tokens: [{name: ci, token_env: CLI_TOKEN, scopes: [read]},"
        " {name: gone, token_env: UNSET_TOKEN, scopes: [read]}]\n"
        "workspaces: [{id: a, name: a, source: {url: 'https://h/r'}}]\n"
    )
    monkeypatch.setenv("CLI_TOKEN", "cli-token-value-1234")
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    load_lazy(path)  # the unset secret is not needed for this, and not fatal
    logging.getLogger("syncd.test").warning("saw cli-token-value-1234 in a message")
    line = capture.getvalue()
    assert "saw" in line and "cli-token-value-1234" not in line, line


@pytest.mark.parametrize("many", [False, True])
def test_every_secret_is_masked_however_many(many: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past a few secrets they are found by their first characters: the same masks."""
    monkeypatch.setattr(logs, "_secrets", logs._Secrets())
    others = [f"other-{n:05d}-value" for n in range(logs.FEW_SECRETS + 1 if many else 2)]
    logs.register_secrets([*others, "s3cr3t", "s3cr3t-longer", "tail", "tokenABCD", "Dxyz1"])
    assert len(logs._secrets.values) > logs.FEW_SECRETS or not many
    text = "a=s3cr3t-longer b=xs3cr3tx c=other-00001-value d=ta il e=tail"
    assert logs.scrub(text) == "a=*** b=x***x c=*** d=ta il e=***"
    # Two secrets that overlap: the stretch both cover is masked whole, none of either shows.
    assert logs.scrub("f=tokenABCDxyz1 g") == "f=*** g"
    assert logs.scrub("nothing here") == "nothing here" and logs.scrub("") == ""
    logs.register_secrets(["s3cr3t"])  # again: nothing changes
    assert logs.scrub("s3cr3t") == "***"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_inside_a_list_or_dict_field_is_masked(
    fmt: str, capture: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list's repr escapes quotes and backslashes: the strings in it are scrubbed first."""
    monkeypatch.setattr(logs, "_secrets", logs._Secrets())
    secret = 'pa"ss\\w0rd'
    logs.register_secrets([secret])
    logs.setup_logging(fmt, "info", capture)
    checks = [{"name": "smoke", "detail": f"token {secret}"}]
    logging.getLogger("syncd.test").info("checks", extra=fields(checks=checks, at=(secret,)))
    line = capture.getvalue()
    assert "w0rd" not in line and "***" in line and "smoke" in line
